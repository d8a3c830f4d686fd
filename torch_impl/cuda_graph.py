"""K whole SGD steps of the two-layer net captured in one CUDA graph and replayed: the "graph" step path.

Usage (fit runs it with ``--model.cuda_graph true [--model.steps_per_call 16]``, train/step_blocks.py)::

    steps = GraphedSGDSteps(lambda X_b, y_b: TwoLayerLoss.apply(X_b, y_b, W1, b1, W2, b2, reg),
                            params=[W1, b1, W2, b2], X=X, y=y, momentum=0.0)
    steps.load_epoch(indices, lrs)           # indices: (num_batches, B) int64, lrs: (num_batches,), on the GPU
    losses = steps.run(first=0, count=16)    # (16,) losses of batches 0..15, computed before each update

An eager step on a GPU is launch-bound: ~25 small kernels, each waiting for the host to issue it. Captured once,
the whole sequence replays as one launch. Everything a step reads or writes lives at a fixed address, so the graph
needs no host input per replay:

    idx  = indices[pos]                        # (B,)  the batch of the device-side position counter
    X_b, y_b = X[idx], y[idx]                  # (B, D), (B,)  gather from the device-resident split
    loss = loss_fn(X_b, y_b)                   # the Function fit uses (its backward holds the formulas)
    dW  = autograd.grad(loss, params)          # the hand-written backward, through the engine
    v   = momentum v + dW  (if momentum > 0)   # torch.optim.SGD's momentum buffer, updated in place
    W  -= lrs[pos] v                           # the learning rate read from a device table: no recapture on decay
    losses[j] = loss; pos += 1

One graph is captured per distinct ``count`` (a full block of K and at most one shorter, the epoch's remainder; a
run resumed inside a block adds one more, see train/data.py).
"""
import torch


class GraphedSteps:
    """K steps captured in one CUDA graph and replayed from static tables: what GraphedSGDSteps (one net) and
    torch_impl/batched.py's GraphedBatchedSteps (M nets) share.

    X: (N, D), y: (N,) int64, the training split on the GPU. A subclass gives ``state()`` (every tensor a step
    writes, the position counter last), ``_step(X_b, y_b, lr) -> loss`` (lr: this step's row of the lr table),
    ``lr_table_shape(num_batches)`` and ``dtype`` (the parameters'; the lr table and the losses use it).
    """

    device_type = "cuda"  # what torch.cuda.CUDAGraph captures (tests stand in an eager replay on "cpu")

    def __init__(self, X, y):
        if X.device.type != self.device_type:
            raise ValueError(f"X: got a tensor on {X.device}; expected a {self.device_type} tensor "
                             f"({type(self).__name__} captures a CUDA graph)")
        self.X, self.y = X, y
        self.pos = torch.zeros((), dtype=torch.int64, device=X.device)  # batch of the next step
        self.indices = self.lrs = None  # (num_batches, B) int64 and the lr table, set by load_epoch
        self.graphs = {}  # count -> (torch.cuda.CUDAGraph, its losses (count, ...))
        self._host_pos = None  # where pos stands after the last replay (None: unknown)

    @property
    def lrs_dtype(self):
        """The dtype of the lr table: the parameters' (lr times an update in their precision)."""
        return self.dtype

    def load_epoch(self, indices, lrs):
        """Copy an epoch's tables into the static buffers: indices (num_batches, B) int64; lrs
        ``lr_table_shape(num_batches)``, one lr per batch of the epoch (per net when there are several)."""
        expected = self.lr_table_shape(indices.shape[0]) if indices.dim() == 2 else None
        if expected is None or tuple(lrs.shape) != expected:
            raise ValueError(f"lrs: got shape {tuple(lrs.shape)} for indices of shape {tuple(indices.shape)}; "
                             f"expected indices (num_batches, B) and lrs {expected or '(num_batches, ...)'}, one lr "
                             "per batch of the epoch")
        if self.indices is None:
            self.indices = torch.empty_like(indices, device=self.X.device)  # (num_batches, B)
            self.lrs = torch.empty(expected, dtype=self.dtype, device=self.X.device)
        if indices.shape != self.indices.shape:
            raise ValueError(f"indices: got shape {tuple(indices.shape)}; expected {tuple(self.indices.shape)}, "
                             "the shape the graphs were captured with")
        self.indices.copy_(indices, non_blocking=True)
        self.lrs.copy_(lrs, non_blocking=True)

    def _steps(self, count, losses):
        """The captured body: ``count`` steps, each on the batch and lr of the device-side position counter."""
        for j in range(count):
            at = self.pos.view(1)  # (1,)
            idx = self.indices.index_select(0, at).view(-1)  # (B,)
            X_b, y_b = self.X.index_select(0, idx), self.y.index_select(0, idx)  # (B, D), (B,)
            losses[j].copy_(self._step(X_b, y_b, self.lrs.index_select(0, at)[0]))
            self.pos.add_(1)

    def _capture(self, count):
        """Warm up on a side stream (state restored afterwards), then capture ``count`` steps."""
        # no_grad: a clone with a grad_fn keeps the params' AccumulateGrad nodes alive, made on the default stream;
        # the captured backward then syncs with that stream and the capture fails (seen on an H200, torch 2.11)
        with torch.no_grad():
            saved = [t.clone() for t in self.state()]
        losses = torch.empty((count, *self.lrs.shape[1:]), dtype=self.dtype, device=self.X.device)  # (count, ...)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._steps(1, losses)  # cuBLAS handles, autograd's device thread, lazy inits
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, s in zip(self.state(), saved):
                t.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._steps(count, losses)
        return graph, losses

    def run(self, first, count):
        """Replay ``count`` steps on batches first .. first + count - 1 of the loaded epoch; returns their losses
        (count, ...), the graph's own buffer (the next replay of that count overwrites it)."""
        if self.indices is None:
            raise ValueError("load_epoch(indices, lrs) must come before run()")
        if not 0 <= first <= first + count <= self.indices.shape[0] or count < 1:
            raise ValueError(f"first={first}, count={count}: expected 0 <= first, count >= 1 and first + count <= "
                             f"{self.indices.shape[0]} (the epoch's batches)")
        if count not in self.graphs:
            self.graphs[count] = self._capture(count)
            self._host_pos = None
        if self._host_pos != first:
            self.pos.fill_(first)  # a new epoch or a resume: one small kernel, no host sync
        graph, losses = self.graphs[count]
        graph.replay()
        self._host_pos = first + count
        return losses


class GraphedSGDSteps(GraphedSteps):
    """Captures and replays ``count`` SGD steps of one net on CUDA tensors.

    loss_fn(X_b (B, D), y_b (B,)) -> 0-d loss, differentiable w.r.t. params; params: the tensors updated in place;
    X: (N, D), y: (N,) int64, the training split on the GPU; momentum: SGD momentum; momentum_buffers: one tensor
    per param (the optimizer's state, updated in place) when momentum > 0. The lr table is (num_batches,).
    """

    def __init__(self, loss_fn, params, X, y, momentum=0.0, momentum_buffers=None):
        super().__init__(X, y)
        self.loss_fn, self.params = loss_fn, list(params)
        self.momentum = momentum
        self.buffers = list(momentum_buffers) if momentum else []

    @property
    def dtype(self):
        return self.params[0].dtype

    def lr_table_shape(self, num_batches):
        return (num_batches,)

    def state(self):
        """Every tensor a step writes: the parameters, momentum buffers and the position counter."""
        return [*self.params, *self.buffers, self.pos]

    def _step(self, X_b, y_b, lr):
        """One SGD step (see the module docstring); lr: 0-d, this step's learning rate. Returns the loss."""
        loss = self.loss_fn(X_b, y_b)
        grads = torch.autograd.grad(loss, self.params)  # the hand-written backward, through the engine
        with torch.no_grad():
            updates = grads
            if self.momentum:
                torch._foreach_mul_(self.buffers, self.momentum)  # v = momentum v + dW
                torch._foreach_add_(self.buffers, grads)
                updates = self.buffers
            for p, u in zip(self.params, updates):
                p.addcmul_(u, lr, value=-1)  # W -= lr v
        return loss.detach()
