"""``python -m verify`` (= ``python -m train verify``): the self-check passes (and can fail); --target flags each
deliberately broken homework in tests/fixtures/homework/ with the right quantity and hint, passes correct code
of every course year (tests/fixtures/homework_years/) under either regularization convention, and survives
hostile code (tests/fixtures/hostile/); --submissions checks a class folder mixing all of these.

The fixtures run once per module, two child processes at a time (``checked`` below), so the file stays quick.
Run: .venv/bin/python -m pytest tests/test_verify.py -q   (marker: verify)
"""
import csv
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_impl.softmax
from reference_numpy import neural_net as ref_net
from reference_numpy import softmax as ref_softmax
from reference_numpy.gradient_check import eval_numerical_gradient_array
from tests.helpers import assert_close_report
from verify import cases as verify_cases
from verify import compare, job
from verify.checks import check_file, write_job
from verify.cli import main
from verify.hints import pieces
from verify.references import reference
from verify.sandbox import Limits

pytestmark = pytest.mark.verify
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOMEWORK = FIXTURES / "homework"
YEARS = FIXTURES / "homework_years"
HOSTILE = FIXTURES / "hostile"
FAST = Limits(timeout=6.0, max_memory=2**30)  # short limits for the hostile fixtures (a loaded CI machine too)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """{(file name, target name): TargetResult} for every fixture file, checked two children at a time."""
    job = write_job(tmp_path_factory.mktemp("job"))
    files = sorted(HOMEWORK.glob("*.py")) + sorted(YEARS.rglob("*.py")) + sorted(HOSTILE.glob("*.py"))
    files = [f for f in files if f.name != "__init__.py" and f.name != "k_nearest_neighbor.py"]
    with ThreadPoolExecutor(2) as pool:
        per_file = list(pool.map(lambda f: check_file(str(f), job, limits=FAST), files))
    out = {}
    for f, results in zip(files, per_file):
        key = str(f.relative_to(YEARS)) if YEARS in f.parents else f.name
        for r in results:
            out[(key, r.name)] = r
    return out


# ---- the self-check ----

def test_default_run_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "verify.json"
    assert main(["--device", "cpu", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verify: all checks PASS" in out and "FAIL" not in out.replace("0 FAIL", "")
    payload = json.loads(path.read_text())
    rows = payload["rows"]
    assert payload["passed"] is True and all(r["status"] == "PASS" for r in rows)
    assert len(rows) == int(out.split(" checks:")[0].split("\n")[-1])  # the same rows as the table
    assert {r["quantity"] for r in rows} == {"loss", "dW", "W1", "b1", "W2", "b2"}
    checks = {r["check"] for r in rows}
    assert {"numpy naive", "numpy vectorized", "torch naive", "torch vectorized", "torch SoftmaxLoss.apply",
            "numpy", "torch two_layer_loss", "torch TwoLayerLoss.apply", "finite differences"} <= checks
    cases = " ".join(r["case"] for r in rows)
    for part in ("random", "reg", "N=1", "C=2", "large logits", "float64 cpu", "float32 cpu"):
        assert part in cases


def test_default_run_fails_when_an_implementation_is_wrong(monkeypatch, capsys):
    real = torch_impl.softmax.softmax_loss_vectorized
    monkeypatch.setattr(torch_impl.softmax, "softmax_loss_vectorized",
                        lambda W, X, y, reg: (real(W, X, y, reg)[0], 1.01 * real(W, X, y, reg)[1]))
    assert main(["--device", "cpu"]) == 1
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if line.endswith("FAIL") and "torch vectorized" in line]
    assert failing and all(" dW " in line for line in failing)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["-m", "train", "verify"], ["-m", "verify"]])
def test_python_m_verify_subprocess(command):
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "verify: all checks PASS" in proc.stdout


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_default_run_on_cuda(capsys):
    assert main(["--device", "cuda"]) == 0
    assert "float32 cuda" in capsys.readouterr().out


# ---- the cases and the hint pieces ----

def _assert_cases_make_every_mistake_visible(seed=None):
    for case in verify_cases.two_layer_cases(seed):
        a = case.arrays
        S1 = a["X"] @ a["W1"] + a["b1"]  # (N, H)
        assert np.abs(S1).min() > 1e-3  # no finite difference straddles the ReLU kink
        assert (S1 > 0).any() and (S1 <= 0).any()  # the ReLU is active and inactive
        if case.N > 1:
            assert ((a["X"] @ a["W1"] > 0) != (S1 > 0)).any()  # a mask without b1 differs
    for case in verify_cases.affine_cases(seed):
        a = case.arrays
        assert np.abs(a["x"].reshape(case.N, -1) @ a["w"] + a["b"]).min() > 1e-3  # affine_relu off its kink
    for case in verify_cases.relu_cases(seed):
        assert np.abs(case.arrays["x"]).min() >= 0.05 and (case.arrays["x"] > 0).any()
    for case in verify_cases.svm_cases(seed) + verify_cases.scores_loss_cases(seed, hinge=True):
        a = case.arrays
        S = a["X"] @ a["W"] if "W" in a else a["x"]
        assert verify_cases._margins_clear(S, a["y"])  # no hinge kink within a finite difference
    for kind in ("softmax", "two_layer", "softmax_loss"):  # the large logits overflow exp without max shift
        cases = verify_cases.cases_for(kind, seed)
        large = [c for c in cases if c.name == "large logits"]
        with np.errstate(over="ignore"):
            assert len(large) == 1 and all(np.isinf(np.exp(_logits(c))).any() for c in large)
        assert [c.name for c in cases] == [c.name for c in verify_cases.cases_for(kind)]
        assert all(c.N == 1 for c in cases if c.name == "N=1")
        assert all(np.ptp(c.arrays["y"]) == 1 for c in cases if c.name == "C=2")
    for kind in verify_cases.CASE_BUILDERS:
        for case, fixed in zip(verify_cases.cases_for(kind, seed), verify_cases.cases_for(kind)):
            assert (case.reg > 0) == (fixed.reg > 0) and case.arrays.keys() == fixed.arrays.keys()
            assert all(v.dtype == (np.int64 if k == "y" else np.float64) for k, v in case.arrays.items())
    assert verify_cases.softmax_cases(seed)[0].reg == 0  # the simplest case first: it is the one shown


def _logits(case):
    a = case.arrays
    if "W1" in a:
        return np.maximum(a["X"] @ a["W1"] + a["b1"], 0) @ a["W2"] + a["b2"]  # (N, C)
    return a["X"] @ a["W"] if "W" in a else a["x"]


def test_cases_make_every_mistake_visible():
    _assert_cases_make_every_mistake_visible()
    assert {c.reg > 0 for c in verify_cases.softmax_cases()} == {True, False}


@settings(max_examples=20)
@given(seed=st.integers(0, 2**63 - 1))
def test_seeded_cases_keep_the_margins(seed):
    _assert_cases_make_every_mistake_visible(seed)


def test_seeds_draw_different_cases_and_the_same_seed_the_same():
    for kind in verify_cases.CASE_BUILDERS:
        fixed, one, two = (verify_cases.cases_for(kind, s) for s in (None, 1, 2))
        for a, b in ((fixed, one), (one, two)):
            assert any(x.arrays[k].shape != y.arrays[k].shape or not np.array_equal(x.arrays[k], y.arrays[k])
                       for x, y in zip(a, b) for k in x.arrays), kind
        again = verify_cases.cases_for(kind, 1)
        assert all(np.array_equal(x.arrays[k], y.arrays[k]) for x, y in zip(one, again) for k in x.arrays)
    shapes = {verify_cases.cases_for("two_layer", s)[0].arrays["W1"].shape for s in range(6)}
    assert len(shapes) > 1  # the shapes are drawn too, not only the values
    for bad in (-1, 2**63, 1.5, True):
        with pytest.raises(ValueError, match="seed: expected None or a whole number"):
            verify_cases.cases_for("softmax", bad)


@pytest.mark.parametrize("kind", ["softmax", "two_layer"])
@pytest.mark.parametrize("convention", ["full", "half"])
def test_hint_pieces_add_up_to_autograd(kind, convention):
    """The mistake models start from exact pieces: data part (right forward, right mask) + reg part == autograd."""
    for case in verify_cases.cases_for(kind):
        p, want = pieces(kind, case, convention), reference(kind, case, convention)
        got_loss = p["loss"]["data"]["right"] + p["loss"]["reg"]
        assert_close_report("loss", got_loss, want["loss"], rtol=1e-12, atol=0)
        for q in want:
            if q not in ("loss", "scores"):
                got = p[q]["data"]["S1 > 0"] + p[q].get("reg", 0.0)
                assert_close_report(f"{case.name} {q}", got, want[q], rtol=1e-12, atol=1e-15)


# ---- broken homework is flagged with the right quantity and hint ----

BROKEN = [
    # (file, NAME, quantities reported FAIL, hint substring each of them carries)
    ("softmax_no_div_n.py", "softmax_loss_vectorized", {"dW"}, "not divided by N"),
    ("softmax_no_reg_grad.py", "softmax_loss_vectorized", {"dW"}, "regularization gradient missing"),
    ("softmax_reg_grad_half.py", "softmax_loss_vectorized", {"dW"}, "but the loss reg*sum(W*W) has gradient"),
    ("softmax_half_loss.py", "softmax_loss_vectorized", {"dW"}, "but the loss 0.5*reg*sum(W*W) has gradient"),
    ("softmax_no_max.py", "softmax_loss_vectorized", {"stability", "loss", "dW"}, ""),
    ("softmax_loss_sum.py", "softmax_loss_vectorized", {"loss", "dW"}, ""),  # dW: not its own loss's gradient
    ("softmax_wrong_sign.py", "softmax_loss_vectorized", {"dW"}, "wrong sign"),
    ("softmax_y_minus_p.py", "softmax_loss_vectorized", {"dW"}, "wrong sign"),
    ("softmax_reg_no_factor.py", "softmax_loss_vectorized", {"loss", "dW"}, ""),
    ("twolayer_no_div_n.py", "TwoLayerNet", {"W1", "b1", "W2", "b2"}, "not divided by N"),
    ("twolayer_no_reg_grad.py", "TwoLayerNet", {"W1", "W2"}, "regularization gradient missing"),
    ("twolayer_reg_grad_half.py", "TwoLayerNet", {"W1", "W2"}, "but the loss reg*sum(W*W) has gradient"),
    ("twolayer_bias_not_summed.py", "TwoLayerNet", {"b1", "b2"}, "not summed over the batch"),
    ("twolayer_no_relu_mask.py", "TwoLayerNet", {"W1", "b1"}, "ReLU mask missing"),
    ("twolayer_mask_no_bias.py", "TwoLayerNet", {"W1", "b1"}, "without the bias"),
    ("twolayer_mask_on_grad.py", "TwoLayerNet", {"W1", "b1"}, "upstream gradient"),
    ("twolayer_no_max.py", "TwoLayerNet", {"stability", "loss", "W1", "b1", "W2", "b2"}, ""),
    ("twolayer_loss_sum.py", "TwoLayerNet", {"loss", "W1", "b1", "W2", "b2"}, ""),
    ("twolayer_wrong_sign.py", "TwoLayerNet", {"W1", "b1", "W2", "b2"}, "wrong sign"),
    ("twolayer_not_averaged_twice.py", "TwoLayerNet", {"loss", "W1", "b1", "W2", "b2"}, "N"),
    ("twolayer_bias_mean.py", "TwoLayerNet", {"b1"}, "averaged over the batch (mean)"),
    ("twolayer_bias_keepdims.py", "TwoLayerNet", {"b2"}, "extra leading axis of length 1 (keepdims=True"),
    ("twolayer_bias_regularized.py", "TwoLayerNet", {"loss", "b1", "b2"}, "regularizes the weights only"),
    ("twolayer_no_b1_forward.py", "TwoLayerNet", {"scores", "loss", "W1", "b1", "W2", "b2"}, ""),
    ("twolayer_linear.py", "TwoLayerNet", {"scores", "loss", "W1", "b1", "W2", "b2"}, ""),
    ("twolayer_no_max_no_div_n.py", "TwoLayerNet", {"stability", "loss", "W1", "b1", "W2", "b2"}, ""),
    ("layers_buggy.py", "affine_backward", {"db"}, "db averaged over the batch"),
    ("layers_buggy.py", "relu_backward", {"dx"}, "ReLU mask inverted"),
    ("layers_buggy.py", "softmax_loss", {"stability", "loss", "dx"}, ""),
]


@pytest.mark.parametrize("file,name,quantities,hint", BROKEN, ids=[f"{b[0][:-3]}:{b[1]}" for b in BROKEN])
def test_broken_homework_is_flagged(checked, file, name, quantities, hint):
    result = checked[(file, name)]
    assert result.status == "FAIL"
    assert set(result.failed_quantities) == quantities
    for q in quantities - {"stability"}:
        if hint:
            assert any(hint in h for h in result.hints.get(q, [])), (q, result.hints)
        assert result.hints.get(q), (q, result.hints)  # every wrong quantity says something
        assert not any("does not match" in h for h in result.hints[q]), result.hints


@pytest.mark.parametrize("file,quantity,hint", [
    ("softmax_no_max.py", "stability", "no max subtraction"),
    ("twolayer_no_b1_forward.py", "scores", "b1 missing from the forward pass"),
    ("twolayer_no_b1_forward.py", "b1", "the loss does not change with b1"),  # question 1: its own loss
    ("twolayer_linear.py", "scores", "no ReLU in the forward pass"),
    ("twolayer_no_max_no_div_n.py", "stability", "no max subtraction"),
    ("twolayer_no_max_no_div_n.py", "W1", "not divided by N"),  # the stability row hides no other hint
    ("twolayer_bias_regularized.py", "loss", "biases regularized in the loss"),
    ("softmax_float32.py", "dW", "returned in low precision (dW, loss in float32 or less)"),
    ("softmax_loss_sum.py", "loss", "loss not averaged"),
    ("softmax_reg_no_factor.py", "loss", "without the factor reg"),
    ("softmax_loss_sum.py", "dW", "not the derivative of your own loss"),
    ("softmax_math_exp.py", "stability", "raised OverflowError at logits ~1e3"),
])
def test_new_mistakes_get_their_hint(checked, file, quantity, hint):
    name = "TwoLayerNet" if file.startswith("twolayer") else "softmax_loss_vectorized"
    name = "softmax_loss_naive" if file == "softmax_math_exp.py" else name
    hints = checked[(file, name)].hints
    assert any(hint in h for h in hints.get(quantity, [])), hints


@pytest.mark.parametrize("file", ["softmax_no_max.py", "twolayer_no_max.py"])
def test_nan_never_passes_either_question(checked, file):
    name = "TwoLayerNet" if file.startswith("twolayer") else "softmax_loss_vectorized"
    large = [r for r in checked[(file, name)].rows if r.case == "large logits" and r.quantity != "scores"]
    assert {r.check for r in large} == {"course", "own"} and not any(r.passed for r in large)


def test_headline_is_the_simplest_failing_case(checked):
    result = checked[("softmax_reg_no_factor.py", "softmax_loss_vectorized")]
    assert result.headline.startswith("loss wrong in case 'random'")  # reg = 0, the first case
    assert "without the factor reg" in result.headline


@pytest.mark.parametrize("file,name", [("twolayer_template.py", "TwoLayerNet"), ("fc_net_template.py", "TwoLayerNet"),
                                       ("y2021/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_naive"),
                                       *[("layers_template.py", n) for n in ("affine_forward", "affine_backward",
                                                                             "relu_forward", "relu_backward",
                                                                             "softmax_loss")]])
def test_untouched_template_looks_unimplemented(checked, file, name):
    result = checked[(file, name)]
    assert result.status == "FAIL" and "looks unimplemented" in result.headline


# ---- correct code of every course year passes, under either convention ----

YEAR_RESULTS = [
    # (file under homework_years, target, status, convention)
    ("y2016/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_naive", "PASS", "half"),
    ("y2016/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_vectorized", "PASS", "half"),
    ("y2016/assignment1/cs231n/classifiers/linear_svm.py", "svm_loss_naive", "ERROR", ""),  # bare xrange
    ("y2016/assignment1/cs231n/classifiers/neural_net.py", "(import)", "ERROR", ""),  # print statement
    ("y2018/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_naive", "PASS", "full"),
    ("y2018/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_vectorized", "PASS", "full"),
    ("y2018/assignment1/cs231n/classifiers/linear_svm.py", "svm_loss_naive", "PASS", "full"),
    ("y2018/assignment1/cs231n/classifiers/linear_svm.py", "svm_loss_vectorized", "PASS", "full"),
    ("y2018/assignment1/cs231n/classifiers/neural_net.py", "TwoLayerNet", "PASS", "full"),
    ("y2021/assignment1/cs231n/classifiers/fc_net.py", "TwoLayerNet", "PASS", "half"),
    ("y2021/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_vectorized", "PASS", "full"),
    *[("y2021/assignment1/cs231n/layers.py", n, "PASS", "") for n in
      ("affine_forward", "affine_backward", "relu_forward", "relu_backward", "softmax_loss", "svm_loss")],
    *[("y2021/assignment1/cs231n/layer_utils.py", n, "PASS", "") for n in
      ("affine_relu_forward", "affine_relu_backward")],
    ("softmax_half_consistent.py", "softmax_loss_vectorized", "PASS", "half"),
    ("softmax_correct_loops.py", "my_softmax", None, None),  # not a known name: only checked by NAME below
]


@pytest.mark.parametrize("file,name,status,convention", [y for y in YEAR_RESULTS if y[2]],
                         ids=[f"{y[0]}:{y[1]}" for y in YEAR_RESULTS if y[2]])
def test_every_course_year(checked, file, name, status, convention):
    result = checked[(file, name)]
    assert result.status == status, (result.message, result.hints, result.failed_quantities)
    assert result.convention == convention
    if status == "PASS":
        assert not result.hints and not result.message


def test_python2_and_year_messages(checked):
    svm = checked[("y2016/assignment1/cs231n/classifiers/linear_svm.py", "svm_loss_naive")].message
    assert svm.startswith("Python 2 code: 'xrange' is not defined in Python 3 at linear_svm.py:8")
    net = checked[("y2016/assignment1/cs231n/classifiers/neural_net.py", "(import)")].message
    assert net == "Python 2 code: a print statement at neural_net.py:14; this tool runs Python 3: write print(...)"
    half = checked[("y2016/assignment1/cs231n/classifiers/softmax.py", "softmax_loss_vectorized")]
    assert "0.5*reg*sum(W*W)" in half.convention_note and "2016" in half.convention_note


@pytest.mark.parametrize("year,strict,other", [("y2016", "full", "half"), ("y2018", "half", "full")])
def test_strict_convention_fails_the_other_one(year, strict, other, capsys):
    target = f"{YEARS}/{year}/assignment1/cs231n/classifiers/softmax.py:softmax_loss_vectorized"
    assert main(["--target", target, "--reg-convention", strict]) == 1
    out = capsys.readouterr().out
    assert "FAIL loss" in out and "FAIL dW" in out and "given by --reg-convention" in out
    assert f"consistent with each other under the {other} convention" in out


def test_kind_override(capsys):
    assert main(["--target", f"{HOMEWORK}/twolayer_correct_alt.py:Net", "--kind", "two_layer"]) == 0
    assert "(two_layer: TwoLayerNet(input_size" in capsys.readouterr().out


CORRECT_BY_NAME = [
    (str(HOMEWORK / "softmax_correct_loops.py"), "my_softmax"),  # its __main__ block exits if ever run
    (str(HOMEWORK / "softmax_correct_onehot.py"), "softmax_loss_vectorized"),
    (str(HOMEWORK / "twolayer_correct_alt.py"), "Net"),
    (str(HOMEWORK / "twolayer_correct_loops.py"), "LoopyNet"),
    ("reference_numpy.softmax", "softmax_loss_naive"),
    ("reference_numpy.neural_net", "TwoLayerNet"),
    pytest.param("torch_impl.softmax", "softmax_loss_vectorized", marks=pytest.mark.slow),  # tensors in and out
    pytest.param("torch_impl.neural_net", "TwoLayerNet", marks=pytest.mark.slow),  # an nn.Module
]


@pytest.mark.parametrize("where,name", CORRECT_BY_NAME)
def test_correct_code_passes(where, name, capsys):
    assert main(["--target", f"{where}:{name}"]) == 0
    out = capsys.readouterr().out
    assert "result: PASS" in out and "hint" not in out and "FAIL" not in out.replace("0 FAIL", "")


# ---- bad behaviour gives a clear line; unloadable targets exit 2 ----

@pytest.mark.parametrize("file,message", [
    ("softmax_raises.py", "raised NotImplementedError: TODO: implement the vectorized softmax loss at "
                          "softmax_raises.py:5"),
    ("softmax_wrong_shape.py", "dW has shape (5, 7), expected (7, 5)"),
    ("softmax_returns_one.py", "returned a float64; expected a pair (loss, dW)"),
    ("softmax_swapped_return.py", "returned (dW, loss); the order is (loss, dW)"),
    ("softmax_mutates.py", "changes its input X in place"),
])
def test_bad_behaviour_is_reported(checked, file, message):
    result = checked[(file, "softmax_loss_vectorized")]
    assert result.status == "FAIL"
    text = " ".join([result.message] + [r.note for r in result.rows])
    assert message in text


@pytest.mark.parametrize("file,message", [
    ("numpy_removed_name.py", "np.float at numpy_removed_name.py:6 was removed from NumPy; use float or np.float64"),
    ("needs_missing_module.py", "needs the module 'no_such_module_for_verify_tests' at needs_missing_module.py:3, "
                                "which is not installed: pip install no_such_module_for_verify_tests"),
])
def test_outside_the_maths_is_an_error(checked, file, message):
    result = next(r for (f, _), r in checked.items() if f == file)
    assert result.status == "ERROR" and result.message.startswith(message)


def test_row_shift_of_the_scores_in_place_is_a_note(checked):
    result = checked[("softmax_loss_inplace_shift.py", "softmax_loss")]
    assert result.status == "PASS" and "shifts each row of its input x in place" in result.notes[0]


def test_spent_dout_changed_in_place_is_a_note(checked):
    result = checked[("relu_backward_inplace.py", "relu_backward")]
    assert result.status == "PASS" and "changes its input dout in place" in result.notes[0]


def test_lingering_thread_does_not_hold_the_check(checked):
    result = checked[("lingering_thread.py", "softmax_loss_vectorized")]
    assert result.status == "PASS" and result.seconds < 30


def test_mutating_target_cannot_corrupt_the_comparison(checked):
    result = checked[("softmax_mutates.py", "softmax_loss_vectorized")]
    assert all(r.passed for r in result.rows if r.quantity in ("loss", "dW"))  # it was given copies
    result = checked[("twolayer_mutates_params.py", "TwoLayerNet")]
    assert set(result.failed_quantities) == {"inputs"}
    assert "self.params['W1']" in " ".join(r.note for r in result.rows)


@pytest.mark.parametrize("argv,message", [
    (["--target", "tests/fixtures/homework/missing.py:f"], "error: --target: no such file"),
    (["--target", str(HOMEWORK)], "is a folder; give a .py file"),
    (["--target", f"{HOMEWORK}/softmax_no_max.py:softmax_loss_naive"], "defines no 'softmax_loss_naive'"),
    (["--target", f"{HOMEWORK}/not_a_target.py:LEARNING_RATE"], "unsupported: LEARNING_RATE is a float"),
    (["--target", f"{HOMEWORK}/not_a_target.py:predict"], "unsupported: function predict(X)"),
    (["--target", f"{HOMEWORK}/not_a_target.py:NoLoss"], "unsupported: class NoLoss"),
    (["--target", f"{HOMEWORK}/not_a_target.py"], "unsupported: no known target in this file"),
    (["--target", f"{HOMEWORK}/twolayer_no_max.py:TwoLayerNet", "--kind", "softmax"], "unsupported: class"),
    (["--target", "no_such_module_xyz:f"], "needs the module 'no_such_module_xyz'"),
    (["--kind", "softmax"], "error: --kind needs --target"),
    (["--csv", "x.csv"], "error: --csv needs --submissions"),
])
def test_unloadable_targets_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--max-memory", "lots"], ["--jobs", "-1"],
                                  ["--reg-convention", "double"]])
def test_bad_options_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


# ---- hostile code: never exit 0 without a table, never hang past the limit, never take the memory ----

@pytest.mark.parametrize("file,message", [
    ("sys_exit.py", "called sys.exit(0) or exit()"),
    ("builtin_exit.py", "called sys.exit(None) or exit()"),
    ("os_exit.py", "the process ended with exit status 0 in softmax_loss_vectorized"),
    ("endless_loop.py", "time limit: still running after 6 s"),
    ("long_sleep.py", "time limit: still running after 6 s"),
    ("growing_memory.py", "ran out of memory"),
])
def test_hostile_target_fails_naming_what_happened(checked, file, message):
    result = checked[(file, "softmax_loss_vectorized")]
    assert result.status == "FAIL" and message in result.message
    assert result.seconds < 30


@pytest.mark.parametrize("file,message", [("exit_at_import.py", "called sys.exit(0)"),
                                          ("os_exit_at_import.py", "exit status 0 in the import")])
def test_hostile_import_fails(checked, file, message):
    result = checked[(file, "(import)")]
    assert result.status == "FAIL" and message in result.message


def test_a_crashing_target_does_not_take_its_neighbour(checked):
    assert checked[("one_bad_of_two.py", "softmax_loss_naive")].status == "FAIL"
    assert checked[("one_bad_of_two.py", "softmax_loss_vectorized")].status == "PASS"


# 100,000 at import + one per call of the loss (5 cases, 40 finite differences); fd_writes: 2 + 2 per call
@pytest.mark.parametrize("file,lines,first", [("prints_at_import.py", 100_045, "debug line 0"),
                                              ("fd_writes.py", 92, "raw bytes to fd 1 at import")])
def test_output_is_captured_and_cut(checked, file, lines, first, capsys):
    result = checked[(file, "softmax_loss_vectorized")]
    assert result.status == "PASS" and result.output_lines == lines
    assert len(result.output_head) == 20 and result.output_head[0] == first
    from verify.report import format_target

    text = format_target(result)
    assert f"... and {lines - 20} more line(s)" in text and len(text.splitlines()) < 60


def test_cli_exit_is_never_0_for_a_hostile_target(capsys):
    assert main(["--target", f"{HOSTILE}/os_exit.py", "--timeout", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL the process ended with exit status 0" in out and "verify: 0 PASS, 1 FAIL" in out


# ---- a class at once ----

def _class_folder(root):
    """Five students: 2018 layout, 2021 package, 2016 with Python 2, hostile code, and nothing to check."""
    shutil.copytree(YEARS / "y2018", root / "ada")
    shutil.copytree(YEARS / "y2021", root / "bob" / "cs231n-2021")
    shutil.copytree(YEARS / "y2016", root / "cyd")
    hostile = root / "dee" / "assignment1" / "cs231n" / "classifiers"
    hostile.mkdir(parents=True)
    shutil.copy(HOSTILE / "os_exit.py", hostile / "softmax.py")
    shutil.copy(HOSTILE / "long_sleep.py", hostile / "linear_svm.py")
    shutil.copy(HOMEWORK / "twolayer_no_b1_forward.py", hostile / "neural_net.py")
    (root / "eve").mkdir()
    return root


def test_submissions_class_folder(tmp_path, capsys):
    """Without --assignment: cs231n assignment 1 of the year most folders show (here 2016-2019); every expected
    target of every student gets a row, MISSING when absent. tests/test_grader.py covers specs and points."""
    folder = _class_folder(tmp_path / "class")
    csv_path, json_path = tmp_path / "class.csv", tmp_path / "class.json"
    argv = ["--submissions", str(folder), "--jobs", "2", "--timeout", "4", "--max-memory", "1G",
            "--csv", str(csv_path), "--json", str(json_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["submission", "file", "name", "kind", "status", "points", "max_points", "convention",
                                 "quantities", "hint", "seconds"]
    assert "assignment: cs231n assignment 1 (2016-2019) (detected: 3 of 5 submission(s) hold neural_net.py" in out
    status = {(r["submission"], r["name"]): r["status"] for r in rows}
    loops = {"TwoLayerNet.train", "TwoLayerNet.predict", "LinearClassifier.train", "LinearClassifier.predict"}
    assert len(rows) == 45 and all(status[("ada", n)] == ("MISSING" if n in loops else "PASS")
                                   for s, n in status if s == "ada")  # ada wrote the losses only
    assert status[("bob", "softmax_loss_naive")] == "FAIL"  # the untouched template
    assert status[("bob", "TwoLayerNet")] == "MISSING"  # fc_net.py is not the 2016-2019 API
    assert status[("cyd", "softmax_loss_vectorized")] == "PASS"
    assert status[("cyd", "TwoLayerNet")] == status[("cyd", "svm_loss_naive")] == "ERROR"  # Python 2
    assert status[("dee", "softmax_loss_vectorized")] == "FAIL"  # os._exit
    assert status[("dee", "TwoLayerNet")] == "FAIL"
    assert {status[("eve", n)] for s, n in status if s == "eve"} == {"MISSING"}
    quantities = {(r["submission"], r["name"]): r["quantities"] for r in rows}
    assert "b1" in quantities[("dee", "TwoLayerNet")].split(";")
    assert next(r for r in rows if r["submission"] == "ada" and r["name"] == "TwoLayerNet")["convention"] == "full"
    assert len(json.loads(json_path.read_text())) == len(rows)
    assert "45 targets of 5 submission(s)" in out and "Traceback" not in out
    assert "ada: 60 / 85 points" in out and "eve: 0 / 85 points" in out
    shutil.rmtree(folder / "ada"), shutil.rmtree(folder / "cyd"), shutil.rmtree(folder / "dee")
    assert main(["--submissions", str(folder), "--assignment", "cs231n-a1-2020", "--csv", str(csv_path)]) == 0
    with open(csv_path, newline="") as f:
        rows = {(r["submission"], r["name"]): r for r in csv.DictReader(f)}
    assert rows[("bob", "TwoLayerNet")]["status"] == "PASS" and rows[("bob", "TwoLayerNet")]["convention"] == "half"
    assert rows[("bob", "affine_backward")]["status"] == "PASS"


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "nowhere", "is not a folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no folders"),
])
def test_submissions_unusable_dir_exits_2(tmp_path, capsys, make, message):
    assert main(["--submissions", str(make(tmp_path))]) == 2
    assert message in capsys.readouterr().err


# ---- the course definitions themselves (verify/references.py) ----

@given(N=st.integers(1, 6), D=st.integers(1, 5), H=st.integers(1, 5), C=st.integers(2, 5),
       reg=st.floats(0.0, 1.0), convention=st.sampled_from(["full", "half"]), seed=st.integers(0, 2**16))
def test_references_are_the_numpy_reference(N, D, H, C, reg, convention, seed):
    """verify's autograd definitions equal the project's NumPy reference, with reg scaled by the convention."""
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((N, D)), rng.integers(0, C, N)
    W = rng.standard_normal((D, C))
    factor = 1.0 if convention == "full" else 0.5
    case = verify_cases.Case("h", {"W": W, "X": X, "y": y}, reg)
    want_loss, want_dW = ref_softmax.softmax_loss_vectorized(W, X, y, factor * reg)
    got = reference("softmax", case, convention)
    assert_close_report("loss", got["loss"], want_loss, rtol=1e-12, atol=1e-14)
    assert_close_report("dW", got["dW"], want_dW, rtol=1e-10, atol=1e-12)
    p = {"W1": rng.standard_normal((D, H)), "b1": rng.standard_normal(H), "W2": rng.standard_normal((H, C)),
         "b2": rng.standard_normal(C)}
    case = verify_cases.Case("h", {"X": X, "y": y, **p}, reg)
    want_loss, want_grads = ref_net.two_layer_loss(X, y, *p.values(), factor * reg)
    got = reference("fc_net", case, convention)
    assert_close_report("loss", got["loss"], want_loss, rtol=1e-12, atol=1e-14)
    assert_close_report("scores", got["scores"], ref_net.two_layer_loss(X, None, *p.values(), 0.0), rtol=1e-12,
                        atol=1e-14)
    for k in p:
        assert_close_report(k, got[k], want_grads[k], rtol=1e-10, atol=1e-12)


@given(N=st.integers(1, 5), M=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_layer_references_are_cs231n_numeric_gradients(N, M, seed):
    """The layer definitions' gradients equal cs231n's eval_numerical_gradient_array of their forward pass."""
    rng = np.random.default_rng(seed)
    x, w, b, dout = rng.standard_normal((N, 2, 3)), rng.standard_normal((6, M)), rng.standard_normal(M), \
        rng.standard_normal((N, M))
    case = verify_cases.Case("h", {"x": x, "w": w, "b": b, "dout": dout})
    got = reference("affine_backward", case)
    forward = lambda x_, w_, b_: reference("affine_forward", verify_cases.Case("h", {"x": x_, "w": w_, "b": b_}))
    for name, arg in (("dx", x), ("dw", w), ("db", b)):
        def f(_):  # eval_numerical_gradient_array nudges arg in place: x, w, b see it
            return forward(x, w, b)["out"]
        num = eval_numerical_gradient_array(f, arg, dout)
        assert_close_report(name, got[name], num, rtol=1e-6, atol=1e-8)


# ---- the wire format between parent and child (verify/job.py) ----

def test_job_round_trips_every_kind(tmp_path):
    path = job.write_job(tmp_path)
    cases, seed = job.read_job(path)
    assert seed is None and job.read_seed(path) is None
    assert set(cases) == set(verify_cases.CASE_BUILDERS)
    for kind, got in cases.items():
        want = verify_cases.cases_for(kind)
        assert [c.name for c in got] == [c.name for c in want] and [c.reg for c in got] == [c.reg for c in want]
        for g, w in zip(got, want):
            assert g.arrays.keys() == w.arrays.keys()
            assert all(np.array_equal(g.arrays[k], w.arrays[k]) and g.arrays[k].dtype == w.arrays[k].dtype
                       for k in w.arrays)


def test_child_argv_result_and_events_round_trip(tmp_path):
    argv = job.child_argv(tmp_path / "cases.npz", tmp_path, "hw/softmax.py", None, "svm", 2**30, {"b", "a"}, 7)
    assert all(isinstance(a, str) for a in argv)
    args = job.parse_child_argv(argv)
    assert args == (str(tmp_path / "cases.npz"), str(tmp_path), "hw/softmax.py", None, "svm", 2**30,
                    frozenset({"a", "b"}), 7)
    arrays = {job.out_key(0, "loss"): np.array(1.5), job.fd_key(3, "W1"): np.arange(4.0),
              job.dir_key(3, "W1"): np.ones((4, 2, 3))}
    job.write_result(tmp_path / "t.npz", {"cases": [{"note": None}]}, arrays)
    meta, back = job.read_result(tmp_path / "t.npz")
    assert meta == {"cases": [{"note": None}]} and back.keys() == arrays.keys()
    assert all(np.array_equal(back[k], v) for k, v in arrays.items())
    line = job.event_line("loaded", targets=[["f", "softmax", None]])
    assert line.endswith("\n") and job.parse_event(line) == {"event": "loaded", "targets": [["f", "softmax", None]]}
    assert job.parse_event('{"event": "mine"}') is None and job.parse_event("not json") is None


def test_compare_relative_error_never_passes_nan_or_inf():
    want = np.array([[0.0, 2.0], [-4.0, 1.0]])
    assert compare.errors(want + [[0.0, 0.0], [0.0, 4e-3]], want) == pytest.approx((4e-3, 1e-3), rel=1e-12)
    assert np.isnan(compare.relative_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0])))
    assert compare.relative_error(np.array([np.inf, 1.0]), np.array([1.0, 1.0])) == np.inf
    assert compare.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert compare.relative_error(np.ones(3), np.zeros(3)) == np.inf
    got = compare.to_float64(torch.tensor([1.5, 2.5], dtype=torch.float32))
    assert got.dtype == np.float64 and compare.relative_error(got, [1.5, 2.5]) == 0.0
    row = compare.compare("random", "course", "dW", got, [1.5, 2.5], 1e-6)
    assert row.passed and row.status == "PASS" and (row.quantity, row.check) == ("dW", "course")


# ---- half-finished templates, shared mistakes, the course's words, the verdict ----

@pytest.mark.parametrize("file,said,left", [
    ("twolayer_forward_only.py", "loss is None; grads has no W1, b1, W2 and b2", "the loss (softmax of the scores"),
    ("fc_net_forward_only.py", "loss is 0; grads has no W1, b1, W2 and b2", "the backward pass (grads['W1'], "),
    ("twolayer_half_backward.py", "grads has no W1 and b1", "left to do: the backward pass (grads['W1'] and "
                                                            "grads['b1'])"),
])
def test_half_finished_template_gets_one_line(checked, file, said, left):
    from verify.report import format_target

    result = checked[(file, "TwoLayerNet")]
    assert result.status == "FAIL" and result.failed_quantities == ["unfinished"]
    assert result.headline.startswith(f"looks unfinished: {said} in every case") and left in result.headline
    assert all(r.passed for r in result.rows if r.quantity != "unfinished")  # what is written is still checked
    assert any(r.quantity == "scores" and r.passed for r in result.rows)
    text = format_target(result)
    assert text.count("looks unfinished") == 1 and "does not match" not in text and "hint" not in text


def test_target_returning_none_looks_unfinished(checked):
    result = checked[("softmax_returns_none.py", "softmax_loss_vectorized")]
    assert result.status == "FAIL" and len(result.rows) == 1
    assert result.message.startswith("looks unfinished: it returned None (finish its TODOs and return the pair "
                                     "(loss, dW))")


@pytest.mark.parametrize("file,quantities,mistake", [
    ("twolayer_bias_regularized.py", {"loss", "b1", "b2"}, "biases regularized"),
    ("twolayer_bias_reg_loss_only.py", {"loss", "b1", "b2"}, "biases regularized in the loss"),
    ("twolayer_no_b1_forward.py", {"scores", "loss", "W1", "b1", "W2", "b2"}, "b1 missing from the forward pass"),
])
def test_one_mistake_is_named_on_every_row_it_explains(checked, file, quantities, mistake):
    result = checked[(file, "TwoLayerNet")]
    assert set(result.failed_quantities) == quantities
    for q in quantities:
        assert any(mistake in h for h in result.hints[q]), (q, result.hints)


def test_hints_and_table_use_the_courses_words(checked):
    from verify.report import format_target

    internal = re.compile(r"\b(S1|S2|H1|dH1|dS2)\b")
    for (file, name), result in checked.items():
        text = format_target(result)
        assert not internal.search(text), (file, name, internal.search(text))
        if result.rows and not result.message:
            assert "matches the course" in text and "matches your own loss" in text


def test_no_rows_is_never_a_pass():
    from verify.checks import TargetResult
    from verify.verdict import NOTHING_CHECKED, verdict

    assert TargetResult("f.py", "f").status != "PASS"
    empty = verdict(TargetResult("f.py", "f", kind="softmax"))
    assert empty.status == "FAIL" and empty.message == NOTHING_CHECKED and empty.headline == NOTHING_CHECKED
    one = TargetResult("f.py", "f", kind="softmax", rows=[compare.Row("random", "loss", "course", 0.0, 1e-6, True)])
    assert verdict(one).status == "PASS"
    assert verdict(TargetResult("f.py", "f", kind="softmax", rows=one.rows, hints={"stability": ["x"]})).status == \
        "FAIL"


# ---- reseeded cases: right code still passes, each known bug still fails with its hint ----

SEEDED = [
    # (file, target, status, hint substring of the first failing quantity's hints)
    (YEARS / "y2018/assignment1/cs231n/classifiers/neural_net.py", "TwoLayerNet", "PASS", ""),
    (YEARS / "y2018/assignment1/cs231n/classifiers/linear_svm.py", "svm_loss_vectorized", "PASS", ""),
    (YEARS / "y2021/assignment1/cs231n/layers.py", "affine_backward", "PASS", ""),
    (HOMEWORK / "twolayer_mask_no_bias.py", "TwoLayerNet", "FAIL", "without the bias"),
    (HOMEWORK / "softmax_no_div_n.py", "softmax_loss_vectorized", "FAIL", "not divided by N"),
    (HOMEWORK / "twolayer_bias_regularized.py", "TwoLayerNet", "FAIL", "biases regularized"),
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """{(seed, file, target): TargetResult} of SEEDED's files under two seeds, two children at a time."""
    jobs = {seed: job.write_job(tmp_path_factory.mktemp(f"seed{seed}"), seed=seed) for seed in (11, 2**40 + 3)}
    work = [(seed, f) for seed in jobs for f in sorted({f for f, *_ in SEEDED})]
    with ThreadPoolExecutor(2) as pool:
        per_file = list(pool.map(lambda w: check_file(str(w[1]), jobs[w[0]], limits=FAST), work))
    return {(seed, f, r.name): r for (seed, f), results in zip(work, per_file) for r in results}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 2**40 + 3])
@pytest.mark.parametrize("file,name,status,hint", SEEDED, ids=[f"{f.name}:{n}" for f, n, *_ in SEEDED])
def test_reseeded_cases_judge_like_the_fixed_ones(seeded, seed, file, name, status, hint):
    result = seeded[(seed, file, name)]
    assert result.status == status, (result.headline, result.hints)
    if status == "FAIL":
        assert any(hint in h for q in result.failed_quantities for h in result.hints.get(q, [])), result.hints
        assert not any("does not match" in h for hs in result.hints.values() for h in hs), result.hints


def test_seed_flag(capsys):
    assert main(["--target", f"{HOMEWORK}/twolayer_mask_no_bias.py", "--seed", "5"]) == 1
    assert "without the bias" in capsys.readouterr().out
    assert main(["--seed", "5"]) == 2
    assert "--seed needs --target or --submissions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--target", f"{HOMEWORK}/twolayer_mask_no_bias.py", "--seed", "-3"])
    assert "expected a whole number from 0 to 2**63 - 1" in capsys.readouterr().err


def test_a_list_of_numbers_is_an_array_like_in_the_courses_rel_error():
    from verify.calls import BadCall, as_array

    got = as_array([0.5, 1, np.float32(2.0)], "b1")
    assert got.dtype == np.float64 and np.array_equal(got, [0.5, 1.0, 2.0])
    with pytest.raises(BadCall, match="b1 is a list that is not an array of numbers"):
        as_array(["a", "b"], "b1")
    with pytest.raises(BadCall, match="b1 is a str; expected a number or an array"):
        as_array("0.5", "b1")


def test_param_names_are_the_projects():
    from torch_impl.neural_net import PARAM_NAMES
    from verify.kinds import KINDS
    from verify.kinds import PARAM_NAMES as VERIFY_PARAM_NAMES

    assert VERIFY_PARAM_NAMES == PARAM_NAMES and tuple(KINDS["two_layer"].params) == PARAM_NAMES


def test_references_keep_the_latest_seeds(monkeypatch):
    from verify import checks

    monkeypatch.setattr(checks, "SEEDS_KEPT", 2)
    for seed in (101, 102, 103):
        cases, wants = checks.references("relu_forward", "full", seed)
        assert [c.name for c in cases] == ["random", "N=1"] and wants[0]["out"].shape == cases[0].arrays["x"].shape
    kept = {key[2] for key in checks._REFERENCES if key[2] is not None}
    assert {102, 103} <= kept and 101 not in kept
