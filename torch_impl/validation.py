"""Input checks for the torch implementation: each raises ValueError naming the argument, what was given, expected.

Usage (the same names and call lines as reference_numpy/validation.py, one line at the top of each function)::

    check_softmax_inputs(W, X, y, reg)                 # softmax_loss_naive, softmax_loss_vectorized
    check_two_layer_inputs(X, y, W1, b1, W2, b2, reg)  # two_layer_loss (so TwoLayerNet.loss and .predict)
    check_net_sizes(input_size, hidden_size, output_size, std)   # TwoLayerNet.__init__
    check_split("train", X, y, num_classes)            # a data module, once per split after loading
    check_two_layer_inputs(X, y, W1, b1, W2, b2, reg, values=False)  # TwoLayerLoss.forward: every step, metadata
    with skip_value_checks():                          # by-hand calls in a hot loop: metadata only, no host sync
        loss, grads = two_layer_loss(X, y, W1, b1, W2, b2, reg)

Two kinds of checks:

- metadata (free: Python attribute reads, no device work): tensors, dimensions, shapes that chain (X (N, D),
  W (D, C) / W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)), N >= 1, y a 1-D integer tensor of length N, X and the
  parameters of one floating dtype and on one device, reg a finite number >= 0.
- values (a pass over the data and ONE host sync for all of them together): NaN/Inf in X and the parameters,
  labels in [0, C). On CUDA the sync stalls the pipeline, so the training step (the autograd Function's forward)
  passes ``values=False``; inside ``skip_value_checks()`` and under CUDA graph capture every check skips values.
  Instead the data modules scan each whole split once with ``check_split`` after loading, and
  train/divergence.py watches the loss and gradients for NaN/Inf.
"""
import contextlib
import contextvars

import numpy as np
import torch

from reference_numpy.validation import (  # noqa: F401  the scalar checks are plain Python: one definition
    DIVERGED_HINT,
    check_net_sizes,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)

_VALUE_CHECKS = contextvars.ContextVar("torch_impl_value_checks", default=True)


@contextlib.contextmanager
def skip_value_checks():
    """Within the block the check_* functions read only metadata: no NaN/Inf scan, no label range, no host sync."""
    token = _VALUE_CHECKS.set(False)
    try:
        yield
    finally:
        _VALUE_CHECKS.reset(token)


def value_checks_enabled():
    """False inside skip_value_checks() and while a CUDA graph is being captured (a sync there is an error)."""
    return _VALUE_CHECKS.get() and not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def describe(t):
    """'shape (N, D) torch.float32 on cpu', or the type name for something that is not a tensor."""
    if isinstance(t, np.ndarray):
        return f"a NumPy array of shape {t.shape} {t.dtype}"
    if not isinstance(t, torch.Tensor):
        return f"a {type(t).__name__}"
    return f"shape {tuple(t.shape)} {t.dtype} on {t.device}"


def check_tensor(name, t, ndim, what):
    """t: a tensor with ``ndim`` dimensions of floating point numbers; ``what`` names the expected shape."""
    if not isinstance(t, torch.Tensor) or t.dim() != ndim:
        raise ValueError(f"{name}: got {describe(t)}; expected a {ndim}-D tensor {what}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: got {describe(t)}; expected a floating point dtype")


def check_same_dtype_device(reference_name, reference, **tensors):
    """Every tensor in ``tensors`` has the dtype and device of ``reference`` (matmul needs both to match)."""
    for name, t in tensors.items():
        if t.dtype != reference.dtype or t.device != reference.device:
            raise ValueError(f"{name}: got {describe(t)}; expected {reference.dtype} on {reference.device}, the "
                             f"dtype and device of {reference_name} (convert with .to())")


def _raise_nonfinite(tensors):
    for name, t in tensors.items():
        finite = torch.isfinite(t)  # same shape as t
        if not bool(finite.all()):
            first = tuple(int(i) for i in torch.nonzero(~finite)[0])
            # NaN/Inf in a weight is what divergence leaves; in the data it is the data's own defect
            hint = DIVERGED_HINT if name in ("W", "W1", "b1", "W2", "b2") else "the data holds them: clean it"
            raise ValueError(f"{name}: got {describe(t)} with {int(torch.isnan(t).sum())} NaN and "
                             f"{int(torch.isinf(t).sum())} Inf entries (first at index {first}); expected finite "
                             f"values ({hint})")


def _finite_flags(tensors):
    """0-d bools on the device, one per tensor, True when every entry is finite; exact, and one pass each.

    A NaN or Inf entry makes the sum NaN or Inf, so a finite sum proves the tensor finite; a non-finite sum may
    also be an overflow of finite entries, and only then is the exact elementwise test paid.
    """
    return [torch.isfinite(t.sum()) for t in tensors.values()]


def _check_values(tensors, y=None, y_name="y", num_classes=None, values=True):
    """NaN/Inf in ``tensors`` and y in [0, num_classes), with one host sync for all of them."""
    if not (values and value_checks_enabled()):
        return
    flags = _finite_flags(tensors)
    if y is not None and y.numel():
        flags += [(y >= 0).all(), (y < num_classes).all()]
    if not flags or bool(torch.stack([f.to(flags[0].device) for f in flags]).all()):  # the one host sync
        return
    _raise_nonfinite(tensors)  # exact; returns when only a sum overflowed
    if y is not None and y.numel():
        lo, hi = torch.aminmax(y)
        if int(lo) < 0 or int(hi) >= num_classes:
            raise ValueError(f"{y_name}: got labels in [{int(lo)}, {int(hi)}]; expected labels in "
                             f"[0, {num_classes}) (C = {num_classes} classes)")


def check_labels(name, y, num_rows, device, rows_of="X"):
    """y: (N,) integer tensor on ``device``, N == num_rows (metadata only; the range is in _check_values)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise ValueError(f"{name}: got {describe(y)}; expected a 1-D integer tensor (N,) of labels")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name}: got {describe(y)}; expected an integer dtype (any width; int64 is used)")
    if y.shape[0] != num_rows:
        raise ValueError(f"{name}: got {y.shape[0]} labels; expected {num_rows}, one per row of {rows_of}")
    if y.device != device:
        raise ValueError(f"{name}: got {describe(y)}; expected device {device}, the device of {rows_of}")


def check_rows(name, X, num_features, features_of):
    """X: (N, D) with N >= 1 and D == num_features (the rows of ``features_of``)."""
    check_tensor(name, X, 2, "(N, D)")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: got {describe(X)}, an empty batch; expected at least one row (N >= 1)")
    if X.shape[1] != num_features:
        raise ValueError(f"{name}: got {describe(X)}; expected (N, {num_features}): its columns must match the "
                         f"rows of {features_of}")


def check_reg(reg, values=True):
    """reg: the L2 strength, a finite number >= 0 (a 0-d tensor is read only when value checks are on)."""
    if isinstance(reg, torch.Tensor) and reg.dim() == 0:
        if values and value_checks_enabled():
            check_nonnegative_float("reg", float(reg))
        return reg
    return check_nonnegative_float("reg", reg)


def check_softmax_inputs(W, X, y, reg, values=True):
    """W: (D, C); X: (N, D), N >= 1; y: (N,) integers in [0, C); reg >= 0; one dtype, one device; finite.

    values=False: metadata only (the autograd Function's forward, called every training step).
    """
    check_tensor("W", W, 2, "(D, C)")
    check_rows("X", X, W.shape[0], f"W {tuple(W.shape)}")
    check_same_dtype_device("W", W, X=X)
    check_labels("y", y, X.shape[0], X.device)
    check_reg(reg, values)
    _check_values({"X": X, "W": W}, y, "y", W.shape[1], values)


def check_two_layer_params(W1, b1, W2, b2):
    """W1: (D, H), b1: (H,), W2: (H, C), b2: (C,): shapes chain; one dtype and one device."""
    check_tensor("W1", W1, 2, "(D, H)")
    H = W1.shape[1]
    check_tensor("b1", b1, 1, f"(H,) = ({H},)")
    if tuple(b1.shape) != (H,):
        raise ValueError(f"b1: got {describe(b1)}; expected ({H},) to match the columns of W1 {tuple(W1.shape)}")
    check_tensor("W2", W2, 2, "(H, C)")
    if W2.shape[0] != H:
        raise ValueError(f"W2: got {describe(W2)}; expected ({H}, C): its rows must match the columns of W1 "
                         f"{tuple(W1.shape)}")
    C = W2.shape[1]
    check_tensor("b2", b2, 1, f"(C,) = ({C},)")
    if tuple(b2.shape) != (C,):
        raise ValueError(f"b2: got {describe(b2)}; expected ({C},) to match the columns of W2 {tuple(W2.shape)}")
    check_same_dtype_device("W1", W1, b1=b1, W2=W2, b2=b2)


def check_two_layer_inputs(X, y, W1, b1, W2, b2, reg, values=True):
    """X: (N, D), N >= 1; y: (N,) integers in [0, C) or None; W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); reg >= 0.

    X and the parameters share one floating dtype and one device; values (finite, label range) unless
    values=False (the autograd Function's forward, called every training step) or inside skip_value_checks().
    """
    check_tensor("X", X, 2, "(N, D)")
    check_two_layer_params(W1, b1, W2, b2)
    check_rows("X", X, W1.shape[0], f"W1 {tuple(W1.shape)}")
    check_same_dtype_device("W1", W1, X=X)
    if y is not None:
        check_labels("y", y, X.shape[0], X.device)
    check_reg(reg, values)
    _check_values({"X": X, "W1": W1, "b1": b1, "W2": W2, "b2": b2}, y, "y", W2.shape[1], values)


def is_integer(t):
    """True for a tensor of an integer dtype (bool, complex and floating point excluded)."""
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def as_features(X, like):
    """X, a tensor or NumPy array of real numbers, in the dtype and on the device of the tensor ``like``.

    Anything else is returned unchanged for the checks to name in one line. No copy when X already matches.
    """
    if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
        X = torch.from_numpy(X)  # bool stays bool, for check_tensor to name
    if isinstance(X, torch.Tensor) and (X.is_floating_point() or is_integer(X)):
        return X.to(dtype=like.dtype, device=like.device)
    return X


def as_labels(y, device=None):
    """y, a tensor or NumPy array of any integer dtype, as int64 (what indexing, scatter and nll_loss need).

    device: where to put it (None: where it is). Anything else is returned unchanged for the checks to name.
    """
    if isinstance(y, np.ndarray) and y.dtype.kind in "biuf":
        y = torch.from_numpy(y)  # bool and float stay so, for check_labels to name
    if isinstance(y, torch.Tensor) and is_integer(y):
        return y.to(dtype=torch.int64, device=device if device is not None else y.device)
    return y


def check_split(name, X, y, num_classes):
    """A whole data split, values included (always: call once after loading, not per step).

    X: (N, D) floating, finite, N >= 1; y: (N,) integer labels in [0, num_classes) on X's device.
    ``name``: the split, e.g. 'train'; messages say 'train X: ...'.
    """
    check_positive_int("num_classes", num_classes)
    check_tensor(f"{name} X", X, 2, "(N, D)")
    if X.shape[0] == 0:
        raise ValueError(f"{name} X: got {describe(X)}, an empty split; expected at least one row (N >= 1)")
    check_labels(f"{name} y", y, X.shape[0], X.device, rows_of=f"{name} X")
    token = _VALUE_CHECKS.set(True)
    try:
        _check_values({f"{name} X": X}, y, f"{name} y", num_classes)
    finally:
        _VALUE_CHECKS.reset(token)
