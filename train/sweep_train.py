"""Training many nets together, exactly as ``python -m train fit`` would train each one (no Optuna here).

    outcomes = train_together(trials, splits, model, batch_size, seed)    # [Outcome], one per trial

Trials train as one BatchedTwoLayerNets (torch_impl/batched.py): one batched SGD step for all, every net on the same
batches (common random numbers). Each net follows exactly the trajectory ``fit`` gives its config: the same init
(TwoLayerNet seeded by model.init_seed), the same batches (the data module's keyed WithReplacementBatches), the same
lr of step n (train/schedule.py's EpochDecay) and the same val accuracy after its last epoch. A net whose loss turns
NaN/Inf leaves the batch (state "diverged", where fit would stop); a pruned net leaves it too. With ``graph`` each
epoch's steps replay from one captured CUDA graph. train/sweep.py runs the Optuna study around this.
"""
from dataclasses import dataclass, field

import torch

# the hyperparameters of a trial: fit's model settings, and trainer.max_epochs
SEARCHED = ("learning_rate", "reg", "hidden_size", "momentum", "learning_rate_decay", "max_epochs")


@dataclass
class Outcome:
    """How a net's training ended: state "complete" | "pruned" | "diverged", its last val acc, epochs run, and
    for "diverged" the 0-based SGD step whose loss was NaN/Inf."""

    state: str
    val_acc: float = float("nan")
    epochs: int = 0
    diverged_at_step: int | None = None
    val_accs: list = field(default_factory=list)
    params: dict | None = None  # {W1, b1, W2, b2} when it left the batch (None if diverged)


def initial_params(model, hidden_size, input_size, num_classes, dtype, device):
    """The net fit starts from: TwoLayerNetModule's TwoLayerNet, seeded by init_seed, in float32, then moved."""
    from torch_impl.neural_net import TwoLayerNet

    generator = torch.Generator().manual_seed(model["init_seed"])
    net = TwoLayerNet(input_size, hidden_size, num_classes, std=model["std"], generator=generator)
    return {k: v.detach().to(device=device, dtype=dtype) for k, v in net.params.items()}


def train_together(trials, splits, model, batch_size, seed, on_epoch_end=None, graph=False):
    """Train the nets of ``trials`` (dicts with the SEARCHED keys) together and return an Outcome per trial.

    splits: ArraySplits on the training device, in the training dtype; model: fit's model settings (std,
    init_seed, lr_schedule); batch_size, seed: the data module's. ``on_epoch_end(i, epoch, val_acc) -> bool``
    is asked after every epoch of trial i but its last; True prunes it. graph: replay each epoch from a CUDA graph.
    """
    from torch_impl.batched import BatchedTwoLayerNets
    from train.batches import WithReplacementBatches
    from train.schedule import EpochDecay

    X, y = splits.X_train, splits.y_train
    views = splits.train_views  # X, y stack this many views (augmentations) of each training example
    N, D = X.shape[0] // views, X.shape[1]  # N examples, as the lr schedule counts them
    C = len(splits.class_names) if splits.class_names else int(y.max()) + 1
    sampler = WithReplacementBatches(X, y, batch_size, seed, views=views)  # fit's batches, keyed (seed, epoch, b)
    factors = [EpochDecay(t["learning_rate_decay"], N, batch_size, model["lr_schedule"]) for t in trials]
    nets = BatchedTwoLayerNets.stack(
        [initial_params(model, t["hidden_size"], D, C, X.dtype, X.device) for t in trials],
        reg=[t["reg"] for t in trials], momentum=[t["momentum"] for t in trials])
    outcomes, runner = {}, (GraphedEpochs(X, y) if graph else EagerEpochs(X, y))
    for epoch in range(max(t["max_epochs"] for t in trials)):
        table = sampler.epoch_indices(epoch)  # (steps_per_epoch, B) on the device
        first_step = epoch * sampler.num_batches
        lrs = torch.tensor([[trials[i]["learning_rate"] * factors[i](first_step + b) for i in nets.ids]
                            for b in range(sampler.num_batches)], dtype=X.dtype, device=X.device)  # (steps, M)
        for m, step in runner.run_epoch(nets, table, lrs):  # the nets whose loss turned NaN/Inf, and where
            outcomes[m] = Outcome("diverged", epochs=epoch, diverged_at_step=first_step + step)
        if nets.num_nets == 0 or not end_epoch(nets, outcomes, trials, splits, epoch, on_epoch_end, runner):
            break
    return [outcomes[i] for i in range(len(trials))]


class EagerEpochs:
    """An epoch as one batched step per batch; a net whose loss turns NaN/Inf leaves the batch at that step."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def run_epoch(self, nets, table, lrs):
        """Run the epoch's steps; returns [(trial id, step in the epoch)] of the nets that diverged (and left)."""
        diverged = []
        for b in range(table.shape[0]):
            idx = table[b]  # (B,)
            losses = nets.step(self.X.index_select(0, idx), self.y.index_select(0, idx), lrs[b])  # (M,)
            bad = ~torch.isfinite(losses)
            if bad.any():  # fit's divergence guard stops at this step; here the net leaves the batch
                diverged += [(nets.ids[m], b) for m in bad.nonzero().flatten().tolist()]
                lrs = lrs[:, ~bad]
                nets.drop(bad)
        return diverged

    def reset(self):
        """The nets changed shape (nothing to redo for eager steps)."""


class GraphedEpochs:
    """An epoch replayed from one captured CUDA graph; diverged nets are found in the epoch's loss table."""

    def __init__(self, X, y):
        self.X, self.y, self.graphed = X, y, None

    def run_epoch(self, nets, table, lrs):
        from torch_impl.batched import GraphedBatchedSteps

        if self.graphed is None:  # first epoch, or nets left: every tensor changed shape
            self.graphed = GraphedBatchedSteps(nets, self.X, self.y)
        self.graphed.load_epoch(table, lrs)
        losses = self.graphed.run(0, table.shape[0])  # (steps, M)
        bad = ~torch.isfinite(losses)
        diverged = [(nets.ids[m], int(bad[:, m].nonzero()[0])) for m in bad.any(0).nonzero().flatten().tolist()]
        if bad.any():
            nets.drop(bad.any(0))
            self.reset()
        return diverged

    def reset(self):
        self.graphed = None


def end_epoch(nets, outcomes, trials, splits, epoch, on_epoch_end, runner):
    """fit's val acc after this epoch for every net; nets at their last epoch, or pruned, leave with their
    parameters. Returns whether any net goes on."""
    accs = nets.accuracy(splits.X_val, splits.y_val).tolist()
    leaving = []
    for i, acc in zip(nets.ids, accs):
        outcome = outcomes.setdefault(i, Outcome("running"))
        outcome.val_accs.append(acc)
        outcome.val_acc, outcome.epochs = acc, epoch + 1
        if epoch + 1 == trials[i]["max_epochs"]:
            outcome.state = "complete"
        elif on_epoch_end is not None and on_epoch_end(i, epoch, acc):
            outcome.state = "pruned"
        leaving.append(outcome.state != "running")
    if any(leaving):
        final = nets.unstack()
        for m in [m for m, gone in enumerate(leaving) if gone]:
            outcomes[nets.ids[m]].params = final[m]
    if nets.drop(torch.tensor(leaving)):
        runner.reset()
    return nets.num_nets > 0
