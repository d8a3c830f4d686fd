"""Input checks for the NumPy reference: each raises ValueError naming the argument, what was given, what was expected.

Usage (one call line at the top of each public function, so the article's code below it stays as it was)::

    check_softmax_inputs(W, X, y, reg)               # softmax_loss_naive, softmax_loss_vectorized
    check_two_layer_inputs(X, y, W1, b1, W2, b2, reg)  # two_layer_loss (so also TwoLayerNet.loss and .predict)
    check_net_sizes(input_size, hidden_size, output_size, std)             # TwoLayerNet.__init__
    check_train(params, X, y, X_val, y_val, learning_rate, ...)           # TwoLayerNet.train

What the reference checks, and why it stays faithful: shapes (X (N, D) with N > 0, W (D, C) / W1 (D, H), b1 (H,),
W2 (H, C), b2 (C,)), labels (1-D, integer, length N, in [0, C)), NaN/Inf in X, reg finite and >= 0, sizes and
training hyperparameters > 0. Every check is one pass over the inputs at most (the cost of reading them once, small
next to the matrix products), and each function's body is unchanged. NumPy has no devices and upcasts mixed dtypes,
so dtype/device mixing is a torch-only check (torch_impl/validation.py, same function names).

NaN/Inf in the parameters is what a diverged run leaves behind, not a caller's mistake, so the reference behaves like
cs231n's code: the loss and scores come out NaN/Inf and it goes on. A direct call warns (``DivergenceWarning``, once
per call site); ``TwoLayerNet.train`` and ``LinearClassifier.train`` record the NaN/Inf in ``loss_history`` and warn
once per run with ``warn_diverged``.
"""
import math
import numbers
import warnings

import numpy as np

# Plain SGD multiplies W by (1 - 2 lr reg) before adding the data gradient: at a high learning rate a larger reg
# makes that factor more negative, so raising reg makes divergence worse, not better.
DIVERGED_HINT = ("a diverged run produces this: lower learning_rate, or reg (each SGD step multiplies W by "
                 "1 - 2*learning_rate*reg, which flips sign and grows once learning_rate*reg > 1)")


class DivergenceWarning(RuntimeWarning):
    """The parameters or the loss hold NaN/Inf: a diverged run, whose results are NaN/Inf as in cs231n's code."""


def check_positive_int(name, value):
    """value: an int > 0 (bool is refused). Returns value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}: got {value!r}; expected a positive int (>= 1)")
    return value


def check_nonnegative_int(name, value):
    """value: an int >= 0 (bool is refused). Returns value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: got {value!r}; expected an int >= 0")
    return value


def check_positive_float(name, value):
    """value: a finite real number > 0 (bool is refused). Returns value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: got {value!r}; expected a finite number > 0")
    return value


def check_nonnegative_float(name, value):
    """value: a finite real number >= 0 (bool is refused). Returns value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: got {value!r}; expected a finite number >= 0")
    return value


def describe(a):
    """'shape (N, D) float64', or the type name for something that is not an array."""
    if not isinstance(a, np.ndarray):
        return f"a {type(a).__name__}"
    return f"shape {a.shape} {a.dtype}"


def check_array(name, a, ndim, what):
    """a: a NumPy array with ``ndim`` dimensions of real numbers; ``what`` names the expected shape, e.g. '(N, D)'."""
    if not isinstance(a, np.ndarray) or a.ndim != ndim:
        raise ValueError(f"{name}: got {describe(a)}; expected a {ndim}-D array {what}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name}: got {describe(a)}; expected real numbers (float or int)")


def check_finite_arrays(**arrays):
    """Each keyword argument a data array; raises for the first one holding NaN or Inf, counting both."""
    for name, a in arrays.items():
        finite = np.isfinite(a)  # same shape as a
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(f"{name}: got {describe(a)} with {int(np.isnan(a).sum())} NaN and "
                             f"{int(np.isinf(a).sum())} Inf entries (first at index {first}); expected finite "
                             f"values")


def warn_nonfinite_params(**params):
    """Each keyword argument a parameter array; warns (DivergenceWarning) for the first one holding NaN or Inf."""
    for name, a in params.items():
        if not np.isfinite(a).all():
            warnings.warn(f"{name}: holds NaN/Inf, so the results are NaN/Inf ({DIVERGED_HINT})", DivergenceWarning,
                          stacklevel=4)  # warn_nonfinite_params <- check_* <- the loss function <- its caller
            return


def warn_diverged(where, iteration, loss, learning_rate, reg):
    """The one warning a training loop gives when its loss first turns NaN/Inf; the loop goes on, as cs231n's does."""
    shrink = 1 - 2 * learning_rate * reg  # the factor each SGD step applies to W through the reg term
    if 2 * learning_rate * reg > 1:  # shrink < 0: the reg term overshoots, and below -1 it grows W
        hint = (f"lower learning_rate or reg: each SGD step multiplies W by 1 - 2*learning_rate*reg = {shrink:g} "
                f"(raising reg makes it worse)")
    else:
        hint = "lower learning_rate"
    warnings.warn(f"{where}: loss {loss} at iteration {iteration} (learning_rate {learning_rate:g}, reg {reg:g}); "
                  f"the run diverged and goes on recording NaN/Inf in loss_history; {hint}", DivergenceWarning,
                  stacklevel=3)


def check_labels(name, y, num_rows, num_classes, rows_of="X"):
    """y: (N,) integer labels in [0, num_classes), N == num_rows (the rows of ``rows_of``)."""
    if not isinstance(y, np.ndarray) or y.ndim != 1:
        raise ValueError(f"{name}: got {describe(y)}; expected a 1-D integer array (N,) of labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: got {describe(y)}; expected an integer dtype (labels in [0, {num_classes}))")
    if y.shape[0] != num_rows:
        raise ValueError(f"{name}: got {y.shape[0]} labels; expected {num_rows}, one per row of {rows_of}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: got labels in [{y.min()}, {y.max()}]; expected labels in [0, {num_classes}) "
                         f"(C = {num_classes} classes)")


def check_rows(name, X, num_features, features_of):
    """X: (N, D) with N > 0 and D == num_features (the rows of ``features_of``, e.g. 'W1 (D, H) = (3, 10)')."""
    check_array(name, X, 2, "(N, D)")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: got {describe(X)}, an empty batch; expected at least one row (N >= 1)")
    if X.shape[1] != num_features:
        raise ValueError(f"{name}: got {describe(X)}; expected (N, {num_features}): its columns must match the "
                         f"rows of {features_of}")


def check_reg(reg):
    """reg: the L2 strength, a finite number >= 0."""
    return check_nonnegative_float("reg", reg)


def check_softmax_inputs(W, X, y, reg):
    """W: (D, C); X: (N, D), N >= 1, finite; y: (N,) integers in [0, C); reg >= 0. W with NaN/Inf warns."""
    check_array("W", W, 2, "(D, C)")
    check_rows("X", X, W.shape[0], f"W {W.shape}")
    check_labels("y", y, X.shape[0], W.shape[1])
    check_reg(reg)
    check_finite_arrays(X=X)
    warn_nonfinite_params(W=W)


def check_two_layer_params(W1, b1, W2, b2):
    """W1: (D, H), b1: (H,), W2: (H, C), b2: (C,): each shape chains into the next."""
    check_array("W1", W1, 2, "(D, H)")
    H = W1.shape[1]
    check_array("b1", b1, 1, f"(H,) = ({H},)")
    if b1.shape != (H,):
        raise ValueError(f"b1: got {describe(b1)}; expected ({H},) to match the columns of W1 {W1.shape}")
    check_array("W2", W2, 2, "(H, C)")
    if W2.shape[0] != H:
        raise ValueError(f"W2: got {describe(W2)}; expected ({H}, C): its rows must match the columns of W1 "
                         f"{W1.shape}")
    check_array("b2", b2, 1, f"(C,) = ({W2.shape[1]},)")
    if b2.shape != (W2.shape[1],):
        raise ValueError(f"b2: got {describe(b2)}; expected ({W2.shape[1]},) to match the columns of W2 {W2.shape}")


def check_two_layer_inputs(X, y, W1, b1, W2, b2, reg):
    """X: (N, D), N >= 1, finite; y: (N,) integers in [0, C) or None; W1 (D, H), b1 (H,), W2 (H, C), b2 (C,);
    reg >= 0. Parameters with NaN/Inf warn."""
    check_array("X", X, 2, "(N, D)")
    check_two_layer_params(W1, b1, W2, b2)
    check_rows("X", X, W1.shape[0], f"W1 {W1.shape}")
    if y is not None:
        check_labels("y", y, X.shape[0], W2.shape[1])
    check_reg(reg)
    check_finite_arrays(X=X)
    warn_nonfinite_params(W1=W1, b1=b1, W2=W2, b2=b2)


def check_net_sizes(input_size, hidden_size, output_size, std):
    """input_size D, hidden_size H, output_size C: ints >= 1; std: the init scale, finite and >= 0."""
    check_positive_int("input_size", input_size)
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("output_size", output_size)
    check_nonnegative_float("std", std)


def check_split(name, X, y, num_classes):
    """A whole data split: X: (N, D) finite, N >= 1; y: (N,) integers in [0, num_classes). ``name``: e.g. 'train'."""
    check_array(f"{name} X", X, 2, "(N, D)")
    if X.shape[0] == 0:
        raise ValueError(f"{name} X: got {describe(X)}, an empty split; expected at least one row (N >= 1)")
    check_labels(f"{name} y", y, X.shape[0], num_classes, rows_of=f"{name} X")
    check_finite_arrays(**{f"{name} X": X})


def check_train(params, X, y, X_val, y_val, learning_rate, learning_rate_decay, reg, num_iters, batch_size):
    """TwoLayerNet.train's arguments: both splits against ``params`` (W1 (D, H) ... b2 (C,)), and the hyperparameters.

    X: (N, D), y: (N,), X_val: (N_val, D), y_val: (N_val,); learning_rate, learning_rate_decay > 0; reg >= 0;
    num_iters >= 0; batch_size >= 1.
    """
    W1, W2 = params["W1"], params["W2"]
    check_two_layer_params(W1, params["b1"], W2, params["b2"])
    for split, (Xs, ys) in {"": (X, y), "_val": (X_val, y_val)}.items():
        check_rows(f"X{split}", Xs, W1.shape[0], f"W1 {W1.shape}")
        check_labels(f"y{split}", ys, Xs.shape[0], W2.shape[1], rows_of=f"X{split}")
        check_finite_arrays(**{f"X{split}": Xs})
    check_positive_float("learning_rate", learning_rate)
    check_positive_float("learning_rate_decay", learning_rate_decay)
    check_reg(reg)
    check_nonnegative_int("num_iters", num_iters)
    check_positive_int("batch_size", batch_size)
