"""M two-layer nets trained together, one batched SGD step for all of them: the model behind ``python -m train sweep``.

Usage::

    nets = BatchedTwoLayerNets.stack([net_a.params, net_b.params], reg=[1e-3, 1e-2], momentum=[0.0, 0.9])
    losses = nets.step(X_b, y_b, lr=torch.tensor([0.2, 0.1]))  # (M,) each net's loss before its update
    gone = nets.drop(~torch.isfinite(losses))                   # diverged nets leave; the others go on unchanged
    acc = nets.accuracy(X_val, y_val)                           # (M,) of the nets still in (ids: nets.ids)
    params = nets.unstack()                                     # [{'W1': (D, H_m), 'b1': ..., 'W2': ..., 'b2': ...}]

The nets share D, C, the batch and its labels; each has its own hidden size H_m, reg_m, momentum_m and lr_m.
Layout, with Hmax = max H_m and P = M Hmax (padding to Hmax, so that the second layer is one batched GEMM):

    W1 (D, P) = [W1_1 0 | W1_2 0 | ...]   net m owns columns m Hmax .. m Hmax + Hmax - 1; past H_m they are zero
    b1 (P,) likewise; W2 (M, Hmax, C), rows past H_m zero; b2 (M, C); the momentum buffers shaped like these
    (W2 and its buffer are views of contiguous (M, C, Hmax) tensors: the layout ``step`` multiplies in)

One step, the formulas of torch_impl/neural_net.py for every net at once:

    S1 = X W1 + b1                          (B, P)       one wide GEMM: X [W1_1 | ... | W1_M]
    H1_m = max(0, S1_m)                     (M, B, Hmax) a view of S1's columns, net by net
    S2_m = H1_m W2_m + b2_m                 (M, B, C)    one batched GEMM
    dS2_m = (P_m - Y) / B                                formula (4)
    dH1_m = dS2_m W2_m^T masked by S1_m > 0
    dW2_m = H1_m^T dS2_m + 2 reg_m W2_m     db2_m = column sums of dS2_m      formula (5)
    dW1 = X^T dH1 + 2 reg W1                db1 = column sums of dH1          one wide GEMM, reg per column block
    v = momentum v + dW;  W -= lr v         torch.optim.SGD per net (momentum 0: W -= lr dW)

Padding stays exactly zero: a padded column of W1 and b1 gives S1 = 0, so ReLU's mask is off and dH1 = 0 there,
and its gradient is X^T 0 + 2 reg 0 = 0; a padded row of W2 meets H1 = 0, so its gradient is 0 as well.
Nets never mix: each column of the wide GEMMs and each matrix of the batched ones belongs to one net, and every
per-net factor (lr, reg, momentum) multiplies only that net's slots, so a NaN in one net reaches no other.
``drop`` compacts the stack, so a diverged or pruned net costs nothing afterwards.

``step`` computes the same formulas transposed, in a (net, unit, example) layout: S1^T = W1^T X^T + b1 (P, B),
H1^T (M, Hmax, B), S2^T (M, C, B), so that every per-net matrix is contiguous and the softmax runs over a middle
dimension of size C instead of an innermost one of size C = 10 (on a CPU several times faster for the batched
GEMMs and the softmax); it folds the update into the gradient GEMMs (no autograd). ``loss_and_grads`` is
the readable form of the same formulas and ``stacked_loss`` its plain-autograd twin; tests/test_batched.py proves
the step equal to M separate runs of torch_impl/fused_step.py's fused_sgd_step and the gradients equal to
autograd's.
GraphedBatchedSteps replays K batched steps from one CUDA graph.
"""
import torch
import torch.nn.functional as F

from torch_impl.cuda_graph import GraphedSteps
from torch_impl.neural_net import PARAM_NAMES


def _per_net(name, values, M, dtype, device):
    """A number or M numbers as an (M,) tensor; names the argument when the count is wrong."""
    t = torch.as_tensor(values, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(M).clone()
    if t.shape != (M,):
        raise ValueError(f"{name}: got shape {tuple(t.shape)}; expected a number or {M} numbers, one per net")
    return t


class BatchedTwoLayerNets:
    """M two-layer nets in the padded layout of the module docstring; ``ids`` are their positions in the original
    ``stack`` list (``drop`` removes entries). Attributes W1 (D, P), b1 (P,), W2 (M, Hmax, C), b2 (M, C); reg,
    momentum: (M,); buffers: the momentum buffers (None when every momentum is 0); hidden_sizes: [H_m]."""

    def __init__(self, W1, b1, W2, b2, hidden_sizes, reg, momentum, buffers=None, ids=None):
        self.W1, self.b1, self.W2, self.b2 = W1, b1, _transposed_storage(W2), b2
        self.hidden_sizes = list(hidden_sizes)
        self.reg, self.momentum, self.buffers = reg, momentum, buffers
        self.ids = list(range(len(self.hidden_sizes))) if ids is None else list(ids)

    @classmethod
    def stack(cls, params, reg, momentum=0.0, buffers=None):
        """params: M dicts {W1 (D, H_m), b1 (H_m,), W2 (H_m, C), b2 (C,)} of one dtype on one device (copied);
        reg, momentum: a number or M numbers (reg >= 0, 0 <= momentum < 1); buffers: M dicts shaped like params,
        the momentum buffers to start from (torch.optim.SGD's state; default zeros, SGD's first step)."""
        params = list(params)
        if not params:
            raise ValueError("params: got no nets; expected at least one {W1, b1, W2, b2} dict")
        first = params[0]["W1"]
        (D, _), C = first.shape, params[0]["W2"].shape[1]
        buffers = None if buffers is None else list(buffers)
        for name, dicts in (("params", params), ("buffers", buffers or [])):
            if name == "buffers" and buffers is not None and len(dicts) != len(params):
                raise ValueError(f"buffers: got {len(dicts)} dicts; expected {len(params)}, one per net")
            for m, p in enumerate(dicts):
                H = params[m]["W1"].shape[1] if params[m]["W1"].dim() == 2 else -1
                want = {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}
                for k in PARAM_NAMES:
                    t = p[k]
                    if tuple(t.shape) != want[k] or H < 1:
                        raise ValueError(f"{name}[{m}]['{k}']: got shape {tuple(t.shape)}; expected {want[k]} "
                                         f"(D={D}, C={C} as net 0, H={H})")
                    if t.dtype != first.dtype or t.device != first.device or not t.is_floating_point():
                        raise ValueError(f"{name}[{m}]['{k}']: got {t.dtype} on {t.device}; expected one floating "
                                         f"dtype and device for all nets ({first.dtype} on {first.device})")
        M = len(params)
        hidden = [p["W1"].shape[1] for p in params]
        reg = _per_net("reg", reg, M, first.dtype, first.device)
        momentum = _per_net("momentum", momentum, M, first.dtype, first.device)
        if not bool((reg >= 0).all()):
            raise ValueError(f"reg: got {reg.tolist()}; expected numbers >= 0")
        if not bool(((momentum >= 0) & (momentum < 1)).all()):
            raise ValueError(f"momentum: got {momentum.tolist()}; expected numbers in [0, 1)")
        nets = cls(*_pack(params, hidden), hidden, reg, momentum)
        if buffers is not None or bool((momentum > 0).any()):
            vW1, vb1, vW2, vb2 = _pack(buffers, hidden) if buffers is not None else [
                torch.zeros_like(t) for t in (nets.W1, nets.b1, nets.W2, nets.b2)]
            nets.buffers = [vW1, vb1, _transposed_storage(vW2), vb2]
        return nets

    @property
    def num_nets(self):
        """M, the nets still in."""
        return len(self.hidden_sizes)

    @property
    def hidden_max(self):
        """Hmax, the padded hidden width."""
        return self.W2.shape[1]

    def padding_mask(self):
        """(M, Hmax) bool: True at the padded hidden units (those that must stay zero)."""
        H = torch.as_tensor(self.hidden_sizes, device=self.W2.device)
        return torch.arange(self.hidden_max, device=self.W2.device) >= H.unsqueeze(1)

    def _check_batch(self, X, y):
        D = self.W1.shape[0]
        if X.dim() != 2 or X.shape[1] != D or X.dtype != self.W1.dtype or X.device != self.W1.device:
            raise ValueError(f"X: got shape {tuple(X.shape)}, {X.dtype} on {X.device}; expected (N, {D}), "
                             f"{self.W1.dtype} on {self.W1.device}")
        if y.shape != (X.shape[0],) or y.dtype != torch.int64 or y.device != X.device:
            raise ValueError(f"y: got shape {tuple(y.shape)}, {y.dtype}; expected ({X.shape[0]},) int64 on X's device")

    def _lr(self, lr):
        return _per_net("lr", lr, self.num_nets, self.W1.dtype, self.W1.device)

    def _l2(self, W1, W2):
        """(M,) ||W1_m||^2 + ||W2_m||^2 (the padding adds zeros)."""
        D, M, Hmax = W1.shape[0], self.num_nets, self.hidden_max
        norms = torch.linalg.vector_norm(W1.view(D, M, Hmax), dim=(0, 2))  # (M,)  one pass, no temporary
        return norms.square_().add_(torch.linalg.vector_norm(W2, dim=(1, 2)).square_())

    def scores(self, X):
        """X: (N, D) -> scores (M, N, C) of every net (a transposed view: computed as (M, C, N), as in ``step``)."""
        N, M, Hmax = X.shape[0], self.num_nets, self.hidden_max
        H1 = torch.addmm(self.b1.unsqueeze(1), self.W1.T, X.T).clamp_min_(0).view(M, Hmax, N)  # (M, Hmax, N)
        return torch.baddbmm(self.b2.unsqueeze(2), self.W2.transpose(1, 2), H1).transpose(1, 2)  # (M, N, C)

    @torch.no_grad()
    def accuracy(self, X, y, chunk_size=8192):
        """(M,) the fraction of rows of X (N, D) whose argmax score is y (N,), per net."""
        self._check_batch(X, y)
        correct = torch.zeros(self.num_nets, dtype=torch.int64, device=X.device)
        for i in range(0, X.shape[0], chunk_size):
            correct += (self.scores(X[i:i + chunk_size]).argmax(dim=2) == y[i:i + chunk_size]).sum(1)
        return correct.double() / X.shape[0]

    @torch.no_grad()
    def loss_and_grads(self, X, y):
        """The readable form of the batched formulas: (losses (M,), grads {W1 (D, P), b1 (P,), W2 (M, Hmax, C),
        b2 (M, C)}), the gradients of sum_m loss_m, which are each net's own gradients in its own slots."""
        self._check_batch(X, y)
        B, M, Hmax = X.shape[0], self.num_nets, self.hidden_max
        S1 = X @ self.W1 + self.b1  # (B, P)
        H1 = torch.clamp_min(S1, 0).view(B, M, Hmax).transpose(0, 1)  # (M, B, Hmax)
        S2 = H1 @ self.W2 + self.b2.unsqueeze(1)  # (M, B, C)
        probs = torch.softmax(S2, dim=2)  # (M, B, C)  P
        labels = y.view(1, B, 1).expand(M, B, 1)  # (M, B, 1)
        data_loss = -torch.log_softmax(S2, dim=2).gather(2, labels).mean((1, 2))  # (M,)  mean -log P[y]
        losses = data_loss + self.reg * self._l2(self.W1, self.W2)  # (M,)
        Y = torch.zeros_like(probs).scatter_(2, labels, 1.0)  # (M, B, C)  one-hot labels
        dS2 = (probs - Y) / B  # (M, B, C)  formula (4)
        reg3 = self.reg.view(M, 1, 1)
        dW2 = H1.transpose(1, 2) @ dS2 + 2 * reg3 * self.W2  # (M, Hmax, C)  formula (5), layer 2
        db2 = dS2.sum(1)  # (M, C)
        dH1 = (dS2 @ self.W2.transpose(1, 2)) * (H1 > 0)  # (M, B, Hmax)  through W2, ReLU mask
        dH1 = dH1.transpose(0, 1).reshape(B, M * Hmax)  # (B, P)  back to the wide layout
        reg_cols = self.reg.repeat_interleave(Hmax)  # (P,)  reg of each column's net
        dW1 = X.T @ dH1 + 2 * reg_cols * self.W1  # (D, P)  formula (5), layer 1
        db1 = dH1.sum(0)  # (P,)
        return losses, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    @torch.no_grad()
    def step(self, X, y, lr):
        """One SGD step of every net on the batch X (B, D), y (B,); lr: a number or (M,) learning rates (a tensor
        on the parameters' device keeps the step free of host syncs). Returns the (M,) losses before the update.
        A net whose loss is NaN/Inf is updated like the others (with NaN); ``drop`` it."""
        self._check_batch(X, y)
        B, M, Hmax = X.shape[0], self.num_nets, self.hidden_max
        D, P = self.W1.shape
        lr = self._lr(lr)
        W2T = self.W2.transpose(1, 2)  # (M, C, Hmax), contiguous: the storage of W2
        # forward, transposed (net, unit, example): each net's matrices are contiguous and C = 10 is no inner size
        H1 = torch.addmm(self.b1.unsqueeze(1), self.W1.T, X.T).clamp_min_(0).view(M, Hmax, B)  # (M, Hmax, B)
        #   S1^T = [W1_1 | ... | W1_M]^T X^T + b1, one wide GEMM; ReLU in place
        log_probs = torch.log_softmax(torch.baddbmm(self.b2.unsqueeze(2), W2T, H1), dim=1)  # (M, C, B)
        #   S2_m^T = W2_m^T H1_m^T + b2_m, one batched GEMM; log P over the classes
        labels = y.view(1, 1, B).expand(M, 1, B)  # (M, 1, B)
        losses = log_probs.gather(1, labels).mean((1, 2)).neg_().add_(self.reg * self._l2(self.W1, self.W2))
        # backward, everything taken before any parameter changes
        dS2 = log_probs.exp_().scatter_(1, labels, -1.0, reduce="add").div_(B)  # (M, C, B)  formula (4), dS2_m^T
        dH1 = torch.ops.aten.threshold_backward(torch.bmm(self.W2, dS2), H1, 0)  # (M, Hmax, B)  (dS2 W2^T)^T masked
        # update: W1v, vW1v are (D, M, Hmax) views, so that an (M,) factor broadcasts as (1, M, 1) over net m's block
        W1v, b1v = self.W1.view(D, M, Hmax), self.b1.view(M, Hmax)
        neg_lr = lr.neg()  # (M,)
        if self.buffers is None:
            beta = torch.addcmul(torch.ones_like(lr), lr, self.reg, value=-2)  # (M,)  1 - 2 lr reg
            dH1_scaled = dH1.mul_(neg_lr.view(M, 1, 1))  # (M, Hmax, B)  -lr dH1^T
            W1v.mul_(beta.view(1, M, 1))
            self.W1.addmm_(X.T, dH1_scaled.view(P, B).T)  # W1 = (1 - 2 lr reg) W1 - lr X^T dH1, one wide GEMM
            b1v.add_(dH1_scaled.sum(2))  # b1 -= lr db1
            dS2_scaled = dS2.mul_(neg_lr.view(M, 1, 1))  # (M, C, B)  -lr dS2^T
            W2T.mul_(beta.view(M, 1, 1)).baddbmm_(dS2_scaled, H1.transpose(1, 2))  # W2^T -= lr (dS2^T H1 + ...)
            self.b2.add_(dS2_scaled.sum(2))  # b2 -= lr db2
            return losses
        vW1, vb1, vW2, vb2 = self.buffers
        vW1v, vb1v, vW2T = vW1.view(D, M, Hmax), vb1.view(M, Hmax), vW2.transpose(1, 2)  # vW2T: (M, C, Hmax)
        mom, two_reg = self.momentum, 2 * self.reg
        vW1v.mul_(mom.view(1, M, 1)).addcmul_(W1v, two_reg.view(1, M, 1))
        vW1.addmm_(X.T, dH1.view(P, B).T)  # v = momentum v + (X^T dH1 + 2 reg W1)
        vb1v.mul_(mom.view(M, 1)).add_(dH1.sum(2))  # v_b = momentum v_b + db1
        vW2T.mul_(mom.view(M, 1, 1)).addcmul_(W2T, two_reg.view(M, 1, 1)).baddbmm_(dS2, H1.transpose(1, 2))
        vb2.mul_(mom.view(M, 1)).add_(dS2.sum(2))
        W1v.addcmul_(vW1v, neg_lr.view(1, M, 1))  # W -= lr v
        b1v.addcmul_(vb1v, neg_lr.view(M, 1))
        W2T.addcmul_(vW2T, neg_lr.view(M, 1, 1))
        self.b2.addcmul_(vb2, neg_lr.view(M, 1))
        return losses

    def drop(self, mask):
        """Remove the nets where ``mask`` (M,) bool is True (diverged, pruned, finished); the others keep their
        parameters and buffers bit for bit. Returns the removed nets' ids. Leaves at least zero nets."""
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        if mask.shape != (self.num_nets,):
            raise ValueError(f"mask: got shape {tuple(mask.shape)}; expected ({self.num_nets},), one per net")
        gone = [self.ids[m] for m in mask.nonzero().flatten().tolist()]
        if gone:
            self.keep((~mask).nonzero().flatten().tolist())
        return gone

    def keep(self, rows):
        """Keep only the nets at positions ``rows`` (a list of ints, in that order), trimming the padding to the
        widest net left."""
        D, M, Hmax = self.W1.shape[0], self.num_nets, self.hidden_max
        hidden = [self.hidden_sizes[m] for m in rows]
        H = max(hidden, default=0)
        at = torch.as_tensor(rows, dtype=torch.int64, device=self.W1.device)

        def wide(t, lead):  # (lead..., M Hmax) -> (lead..., M' H), contiguous
            return t.view(*lead, M, Hmax).index_select(len(lead), at)[..., :H].reshape(*lead, len(rows) * H)

        def per_net(t):  # (M, ...) -> (M', ...) with the hidden dimension (dim 1 of W2) trimmed
            t = t.index_select(0, at)
            return _transposed_storage(t[:, :H]) if t.dim() == 3 else t

        self.W1, self.b1 = wide(self.W1, (D,)), wide(self.b1, ())
        self.W2, self.b2 = per_net(self.W2), per_net(self.b2)
        if self.buffers is not None:
            vW1, vb1, vW2, vb2 = self.buffers
            self.buffers = [wide(vW1, (D,)), wide(vb1, ()), per_net(vW2), per_net(vb2)]
        self.reg, self.momentum = self.reg.index_select(0, at), self.momentum.index_select(0, at)
        self.hidden_sizes, self.ids = hidden, [self.ids[m] for m in rows]

    def unstack(self, buffers=False):
        """[{W1 (D, H_m), b1 (H_m,), W2 (H_m, C), b2 (C,)}] of the nets still in, copies without the padding;
        ``buffers=True``: their momentum buffers instead (zeros when no net has momentum)."""
        tensors = (self.W1, self.b1, self.W2, self.b2)
        if buffers:
            tensors = self.buffers or [torch.zeros_like(t) for t in tensors]
        W1, b1, W2, b2 = tensors
        D, M, Hmax = W1.shape[0], self.num_nets, self.hidden_max
        W1v, b1v = W1.view(D, M, Hmax), b1.view(M, Hmax)
        return [{"W1": W1v[:, m, :H].clone(), "b1": b1v[m, :H].clone(), "W2": W2[m, :H].clone(),
                 "b2": b2[m].clone()} for m, H in enumerate(self.hidden_sizes)]


def _transposed_storage(W2):
    """W2 (M, Hmax, C) as a view of a contiguous (M, C, Hmax) tensor: the layout ``step`` multiplies in."""
    return W2.transpose(1, 2).contiguous().transpose(1, 2)


def _pack(dicts, hidden):
    """M dicts {W1 (D, H_m), b1, W2 (H_m, C), b2} -> the padded layout: W1 (D, M Hmax), b1 (M Hmax,),
    W2 (M, Hmax, C), b2 (M, C), zeros in the padding."""
    M, Hmax, first = len(dicts), max(hidden), dicts[0]
    (D, _), C = first["W1"].shape, first["W2"].shape[1]
    kw = {"dtype": first["W1"].dtype, "device": first["W1"].device}
    W1, b1 = torch.zeros(D, M, Hmax, **kw), torch.zeros(M, Hmax, **kw)
    W2, b2 = torch.zeros(M, Hmax, C, **kw), torch.zeros(M, C, **kw)
    for m, (p, H) in enumerate(zip(dicts, hidden)):
        W1[:, m, :H] = p["W1"]
        b1[m, :H] = p["b1"]
        W2[m, :H] = p["W2"]
        b2[m] = p["b2"]
    return W1.view(D, M * Hmax), b1.view(M * Hmax), W2, b2


def stacked_loss(X, y, W1, b1, W2, b2, reg):
    """The plain-autograd twin: sum over nets of loss_m, differentiable in the padded layout's tensors.

    X: (B, D); y: (B,); W1 (D, M Hmax), b1 (M Hmax,), W2 (M, Hmax, C), b2 (M, C); reg (M,). Returns a 0-d tensor.
    """
    B, (M, Hmax, _) = X.shape[0], W2.shape
    H1 = F.relu(X @ W1 + b1).view(B, M, Hmax).transpose(0, 1)  # (M, B, Hmax)
    S2 = H1 @ W2 + b2.unsqueeze(1)  # (M, B, C)
    data = F.cross_entropy(S2.reshape(M * B, -1), y.repeat(M), reduction="none").view(M, B).mean(1)  # (M,)
    l2 = (W1 * W1).view(-1, M, Hmax).sum((0, 2)) + (W2 * W2).sum((1, 2))  # (M,)
    return (data + reg * l2).sum()


class GraphedBatchedSteps(GraphedSteps):
    """K batched steps captured in one CUDA graph and replayed: the GPU fast path of the sweep.

    Everything a step reads lives at a fixed address: the split X (N, D), y (N,) on the GPU, an epoch's batch
    indices (num_batches, B) and lrs (num_batches, M) in static tables, and a device-side position counter::

        idx = indices[pos]; X_b, y_b = X[idx], y[idx]; losses[j] = nets.step(X_b, y_b, lrs[pos]); pos += 1

    Usage::

        steps = GraphedBatchedSteps(nets, X, y)
        steps.load_epoch(indices, lrs)             # (num_batches, B) int64, (num_batches, M)
        losses = steps.run(first=0, count=16)      # (16, M), the buffer of the graph (overwritten by its next run)

    ``drop`` on the nets changes every tensor's shape: make a new GraphedBatchedSteps after it.
    """

    def __init__(self, nets, X, y):
        super().__init__(X, y)
        nets._check_batch(X, y)
        self.nets = nets

    @property
    def dtype(self):
        return self.nets.W1.dtype

    def lr_table_shape(self, num_batches):
        return (num_batches, self.nets.num_nets)

    def state(self):
        """Every tensor a step writes: the parameters, momentum buffers and the position counter."""
        n = self.nets
        return [n.W1, n.b1, n.W2, n.b2, *(n.buffers or []), self.pos]

    def _step(self, X_b, y_b, lr):
        """One batched step; lr: (M,) this step's learning rates. Returns the (M,) losses."""
        return self.nets.step(X_b, y_b, lr)
