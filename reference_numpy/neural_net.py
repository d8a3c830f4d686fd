"""A two-layer fully-connected net, affine - ReLU - affine - softmax (cs231n assignment 1, neural_net.py).

Usage::

    net = TwoLayerNet(input_size=3072, hidden_size=50, output_size=10)
    stats = net.train(X_train, y_train, X_val, y_val, num_iters=1000, batch_size=200,
                      learning_rate=1e-4, learning_rate_decay=0.95, reg=0.25)
    y_pred = net.predict(X_test)

Backpropagation, with dS2 from formula (4) of reference_numpy/softmax.py:

    S1 = X W1 + b1, H1 = max(0, S1), S2 = H1 W2 + b2
    dS2 = (P - Y) / N
    dW2 = H1^T dS2 + 2 reg W2          db2 = sum over rows of dS2
    dH1 = dS2 W2^T masked by (S1 > 0)
    dW1 = X^T dH1 + 2 reg W1           db1 = sum over rows of dH1

The loss keeps the article's ``-log(softmax[y])``; see reference_numpy/softmax.py for where it overflows.
"""
import warnings

import numpy as np

from reference_numpy.validation import (
    DivergenceWarning,
    check_net_sizes,
    check_train,
    check_two_layer_inputs,
    warn_diverged,
)

PARAM_NAMES = ("W1", "b1", "W2", "b2")  # the order of every two-layer signature, grads dict and .npz
# what python -m train export may store beside the weights (TwoLayerNet.read_preprocessing)
PREPROCESSING_KEYS = ("image_shape", "channels", "pixel_max", "mean_image", "whitening", "class_names", "val_files")


def preprocessing_of(arrays):
    """The PREPROCESSING_KEYS of ``arrays`` (an .npz's arrays, or anything array-like) as TwoLayerNet.read_preprocessing
    returns them: image_shape a tuple of ints, channels a str, pixel_max a float, class_names and val_files lists of
    str, mean_image and whitening arrays in their stored dtype."""
    convert = {"image_shape": lambda a: tuple(int(n) for n in np.asarray(a)), "channels": lambda a: str(np.asarray(a)),
               "pixel_max": float, "class_names": lambda a: [str(c) for c in a],
               "val_files": lambda a: [str(f) for f in a]}
    return {name: convert.get(name, np.asarray)(arrays[name]) for name in PREPROCESSING_KEYS if name in arrays}


def two_layer_loss(X, y, W1, b1, W2, b2, reg):
    """Loss and gradients of the two-layer net.

    X: (N, D); y: (N,) labels in [0, C) or None; W1: (D, H); b1: (H,); W2: (H, C); b2: (C,).
    Returns scores (N, C) when y is None, else (loss, grads) with grads keys W1, b1, W2, b2.
    """
    check_two_layer_inputs(X, y, W1, b1, W2, b2, reg)
    N = X.shape[0]
    # forward pass
    # [bridge:net-forward]
    S1 = X.dot(W1) + b1  # (N, H)
    H1 = np.maximum(S1, 0)  # (N, H)  ReLU
    scores = H1.dot(W2) + b2  # (N, C)  S2
    # [/bridge:net-forward]
    if y is None:
        return scores

    # [bridge:net-softmax]
    shifted = scores - np.max(scores, axis=1, keepdims=True)  # (N, C)  max subtraction
    exp_scores = np.exp(shifted)  # (N, C)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)  # (N, C)  P = softmax(S2)
    # [/bridge:net-softmax]
    # [bridge:net-loss]
    loss = -np.mean(np.log(probs[np.arange(N), y]))
    loss += reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    # [/bridge:net-loss]

    # backward pass
    grads = {}
    # [bridge:net-dscores]
    dS2 = probs.copy()  # (N, C)  formula (4): dS2 = (P - Y) / N
    dS2[np.arange(N), y] -= 1
    dS2 /= N
    # [/bridge:net-dscores]
    # [bridge:net-layer2]
    grads["W2"] = H1.T.dot(dS2) + 2 * reg * W2  # (H, C)  formula (5) for layer 2
    grads["b2"] = np.sum(dS2, axis=0)  # (C,)  bias: column sums
    # [/bridge:net-layer2]
    # [bridge:net-relu-mask]
    dH1 = dS2.dot(W2.T)  # (N, H)  formula (2) through W2
    dH1 = dH1 * (S1 > 0)  # (N, H)  ReLU mask on the pre-activation
    # [/bridge:net-relu-mask]
    # [bridge:net-layer1]
    grads["W1"] = X.T.dot(dH1) + 2 * reg * W1  # (D, H)  formula (5) for layer 1
    grads["b1"] = np.sum(dH1, axis=0)  # (H,)  bias: column sums
    # [/bridge:net-layer1]
    return loss, grads


class TwoLayerNet:
    """Two-layer net with cs231n's interface; parameters live in ``self.params`` (W1, b1, W2, b2)."""

    def __init__(self, input_size, hidden_size, output_size, std=1e-4):
        """W1: (D, H), b1: (H,), W2: (H, C), b2: (C,); weights std * randn in this order, biases zero."""
        check_net_sizes(input_size, hidden_size, output_size, std)
        self.params = {}
        self.params["W1"] = std * np.random.randn(input_size, hidden_size)
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = std * np.random.randn(hidden_size, output_size)
        self.params["b2"] = np.zeros(output_size)

    def loss(self, X, y=None, reg=0.0):
        """X: (N, D); y: (N,) or None. Returns scores (N, C) if y is None, else (loss, grads)."""
        p = self.params
        return two_layer_loss(X, y, p["W1"], p["b1"], p["W2"], p["b2"], reg)

    def train(self, X, y, X_val, y_val, learning_rate=1e-3, learning_rate_decay=0.95, reg=5e-6,
              num_iters=100, batch_size=200, verbose=False, sample_indices=None):
        """Minibatch SGD with cs231n's semantics.

        X: (N, D), y: (N,), X_val: (N_val, D), y_val: (N_val,).
        Batches are drawn with replacement: ``np.random.choice(num_train, batch_size)``. ``sample_indices``
        (optional, not in cs231n) is a callable ``it -> (batch_size,) int array`` that replaces that draw, so that
        another implementation can be driven with the same batch sequence. Once per "epoch" (whenever
        ``it % iterations_per_epoch == 0``, it == 0 included, with the float epoch length
        ``max(num_train / batch_size, 1)``) the train accuracy of the current batch and the val accuracy are
        recorded and the learning rate is multiplied by ``learning_rate_decay``.
        A diverging run goes on as cs231n's does: NaN/Inf losses are recorded, with one DivergenceWarning at the first.
        Returns {'loss_history', 'train_acc_history', 'val_acc_history'}.
        """
        check_train(self.params, X, y, X_val, y_val, learning_rate, learning_rate_decay, reg, num_iters, batch_size)
        num_train = X.shape[0]
        iterations_per_epoch = max(num_train / batch_size, 1)

        diverged_at = None  # (iteration, loss, learning_rate) of the first NaN/Inf loss: one warning
        loss_history = []
        train_acc_history = []
        val_acc_history = []
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", DivergenceWarning)  # per call; the run warns once, below
            for it in range(num_iters):
                if sample_indices is None:
                    indices = np.random.choice(num_train, batch_size)  # with replacement
                else:
                    indices = np.asarray(sample_indices(it))
                X_batch = X[indices]  # (B, D)
                y_batch = y[indices]  # (B,)

                loss, grads = self.loss(X_batch, y=y_batch, reg=reg)
                loss_history.append(loss)
                if diverged_at is None and not np.isfinite(loss):
                    diverged_at = (it, loss, learning_rate)
                # [bridge:net-update]
                for name in self.params:
                    self.params[name] -= learning_rate * grads[name]  # the SGD update
                # [/bridge:net-update]

                if verbose and it % 100 == 0:
                    print(f"iteration {it} / {num_iters}: loss {loss:f}")

                if it % iterations_per_epoch == 0:
                    train_acc = (self.predict(X_batch) == y_batch).mean()
                    val_acc = (self.predict(X_val) == y_val).mean()
                    train_acc_history.append(train_acc)
                    val_acc_history.append(val_acc)
                    learning_rate *= learning_rate_decay
        if diverged_at is not None:
            warn_diverged("TwoLayerNet.train", *diverged_at, reg)

        return {
            "loss_history": loss_history,
            "train_acc_history": train_acc_history,
            "val_acc_history": val_acc_history,
        }

    def predict(self, X):
        """X: (N, D). Returns (N,) predicted class indices."""
        return np.argmax(self.loss(X), axis=1)

    def save_params(self, path):
        """Write ``self.params`` (W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)) as float64 to the .npz ``path``."""
        with open(path, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, **{name: np.asarray(p, dtype=np.float64) for name, p in self.params.items()})

    def load_params(self, path):
        """Replace ``self.params`` by the ones in ``path`` (from save_params or ``python -m train export``)."""
        self.params = self.read_params(path)
        return self

    @classmethod
    def from_npz(cls, path):
        """A net with the parameters in the .npz ``path``, sizes from the file; draws nothing from NumPy's RNG.

        ``net.preprocessing`` is the file's preprocessing (read_preprocessing; {} for a file of weights only), which
        reference_numpy/images.py's predict_images applies to raw pixels."""
        net = cls.__new__(cls)  # skips __init__, whose random init would advance np.random's global state
        net.params = cls.read_params(path)
        net.preprocessing = cls.read_preprocessing(path)
        return net

    @staticmethod
    def read_preprocessing(path):
        """How raw pixels became the net's input, as ``python -m train export`` stored it beside the weights:
        {'image_shape': (C, H, W), 'channels': 'RGB' or 'L', 'pixel_max': float, 'mean_image': (D,),
        'whitening': (D, k) (when whitened), 'class_names': [str], 'val_files': [str] (an ImageFolder run's
        validation images)}, each key only when the file has it; {} for a file of weights only."""
        with np.load(path, allow_pickle=False) as data:
            return preprocessing_of({name: data[name] for name in PREPROCESSING_KEYS if name in data.files})

    @staticmethod
    def read_params(path):
        """The params in the .npz file ``path`` as float64: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)."""
        where = f"path: {str(path)!r}"
        expected = "expected an .npz with W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)"
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError as e:
            raise ValueError(f"{where}: no such file; {expected}") from e
        except (OSError, ValueError) as e:
            raise ValueError(f"{where}: not an .npz archive; {expected}") from e
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{where}: holds a single array; {expected}")
        with data:
            params = {name: data[name] for name in data.files if name in ("W1", "b1", "W2", "b2")}
            if len(params) != 4:
                raise ValueError(f"{where}: holds {sorted(data.files)}; {expected}")
        shapes = {name: p.shape for name, p in params.items()}
        W1, W2 = shapes["W1"], shapes["W2"]
        if len(W1) != 2 or len(W2) != 2 or shapes["b1"] != W1[1:] or W2[0] != W1[1] or shapes["b2"] != W2[1:]:
            raise ValueError(f"{where}: has shapes {shapes}; {expected}")
        if not all(np.issubdtype(p.dtype, np.floating) for p in params.values()):
            dtypes = {name: str(p.dtype) for name, p in params.items()}
            raise ValueError(f"{where}: has dtypes {dtypes}; expected floating point")
        return {name: params[name].astype(np.float64) for name in PARAM_NAMES}
