"""``python -m train verify``: the self-check passes (and can fail), and --target flags each deliberately broken
homework in tests/fixtures/homework/ with the right quantity and hint, passes correct ones, and reports bad
targets without a traceback.

Run: .venv/bin/python -m pytest tests/test_verify.py -q   (marker: verify)
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_impl.softmax
from tests.helpers import assert_close_report
from torch_impl import verify
from torch_impl.verify_hints import pieces
from torch_impl.verify_targets import TargetError, _reference, check_target, detect_kind, load_target
from train.verify_cmd import main

pytestmark = pytest.mark.verify
ROOT = Path(__file__).resolve().parent.parent
HOMEWORK = Path(__file__).resolve().parent / "fixtures" / "homework"


def target(name, obj):
    return f"{HOMEWORK / name}:{obj}"


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
def test_python_m_train_verify_subprocess():
    proc = subprocess.run([sys.executable, "-m", "train", "verify"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "verify: all checks PASS" in proc.stdout


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_default_run_on_cuda(capsys):
    assert main(["--device", "cuda"]) == 0
    assert "float32 cuda" in capsys.readouterr().out


def test_cases_make_every_mistake_visible():
    for case in verify.two_layer_cases():
        S1 = case.X @ case.params["W1"] + case.params["b1"]  # (N, H)
        assert np.abs(S1).min() > 1e-3  # no finite difference straddles the ReLU kink
        assert (S1 > 0).any() and (S1 <= 0).any()  # the ReLU is active and inactive
        if case.X.shape[0] > 1:
            assert ((case.X @ case.params["W1"] > 0) != (S1 > 0)).any()  # a mask without b1 differs
    for scores in ([c.X @ c.W for c in verify.softmax_cases() if c.name == "large logits"]
                   + [verify.ref_net.two_layer_loss(c.X, None, *c.params.values(), 0.0)
                      for c in verify.two_layer_cases() if c.name == "large logits"]):
        with np.errstate(over="ignore"):
            assert np.isinf(np.exp(scores)).any()  # without max subtraction exp overflows
        assert np.ptp(scores, axis=1).max() < 30  # small spread: the reference's -log(softmax) stays finite
    assert {c.reg > 0 for c in verify.softmax_cases()} == {True, False}
    assert {c.X.shape[0] for c in verify.softmax_cases()} >= {1, 9}
    assert 2 in {c.W.shape[1] for c in verify.softmax_cases()}


@pytest.mark.parametrize("kind,cases", [("softmax", verify.softmax_cases()),
                                        ("two_layer", verify.two_layer_cases())])
def test_hint_pieces_add_up_to_autograd(kind, cases):
    """The mistake models start from exact pieces: data part (correct mask) + reg part == autograd."""
    for case in cases:
        p, want = pieces(kind, case), _reference(kind, case)
        assert_close_report("loss", p["loss"]["data"] + p["loss"]["reg"], want["loss"], rtol=1e-12, atol=0)
        for q in want:
            if q != "loss":
                got = p[q]["data"]["S1 > 0"] + p[q].get("reg", 0.0)
                assert_close_report(f"{case.name} {q}", got, want[q], rtol=1e-12, atol=1e-15)


# ---- --target: broken homework is flagged with the right quantity and hint ----

BROKEN = [
    # (file, NAME, quantities reported FAIL, hint substring each of them carries)
    ("softmax_no_div_n.py", "softmax_loss_vectorized", {"dW"}, "not divided by N"),
    ("softmax_no_reg_grad.py", "softmax_loss_vectorized", {"dW"}, "regularization gradient missing"),
    ("softmax_reg_grad_half.py", "softmax_loss_vectorized", {"dW"}, "reg*W, but the loss reg*sum(W*W)"),
    ("softmax_half_loss.py", "softmax_loss_vectorized", {"loss"}, "0.5*reg*sum(W*W) but your gradient 2*reg*W"),
    ("softmax_half_consistent.py", "softmax_loss_vectorized", {"loss", "dW"}, "0.5*reg*sum(W*W)"),
    ("softmax_no_max.py", "softmax_loss_vectorized", {"loss", "dW"}, "no max subtraction"),
    ("softmax_loss_sum.py", "softmax_loss_vectorized", {"loss"}, "loss not averaged"),
    ("softmax_wrong_sign.py", "softmax_loss_vectorized", {"dW"}, "wrong sign"),
    ("softmax_y_minus_p.py", "softmax_loss_vectorized", {"dW"}, "wrong sign"),
    ("twolayer_no_div_n.py", "TwoLayerNet", {"W1", "b1", "W2", "b2"}, "not divided by N"),
    ("twolayer_no_reg_grad.py", "TwoLayerNet", {"W1", "W2"}, "regularization gradient missing"),
    ("twolayer_reg_grad_half.py", "TwoLayerNet", {"W1", "W2"}, "reg*W, but the loss reg*sum(W*W)"),
    ("twolayer_bias_not_summed.py", "TwoLayerNet", {"b1", "b2"}, "not summed over the batch"),
    ("twolayer_no_relu_mask.py", "TwoLayerNet", {"W1", "b1"}, "ReLU mask missing"),
    ("twolayer_mask_no_bias.py", "TwoLayerNet", {"W1", "b1"}, "without the bias"),
    ("twolayer_mask_on_grad.py", "TwoLayerNet", {"W1", "b1"}, "upstream gradient"),
    ("twolayer_no_max.py", "TwoLayerNet", {"loss", "W1", "b1", "W2", "b2"}, "no max subtraction"),
    ("twolayer_loss_sum.py", "TwoLayerNet", {"loss"}, "loss not averaged"),
    ("twolayer_wrong_sign.py", "TwoLayerNet", {"W1", "b1", "W2", "b2"}, "wrong sign"),
    # beyond the list
    ("twolayer_not_averaged_twice.py", "TwoLayerNet", {"loss", "W1", "b1", "W2", "b2"}, "N"),
    ("twolayer_bias_mean.py", "TwoLayerNet", {"b1"}, "averaged over the batch (mean)"),
    ("twolayer_bias_keepdims.py", "TwoLayerNet", {"b2"}, "drop keepdims=True"),
    ("twolayer_bias_regularized.py", "TwoLayerNet", {"loss", "b1", "b2"}, "regularizes the weights only"),
]


@pytest.mark.parametrize("file,name,quantities,hint", BROKEN, ids=[b[0][:-3] for b in BROKEN])
def test_broken_homework_is_flagged(file, name, quantities, hint):
    obj = load_target(target(file, name))
    result = check_target(obj, detect_kind(obj))
    assert not result.passed
    assert {r.quantity for r in result.rows if not r.passed} == quantities
    for q in quantities:
        assert any(hint in h for h in result.hints.get(q, [])), (q, result.hints)
        assert not any("does not match" in h or "small relative error" in h for h in result.hints[q])


def test_consistent_half_reg_says_so():
    obj = load_target(target("softmax_half_consistent.py", "softmax_loss_vectorized"))
    hints = check_target(obj, "softmax").hints
    assert any("consistent with each other" in h for h in hints["loss"])
    assert not any("has gradient 2*reg*W" in h for h in hints["dW"])  # not the plain "reg*W" mistake


def test_cli_prints_quantity_size_and_hint(capsys):
    assert main(["--target", target("twolayer_mask_no_bias.py", "TwoLayerNet")]) == 1
    out = capsys.readouterr().out
    assert "FAIL W1: max rel err" in out and "FAIL b1: max rel err" in out
    assert "hint: ReLU mask taken on X W1 without the bias b1" in out
    assert "FAIL W2" not in out and "Traceback" not in out


# ---- --target: correct code passes with no false alarm ----

CORRECT = [
    (str(HOMEWORK / "softmax_correct_loops.py"), "my_softmax"),  # its __main__ block exits if ever run
    (str(HOMEWORK / "softmax_correct_onehot.py"), "softmax_loss_vectorized"),
    (str(HOMEWORK / "twolayer_correct_alt.py"), "Net"),
    (str(HOMEWORK / "twolayer_correct_loops.py"), "LoopyNet"),
    ("reference_numpy.softmax", "softmax_loss_naive"),
    ("reference_numpy.neural_net", "TwoLayerNet"),
    ("torch_impl.softmax", "softmax_loss_vectorized"),  # torch tensors in, tensors out
    ("torch_impl.neural_net", "TwoLayerNet"),  # an nn.Module with parameters
]


@pytest.mark.parametrize("where,name", CORRECT, ids=[f"{Path(w).stem}:{n}" for w, n in CORRECT])
def test_correct_code_passes(where, name, capsys):
    assert main(["--target", f"{where}:{name}"]) == 0
    out = capsys.readouterr().out
    assert "verify: PASS" in out and "hint" not in out and "FAIL" not in out.replace("0 FAIL", "")


# ---- --target: bad behaviour gives a clear line and exit 1; unloadable targets exit 2 ----

@pytest.mark.parametrize("file,message", [
    ("softmax_raises.py", "raised NotImplementedError: TODO: implement the vectorized softmax loss "
                          "(softmax_raises.py:5)"),
    ("softmax_wrong_shape.py", "dW has shape (5, 7), expected (7, 5)"),
    ("softmax_returns_one.py", "returned float64; expected a pair (loss, dW)"),
    ("softmax_swapped_return.py", "returned (dW, loss); the order is (loss, dW)"),
    ("softmax_mutates.py", "changes its input X in place"),
])
def test_bad_behaviour_is_reported_without_traceback(file, message, capsys):
    assert main(["--target", target(file, "softmax_loss_vectorized")]) == 1
    captured = capsys.readouterr()
    assert message in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_mutating_target_cannot_corrupt_the_comparison():
    result = check_target(load_target(target("softmax_mutates.py", "softmax_loss_vectorized")), "softmax")
    assert all(r.passed for r in result.rows if r.quantity in ("loss", "dW"))  # it was given copies
    result = check_target(load_target(target("twolayer_mutates_params.py", "TwoLayerNet")), "two_layer")
    assert {r.quantity for r in result.rows if not r.passed} == {"inputs"}
    assert "self.params['W1']" in " ".join(r.note for r in result.rows)


@pytest.mark.parametrize("argv,message", [
    (["--target", "no_colon_here"], "must be FILE.py:NAME or module:NAME"),
    (["--target", "tests/fixtures/homework/missing.py:f"], "no such file"),
    (["--target", target("softmax_no_max.py", "softmax_loss_naive")], "defines no 'softmax_loss_naive'"),
    (["--target", target("not_a_target.py", "LEARNING_RATE")], "is a float: expected a function"),
    (["--target", target("not_a_target.py", "predict")], "cannot be called as predict(W, X, y, reg)"),
    (["--target", target("not_a_target.py", "NoLoss")], "has no loss(X, y, reg) method"),
    (["--target", target("twolayer_no_max.py", "TwoLayerNet"), "--kind", "softmax"], "is a class"),
    (["--target", "no_such_module_xyz:f"], "importing 'no_such_module_xyz' failed: ModuleNotFoundError"),
    (["--kind", "softmax"], "--kind needs --target"),
])
def test_unloadable_targets_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_load_target_errors_are_target_errors():
    with pytest.raises(TargetError, match="no such file"):
        load_target("nowhere/x.py:f")
