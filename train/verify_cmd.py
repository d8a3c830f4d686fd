"""``python -m train verify``: check gradients, the project's own or yours.

Usage::

    python -m train verify                                   # NumPy vs torch manual vs autograd vs finite diff
    python -m train verify --json verify.json                # the same rows as JSON too
    python -m train verify --target homework/softmax.py:softmax_loss_vectorized
    python -m train verify --target cs231n.classifiers.neural_net:TwoLayerNet --kind two_layer

Exit status: 0 all PASS, 1 a check failed (a wrong value, an exception, a wrong type or shape, a changed input),
2 the target cannot be loaded or is neither kind. Dispatched by train/__main__.py before LightningCLI (verify
trains nothing), so it has its own argparse parser; the library is torch_impl/verify*.py.
"""
import argparse
import json
import sys

import torch

from torch_impl.verify import format_table, rows_to_json, run_self_check
from torch_impl.verify_targets import QUANTITIES, TARGET_RTOL, TargetError, check_target, detect_kind, load_target

EPILOG = f"""
without --target: the project's softmax (naive, vectorized, SoftmaxLoss) and two-layer net (two_layer_loss,
TwoLayerLoss) on fixed cases (random shapes, reg = 0 and > 0, N = 1, C = 2, large logits ~1e3), float64 and
float32, on the CPU and on CUDA when available, against torch.autograd in float64; float64 CPU cases also
against the NumPy reference and centred finite differences. Tolerances are printed per row and explained in
torch_impl/verify.py.

with --target: your function (W, X, y, reg) -> (loss, dW) or class TwoLayerNet(input_size, hidden_size,
output_size, std) with params and loss(X, y, reg) -> (loss, grads), against torch.autograd in float64
(relative tolerance {TARGET_RTOL:g}) under cs231n's convention (mean cross-entropy + reg*sum(W*W)); wrong
quantities get a hint when they match a common mistake.

exit status: 0 all PASS, 1 some check FAILed, 2 the target cannot be loaded or has neither interface.
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m train verify", description="Verify softmax / two-layer-net gradients against autograd.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", metavar="FILE.py:NAME|module:NAME",
                        help="check this function or class instead of the project itself")
    parser.add_argument("--kind", choices=["softmax", "two_layer"], help="override the detected kind of --target")
    parser.add_argument("--json", metavar="PATH", help="also write the rows (and hints) as JSON to PATH")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"],
                        help="devices for the self-check (repeatable; default: cpu, and cuda when available)")
    return parser


def _write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.kind and not args.target:
        print("verify: --kind needs --target", file=sys.stderr)
        return 2
    if args.target is None:
        devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        if "cuda" in devices and not torch.cuda.is_available():
            print("verify: --device cuda given, but CUDA is not available", file=sys.stderr)
            return 2
        rows = run_self_check(devices=devices)
        print(format_table(rows))
        passed = all(r.passed for r in rows)
        if args.json:
            _write_json(args.json, {"passed": passed, "devices": devices, "rows": rows_to_json(rows)})
        print("verify: all checks PASS" if passed else "verify: some checks FAIL")
        return 0 if passed else 1

    try:
        obj = load_target(args.target)
        kind = detect_kind(obj, args.kind)
    except TargetError as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    result = check_target(obj, kind)
    print(f"verify --target {args.target} (checked as {kind}, float64, against torch.autograd)")
    print(format_table(result.rows))
    order = ["call", "return", "params", "inputs", *QUANTITIES[kind]]
    wrong = sorted({r.quantity for r in result.rows if not r.passed}, key=order.index)
    for q in wrong:
        worst = max((r for r in result.rows if r.quantity == q and not r.passed),
                    key=lambda r: (r.max_rel != r.max_rel, r.max_rel))  # NaN first, then the largest
        size = worst.note or f"max rel err {worst.max_rel:.2e} (abs {worst.max_abs:.2e}) in case '{worst.case}'"
        print(f"FAIL {q}: {size}")
        for hint in result.hints.get(q, []):
            print(f"  hint: {hint}")
    if args.json:
        _write_json(args.json, {"target": args.target, "kind": kind, "passed": result.passed, "wrong": wrong,
                                "hints": result.hints, "rows": rows_to_json(result.rows)})
    print("verify: PASS" if result.passed else f"verify: FAIL ({', '.join(wrong)})")
    return 0 if result.passed else 1
