"""Rung 4: a custom autograd.Function. Our formulas become the backward that autograd calls.

Run: python docs/ladder/rung4_function.py. ``forward`` computes the loss and saves what the gradients need
(``ctx.save_for_backward``); ``backward`` receives d(final)/d(loss) and returns one gradient per input of forward.
Training is rung 3's loop unchanged: ``loss.backward()`` now runs our formulas, and anything listening to the
autograd engine (DDP, AMP, clipping) sees them. torch_impl/neural_net.py's TwoLayerLoss is this Function arranged
for speed (addmm, in-place ops, log-sum-exp); tests/test_fast_paths.py proves the two equal.
"""
import numpy as np
import torch

N, D, H, C = 64, 10, 20, 3  # examples, features, hidden units, classes
learning_rate, reg, num_iters, batch_size = 0.5, 1e-3, 30, 16
dtype = torch.float64  # torch's default is float32; float64 matches NumPy digit for digit


def make_problem(seed=0):
    """X (N, D), y (N,), the start params (W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)) and the batches' indices."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = np.argmax(X.dot(rng.standard_normal((D, C))), axis=1)  # (N,)  labels a linear teacher gives: learnable
    params = {"W1": 0.1 * rng.standard_normal((D, H)), "b1": np.zeros(H),
              "W2": 0.1 * rng.standard_normal((H, C)), "b2": np.zeros(C)}
    batches = rng.integers(0, N, size=(num_iters, batch_size))  # with replacement, as np.random.choice draws them
    return X, y, params, batches


# [bridge:ladder-function]
class TwoLayerLoss(torch.autograd.Function):
    """TwoLayerLoss.apply(X, y, W1, b1, W2, b2, reg) -> loss; loss.backward() fills W1.grad ... b2.grad."""

    @staticmethod
    def forward(ctx, X, y, W1, b1, W2, b2, reg):
        N = X.shape[0]
        S1 = X @ W1 + b1  # (N, H)
        H1 = torch.clamp_min(S1, 0)  # (N, H)  ReLU
        scores = H1 @ W2 + b2  # (N, C)
        shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
        probs = torch.exp(shifted) / torch.sum(torch.exp(shifted), dim=1, keepdim=True)  # (N, C)  P
        loss = -torch.mean(torch.log(probs[torch.arange(N), y])) + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))
        ctx.save_for_backward(X, y, W1, W2, S1, H1, probs)  # what backward needs, kept by autograd
        ctx.reg = reg  # a Python number: an attribute, not a saved tensor
        return loss

    @staticmethod
    def backward(ctx, grad_loss):  # grad_loss: d(final)/d(loss), 1.0 for loss.backward()
        X, y, W1, W2, S1, H1, probs = ctx.saved_tensors
        N, reg = X.shape[0], ctx.reg
        dS2 = probs.clone()  # (N, C)  (P - Y) / N, times grad_loss
        dS2[torch.arange(N), y] -= 1
        dS2 *= grad_loss / N
        dH1 = (dS2 @ W2.T) * (S1 > 0)  # (N, H)  through W2 and the ReLU mask
        dW1 = X.T @ dH1 + 2 * reg * grad_loss * W1
        dW2 = H1.T @ dS2 + 2 * reg * grad_loss * W2
        return None, None, dW1, dH1.sum(dim=0), dW2, dS2.sum(dim=0), None  # one per input: X, y, reg get none
# [/bridge:ladder-function]


def two_layer_loss(X, y, W1, b1, W2, b2, reg):
    """Returns the loss; its backward is ours."""
    return TwoLayerLoss.apply(X, y, W1, b1, W2, b2, reg)


def train(X, y, params, batches, learning_rate, reg):
    """SGD over the given batches from ``params`` (copied). Returns the loss history, one float per step."""
    X, y = torch.from_numpy(X).to(dtype), torch.from_numpy(y)  # (N, D), (N,) int64
    params = {name: torch.tensor(p, dtype=dtype, requires_grad=True) for name, p in params.items()}  # leaves
    loss_history = []
    for indices in torch.from_numpy(batches):
        loss = two_layer_loss(X[indices], y[indices], *params.values(), reg)
        loss.backward()  # fills params[name].grad, through TwoLayerLoss.backward
        with torch.no_grad():  # the update is not part of the loss: do not record it
            for name in params:
                params[name] -= learning_rate * params[name].grad
                params[name].grad = None  # backward adds into .grad: clear it before the next step
        loss_history.append(loss.item())
    return loss_history


if __name__ == "__main__":
    X, y, params, batches = make_problem()
    leaves = [torch.tensor(p, dtype=dtype, requires_grad=True) for p in params.values()]
    inputs = (torch.from_numpy(X[:8]), torch.from_numpy(y[:8]), *leaves, reg)
    print("gradcheck (backward vs finite differences):", torch.autograd.gradcheck(TwoLayerLoss.apply, inputs))
    loss_history = train(X, y, params, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
