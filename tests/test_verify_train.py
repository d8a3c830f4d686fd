"""``python -m verify`` on train() and predict(): the project's own reference_numpy passes every check, each
deliberately broken loop in tests/fixtures/homework_train/ FAILs naming the quantity with its hint, and a loop
drawn without replacement PASSes with a note.

The fixtures run once per module, two child processes at a time (``checked`` below), so the file stays quick.
Run: .venv/bin/python -m pytest tests/test_verify_train.py -q   (marker: verify)
"""
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_numpy.linear_classifier as ref_linear
import reference_numpy.neural_net as ref_net
from verify.checks import TargetResult, check_file, write_job
from verify.cli import main, split_target
from verify.report import format_target
from verify.sandbox import Limits
from verify.spy import method_cases, method_targets, run_method
from verify.train_checks import expected_lrs, judge_method

pytestmark = pytest.mark.verify
ROOT = Path(__file__).resolve().parent.parent
TRAIN = Path(__file__).resolve().parent / "fixtures" / "homework_train"
FAST = Limits(timeout=20.0, max_memory=2**30)

# file -> {target: (status, failed quantities, a hint's words)}; predict fixtures check only predict
EXPECTED = {
    "twolayer_correct.py": {"TwoLayerNet.train": ("PASS", [], ""), "TwoLayerNet.predict": ("PASS", [], "")},
    "twolayer_sign.py": {"TwoLayerNet.train": ("FAIL", ["W1", "b1", "W2", "b2"], "update sign wrong")},
    "twolayer_b2_never_updated.py": {"TwoLayerNet.train": ("FAIL", ["b2"], "never updated on the object")},
    "twolayer_rebound.py": {"TwoLayerNet.train": ("FAIL", ["W1", "b1", "W2", "b2"], "rebound locally: `W1 = W1")},
    "twolayer_decay_every_iteration.py": {"TwoLayerNet.train": ("FAIL", ["learning_rate"], "decayed every iteration")},
    "twolayer_never_decayed.py": {"TwoLayerNet.train": ("FAIL", ["learning_rate"], "never decayed")},
    "twolayer_xy_indices.py": {"TwoLayerNet.train": ("FAIL", ["batch_labels"], "different index arrays")},
    "twolayer_full_batch.py": {"TwoLayerNet.train": ("FAIL", ["batch_size"], "full batch instead of a minibatch")},
    "twolayer_no_replacement.py": {"TwoLayerNet.train": ("PASS", [], "")},
    "twolayer_reg_not_passed.py": {"TwoLayerNet.train": ("FAIL", ["reg"], "pass train's reg")},
    "twolayer_acc_every_iteration.py": {"TwoLayerNet.train": ("FAIL", ["train_acc_history", "val_acc_history"],
                                                              "once per epoch")},
    "twolayer_acc_before_update.py": {"TwoLayerNet.train": ("FAIL", ["train_acc_history", "val_acc_history"],
                                                            "after the iteration's update")},
    "twolayer_returns_list.py": {"TwoLayerNet.train": ("FAIL", ["loss_history", "train_acc_history",
                                                                "val_acc_history"], "")},
    "twolayer_momentum.py": {"TwoLayerNet.train": ("FAIL", ["W1", "b1", "W2", "b2"], "momentum")},
    "twolayer_predict_no_axis.py": {"TwoLayerNet.predict": ("FAIL", ["y_pred"], "a single number")},
    "twolayer_template.py": {"TwoLayerNet.train": ("FAIL", ["call"], "")},
    "twolayer_predict_scores.py": {"TwoLayerNet.predict": ("FAIL", ["y_pred"], "returns the scores, not labels")},
    "twolayer_predict_no_b1.py": {"TwoLayerNet.predict": ("FAIL", ["y_pred"], "b1 missing from the forward pass")},
    "linear_correct.py": {"Softmax.train": ("PASS", [], ""), "Softmax.predict": ("PASS", [], "")},
    "linear_sign.py": {"Softmax.train": ("FAIL", ["W"], "update sign wrong")},
    "linear_rebound.py": {"Softmax.train": ("FAIL", ["W"], "self.W = W")},
    "linear_reinit.py": {"Softmax.train": ("FAIL", ["init"], "initialise only when self.W is None")},
    "linear_decay.py": {"Softmax.train": ("FAIL", ["learning_rate"], "keeps it constant")},
    "linear_loss_twice.py": {"Softmax.train": ("FAIL", ["iterations"], "once per iteration")},
    "linear_predict_axis0.py": {"Softmax.predict": ("FAIL", ["y_pred"], "argmax over the wrong axis")},
    "linear_predict_probs.py": {"Softmax.predict": ("FAIL", ["y_pred"], "returns the softmax probabilities")},
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """{(file name, target name): TargetResult} for every fixture file and the project's reference_numpy."""
    job = write_job(tmp_path_factory.mktemp("job"))
    files = [TRAIN / f for f in EXPECTED] + [ROOT / "reference_numpy" / "neural_net.py",
                                             ROOT / "reference_numpy" / "linear_classifier.py"]
    names = [next(iter(EXPECTED[f.name])) if len(EXPECTED.get(f.name, ())) == 1 else None for f in files]
    names[[f.name for f in files].index("linear_correct.py")] = "Softmax"  # a class: its train and predict
    with ThreadPoolExecutor(2) as pool:  # one method per fixture: no loss target with its finite differences
        per_file = list(pool.map(lambda f, n: check_file(str(f), job, name=n, limits=FAST), files, names))
    return {(f.name, r.name): r for f, results in zip(files, per_file) for r in results}


def test_reference_numpy_passes_every_check(checked):
    for name in ("TwoLayerNet.train", "TwoLayerNet.predict"):
        assert checked["neural_net.py", name].status == "PASS", format_target(checked["neural_net.py", name])
    for name in ("LinearClassifier.train", "LinearClassifier.predict"):
        result = checked["linear_classifier.py", name]
        assert result.status == "PASS", format_target(result)
    train = checked["neural_net.py", "TwoLayerNet.train"]
    quantities = {r.quantity for r in train.rows}
    assert {"batch_size", "batch_rows", "batch_labels", "reg", "W1", "b1", "W2", "b2", "learning_rate",
            "loss_history", "train_acc_history", "val_acc_history"} <= quantities
    assert not train.notes  # drawn with replacement: no note
    assert "init" in {r.quantity for r in checked["linear_classifier.py", "LinearClassifier.train"].rows}


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_each_loop_is_judged_with_its_hint(checked, file):
    for target, (status, failed, hint) in EXPECTED[file].items():
        result = checked[file, target]
        report = format_target(result)
        assert result.status == status, report
        assert result.failed_quantities == failed, report
        hints = " ".join(h for q in failed for h in result.hints.get(q, [])) + " " + result.message
        assert hint in hints, report
        for q in failed:  # every failing quantity has its own hint or message
            assert result.hints.get(q) or result.message, (q, report)


def test_without_replacement_is_a_note_not_a_fail(checked):
    result = checked["twolayer_no_replacement.py", "TwoLayerNet.train"]
    assert result.status == "PASS" and any("without replacement" in n for n in result.notes)


def test_template_looks_unfinished(checked):
    result = checked["twolayer_template.py", "TwoLayerNet.train"]
    assert result.message.startswith("looks unfinished: self.loss was called with X_batch None")


def test_whole_file_finds_loss_train_and_predict(checked):
    names = {n for f, n in checked if f == "neural_net.py"}
    assert names == {"TwoLayerNet", "TwoLayerNet.train", "TwoLayerNet.predict", "two_layer_loss"}  # the kit's kind
    assert {n for f, n in checked if f == "linear_classifier.py"} == {"LinearClassifier.train",
                                                                      "LinearClassifier.predict"}
    assert {n for f, n in checked if f == "linear_correct.py"} == {"Softmax.train", "Softmax.predict"}


def test_method_targets_of_a_class_and_a_method():
    assert method_targets(ref_net, "TwoLayerNet", None) == ([("TwoLayerNet.train", "two_layer_train", None),
                                                             ("TwoLayerNet.predict", "two_layer_predict", None)],
                                                            False)  # the loss target is kept besides
    assert method_targets(ref_linear, "Softmax", None)[1] is True  # a linear classifier: methods only
    assert method_targets(ref_net, "TwoLayerNet.train", None) == ([("TwoLayerNet.train", "two_layer_train",
                                                                    None)], True)
    targets, _ = method_targets(ref_net, "TwoLayerNet.fit", None)
    assert targets[0][1] is None and "expected train or predict" in targets[0][2]
    assert method_targets(ref_net, "TwoLayerNet", "two_layer") == ([], False)  # a loss kind: not ours

    class LinearClassifier:  # another signature: an ERROR row naming what is expected
        def train(self, X, y, lr=1e-3, iters=100):
            return []

        def predict(self, X):
            return X

    module = types.ModuleType("other_api")
    module.LinearClassifier = LinearClassifier
    LinearClassifier.__module__ = "other_api"
    (train, _, error), predict = method_targets(module, None, None)[0]
    assert train == "LinearClassifier.train" and error.startswith("unsupported: LinearClassifier.train(self, X, y, "
                                                                   "lr=0.001, iters=100); expected")
    assert predict == ("LinearClassifier.predict", "linear_predict", None)
    assert split_target("cs231n/classifiers/neural_net.py:TwoLayerNet.train") == (
        "cs231n/classifiers/neural_net.py", "TwoLayerNet.train")


def test_cli_one_method_and_kind_override(tmp_path, capsys):
    code = (TRAIN / "linear_correct.py").read_text().replace("def train(", "def fit(")
    (tmp_path / "train_base.py").write_text((TRAIN / "train_base.py").read_text())
    (tmp_path / "clf.py").write_text(code)
    assert main(["--target", f"{tmp_path / 'clf.py'}:Softmax.fit", "--kind", "linear_train"]) == 0
    out = capsys.readouterr().out
    assert "Softmax.fit  (linear_train" in out and "verify: 1 PASS, 0 FAIL, 0 ERROR" in out
    assert main(["--target", f"{TRAIN / 'twolayer_sign.py'}:TwoLayerNet.train"]) == 1
    out = capsys.readouterr().out
    assert "FAIL W1: W1 moves along +grad" in out and "verify: 0 PASS, 1 FAIL, 0 ERROR" in out


def test_expected_learning_rates_decay_once_per_epoch():
    case = method_cases("two_layer_train")[0]  # 40 rows, batches of 8: 5 iterations per epoch
    lr, d = case.settings["learning_rate"], case.settings["learning_rate_decay"]
    np.testing.assert_allclose(expected_lrs("two_layer_train", case, 12),
                               lr * d ** np.array([0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3]), rtol=1e-15)
    assert np.all(expected_lrs("linear_train", method_cases("linear_train")[0], 5) == lr)


class _ScaledNet(ref_net.TwoLayerNet):
    """The reference loop with one parameter's step scaled by FACTOR (set per example)."""

    FACTOR, PARAM = 1.0, "W1"

    def train(self, X, y, X_val, y_val, learning_rate=1e-3, learning_rate_decay=0.95, reg=5e-6, num_iters=100,
              batch_size=200, verbose=False):
        history = {"loss_history": [], "train_acc_history": [], "val_acc_history": []}
        for it in range(num_iters):
            idx = np.random.choice(X.shape[0], batch_size)
            loss, grads = self.loss(X[idx], y=y[idx], reg=reg)
            history["loss_history"].append(loss)
            for k in self.params:
                self.params[k] -= (self.FACTOR if k == self.PARAM else 1.0) * learning_rate * grads[k]
            if it % max(X.shape[0] / batch_size, 1) == 0:
                history["train_acc_history"].append((self.predict(X[idx]) == y[idx]).mean())
                history["val_acc_history"].append((self.predict(X_val) == y_val).mean())
                learning_rate *= learning_rate_decay
        return history


@settings(max_examples=25, deadline=None)
@given(factor=st.sampled_from([1.0, 0.5, 2.0, -1.0, 0.0, 1.001, 0.999]), param=st.sampled_from(["W1", "b1", "W2",
                                                                                              "b2"]))
def test_any_wrong_step_of_one_parameter_fails_naming_it(factor, param):
    _ScaledNet.FACTOR, _ScaledNet.PARAM = factor, param
    module = types.SimpleNamespace(TwoLayerNet=_ScaledNet)
    record = run_method("TwoLayerNet.train", "two_layer_train", module, None)  # in this process: no child
    fresh = TargetResult("", "TwoLayerNet.train", kind="two_layer_train")
    result = judge_method(fresh, record["meta"], record["arrays"])
    if factor == 1.0:
        assert result.status == "PASS", [r for r in result.rows if not r.passed]
    else:
        assert result.failed_quantities == [param], [r for r in result.rows if not r.passed]


def test_submissions_grade_linear_classifier(tmp_path):
    """The shipped 2016-2019 spec grades linear_classifier.py's train and predict, found at any depth."""
    from verify.assignment import load_spec
    from verify.classroom import grade_class

    folder = tmp_path / "class" / "student" / "assignment1" / "cs231n" / "classifiers"
    folder.mkdir(parents=True)
    (folder / "linear_classifier.py").write_text((ROOT / "reference_numpy" / "linear_classifier.py").read_text())
    students = grade_class(tmp_path / "class", load_spec("cs231n-a1-2016-2019"), jobs=1)
    graded = {g.target.name: g for g in students[0].graded}
    assert graded["LinearClassifier.train"].result.status == "PASS", graded["LinearClassifier.train"].result.message
    assert graded["LinearClassifier.predict"].result.status == "PASS"
    assert graded["TwoLayerNet.train"].result.status == "MISSING"
