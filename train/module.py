"""TwoLayerNetModule: the two-layer net trained by Lightning with the article's hand-written gradients.

Usage (the CLI builds it from configs: ``python -m train fit --model.hidden_size 100``)::

    model = TwoLayerNetModule(input_size=64, hidden_size=100, num_classes=10, learning_rate=0.1)  # keywords only
    L.Trainer(max_epochs=20).fit(model, datamodule=DigitsDataModule())
    L.Trainer(max_epochs=20).fit(model, train_loader, val_loader)   # or any DataLoaders of (X (B, D), y (B,))

    model = TwoLayerNetModule.load_from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
    model.eval(); scores = model(X)                     # the sizes and settings come from the checkpoint

The arguments are keyword-only: cs231n's ``TwoLayerNet(input_size, hidden_size, output_size)`` puts H second, so
a positional ``TwoLayerNetModule(64, 100, 10)`` is refused rather than read in another order.

One training step, manual optimization (train/step_blocks.py's StepBlockRunner.sgd_step, the front door)::

    loss = TwoLayerLoss.apply(X, y, W1, b1, W2, b2, reg)   # forward; backward holds formulas (1)-(5)
    self.manual_backward(loss)                             # fills .grad through autograd (DDP, AMP see it)
    opt.step(); opt.zero_grad(); sched.step()              # SGD update W -= lr dW, then the lr schedule

``grad_mode="autograd"`` swaps the first line for the plain-autograd twin (autograd_twin.two_layer_loss_autograd).
The learning rate decays by ``learning_rate_decay`` per epoch (a LambdaLR stepped every step, so its counter is in
the checkpoint): ``lr_schedule="epoch"`` multiplies after every ceil(N / B) steps; ``"cs231n"`` reproduces the
article's loop exactly: after step ``it`` whenever ``it % max(N / B, 1) == 0`` with that float epoch length, it == 0
included (so the second step already runs at lr * decay, and non-integer N / B decays only at multiples of it).

How a training_step reaches the update: ``training_step`` runs, logs, returns. It hands its batch to the runner
made at fit start (a plain (X, y) batch as a one-step StepBlock), which takes the steps on the step path chosen
then and named in one log line (``step path: fused, 16 SGD steps per training_step``; choose_step_path): "front
door" is the step above for every step; "fused" (torch_impl/fused_step.py: no autograd, the update inside the GEMMs)
and "graph" (torch_impl/cuda_graph.py, with ``cuda_graph=True`` on a CUDA device) take the steps of a step block
without the engine, where nothing listens to ``.grad`` (one device, 32/64-bit precision, grad_mode "manual").
``steps_per_call`` K > 1 or ``cuda_graph`` makes the module tell its ArrayDataModule, at fit start, to yield step
blocks of K batches (one training_step each, fewer Lightning hooks per SGD step); that is why ``python -m train
fit`` defaults to ``steps_per_call`` 16 (train/cli.py), while the module's own default stays 1. The callbacks read
the step in flight as ``module.last_step`` (loss, batch), the runner's record. trainer.global_step and max_steps
count SGD steps either way, and so do the loggers' step (metrics.csv) and log_every_n_steps (train/steps.py's
count_logged_steps); val_check_interval counts training_steps. train/loss and lr (the last step's) are logged on
the training_steps whose step metrics Lightning writes and on each epoch's last batch; training_step returns
``{"loss": the last step's, "step_losses": (count,)}``, every SGD step's loss for the loss history plot
(train/callbacks.py).
"""
import math
import random
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics.classification import MulticlassAccuracy

from torch_impl.autograd_twin import two_layer_loss_autograd
from torch_impl.neural_net import TwoLayerLoss, TwoLayerNet
from torch_impl.validation import check_nonnegative_float, check_positive_float, check_positive_int
from train.schedule import EpochDecay
from train.step_blocks import StepBlock, StepBlockRunner, choose_step_path
from train.steps import lr_at


class TwoLayerNetModule(L.LightningModule):
    """The two-layer net (affine - ReLU - affine - softmax) trained by minibatch SGD with hand-written gradients.

    ``self.net`` holds W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), the NumPy reference's layout.

    Args:
        input_size: D, features per example (the CLI links it from the data).
        num_classes: C, classes (the CLI links it from the data).
        hidden_size: H, hidden units.
        std: scale of the initial weights, W = std * randn (biases start at 0).
        reg: L2 strength; the loss adds reg * (sum(W1 * W1) + sum(W2 * W2)).
        learning_rate: SGD step size at the start.
        learning_rate_decay: the learning rate is multiplied by this once per epoch.
        lr_schedule: "epoch" decays after every ceil(N / B) steps; "cs231n" as the article's float-epoch loop.
        momentum: SGD momentum (0 is the article's plain SGD).
        grad_mode: "manual" (hand-written gradients, TwoLayerLoss) or "autograd" (torch derives them).
        init_seed: seeds the initial W1 and W2.
        cuda_graph: on a CUDA GPU, replay each block of SGD steps from one captured CUDA graph.
        steps_per_call: SGD steps per Lightning training_step (a step block; 1: every step through the optimizer).
    """

    def __init__(self, *, input_size: int, num_classes: int, hidden_size: int = 50, std: float = 1e-4,
                 reg: float = 0.25, learning_rate: float = 1e-4, learning_rate_decay: float = 0.95,
                 lr_schedule: Literal["epoch", "cs231n"] = "epoch", momentum: float = 0.0,
                 grad_mode: Literal["manual", "autograd"] = "manual", init_seed: int = 0, cuda_graph: bool = False,
                 steps_per_call: int = 1):
        super().__init__()
        for name, value in [("input_size", input_size), ("num_classes", num_classes), ("hidden_size", hidden_size),
                            ("steps_per_call", steps_per_call)]:
            check_positive_int(name, value)
        if lr_schedule not in ("epoch", "cs231n"):
            raise ValueError(f"lr_schedule: got {lr_schedule!r}; expected 'epoch' or 'cs231n'")
        if grad_mode not in ("manual", "autograd"):
            raise ValueError(f"grad_mode: got {grad_mode!r}; expected 'manual' or 'autograd'")
        check_positive_float("learning_rate", learning_rate)
        check_nonnegative_float("reg", reg)
        if not check_positive_float("learning_rate_decay", learning_rate_decay) <= 1:
            raise ValueError(f"learning_rate_decay: got {learning_rate_decay!r}; expected 0 < decay <= 1")
        if not 0 <= check_nonnegative_float("momentum", momentum) < 1:
            raise ValueError(f"momentum: got {momentum!r}; expected a number in [0, 1)")
        self.save_hyperparameters()
        self.automatic_optimization = False
        generator = torch.Generator().manual_seed(init_seed)
        self.net = TwoLayerNet(input_size, hidden_size, num_classes, std=std, generator=generator)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.step_path = None  # "front door" | "fused" | "graph", chosen at fit start
        self.runner = None  # StepBlockRunner, made at fit start: every training_step's SGD steps

    @property
    def train_block_size(self):
        """0: the training data yields (X_b, y_b) batches; K >= 1: step blocks of up to K batches (train/data.py)."""
        return self.hparams.steps_per_call if self.hparams.cuda_graph or self.hparams.steps_per_call > 1 else 0

    @property
    def last_step(self):
        """The SGD step in flight (train/steps.py's LastStep: loss, batch), what the callbacks read; None before."""
        return self.runner.last_step if self.runner is not None else None

    def on_fit_start(self):
        """Choose the step path, once, hand the data module its batch type, make the runner and say which path
        (refuses cuda_graph with DDP or a non-32-bit precision)."""
        dm = self.trainer.datamodule
        takes_blocks = hasattr(dm, "step_block_size")  # an ArrayDataModule (train/data.py)
        self.step_path, why = choose_step_path(self.hparams, self.trainer, self.device, takes_blocks)
        if takes_blocks:
            dm.step_block_size = self.train_block_size
        needs_grads = any(getattr(cb, "needs_grads", False) for cb in self.trainer.callbacks)
        self.runner = StepBlockRunner(
            self.step_path, trainer=self.trainer, optimizer=self.optimizers(), scheduler=self.lr_schedulers(),
            loss_fn=self.batch_loss, backward=self.manual_backward, params=list(self.net.parameters()),
            reg=self.hparams.reg, momentum=self.hparams.momentum, last_through_front_door=needs_grads)
        steps = (self.train_block_size if takes_blocks else 0) or 1
        last = " (each block's last through the front door: a callback reads .grad)" if (
            self.runner.last_through_front_door) else ""
        rank_zero_info(f"step path: {self.step_path}, {steps} SGD step{'s' * (steps > 1)} per training_step{last} "
                       f"({why})")

    def on_save_checkpoint(self, checkpoint):
        """Add the global RNG states (torch, CUDA, numpy, random) as tensors and ints (weights_only loads them)."""
        np_state = np.random.get_state()  # ("MT19937", keys (624,) uint32, pos, has_gauss, cached_gaussian)
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint):
        """Give the module its run's dtype before the checkpoint is copied into it (_take_checkpoint_dtype), then
        restore the RNG states saved by on_save_checkpoint (a checkpoint without them is left as it is)."""
        self._take_checkpoint_dtype(checkpoint)
        states = checkpoint.get("rng_states")
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(states["python"])

    def _take_checkpoint_dtype(self, checkpoint):
        """Convert the module to the dtype it will run in before load_state_dict copies the checkpoint into it, so
        that copy is exact. With a trainer: its precision's dtype (Lightning restores a checkpoint before the
        precision plugin converts the module, which is built in float32, so a 64-true checkpoint would be rounded
        to float32 on the way in). Without one (load_from_checkpoint): the checkpoint's own dtype. A checkpoint
        wider than the run's dtype (a 64-true one validated in 32-true) is rounded to it, with a warning."""
        saved = {t.dtype for key, t in checkpoint.get("state_dict", {}).items()
                 if key.startswith("net.") and isinstance(t, torch.Tensor) and t.is_floating_point()}
        # private LightningModule attribute (2.6): the public self.trainer raises when no Trainer is attached
        if self._trainer is None:
            if len(saved) == 1:
                self.to(saved.pop())
            return
        self.trainer.precision_plugin.convert_module(self)  # 64-true: .double(); 32-true and the mixed: unchanged
        run = self.net.W1.dtype
        wider = sorted(str(d) for d in saved if torch.finfo(d).bits > torch.finfo(run).bits)
        if wider:
            rank_zero_warn(f"the checkpoint's parameters are {wider[0]} but trainer.precision "
                           f"{self.trainer.precision} runs in {run}: they are rounded to {run} (pass the precision "
                           "they were trained in, e.g. --trainer.precision 64-true, to keep every bit)")

    def forward(self, X):
        """X: (N, D) -> scores (N, C)."""
        return self.net(X)

    def epoch_size(self):
        """(N, B) whose ceil(N / B) is the SGD steps of one epoch, for the lr schedule: an ArrayDataModule's
        num_train and batch_size, or a plain DataLoader's dataset length and batch_size, or else the trainer's
        batches per epoch (N = that count, B = 1)."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "num_train") and hasattr(dm, "batch_size"):
            return dm.num_train, dm.batch_size
        self.trainer.estimated_stepping_batches  # noqa: B018  (sets up the train data: Lightning's documented way)
        batches = self.trainer.num_training_batches
        loader = self.trainer.train_dataloader
        dataset, batch_size = getattr(loader, "dataset", None), getattr(loader, "batch_size", None)
        if batch_size and hasattr(dataset, "__len__") and math.ceil(len(dataset) / batch_size) == batches:
            return len(dataset), batch_size
        if not math.isfinite(batches) or batches < 1:
            raise ValueError(f"TwoLayerNetModule: the training data has {batches} batches per epoch; expected a "
                             "DataLoader with a length (the lr decays once per epoch)")
        return int(batches), 1

    def configure_optimizers(self):
        # [bridge:lightning-optimizer]
        opt = torch.optim.SGD(self.net.parameters(), lr=self.hparams.learning_rate, momentum=self.hparams.momentum)
        # [/bridge:lightning-optimizer]
        num_train, batch_size = self.epoch_size()
        factor = EpochDecay(self.hparams.learning_rate_decay, num_train, batch_size, self.hparams.lr_schedule)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # [bridge:lightning-batch-loss]
    def batch_loss(self, X, y):
        """The differentiable 0-d loss of a batch, X: (B, D), y: (B,), by the chosen gradient path."""
        W1, b1, W2, b2 = self.net.W1, self.net.b1, self.net.W2, self.net.b2
        if self.hparams.grad_mode == "manual":
            return TwoLayerLoss.apply(X, y, W1, b1, W2, b2, self.hparams.reg)
        return two_layer_loss_autograd(X, y, W1, b1, W2, b2, self.hparams.reg)
    # [/bridge:lightning-batch-loss]

    # [bridge:lightning-training-step]
    def training_step(self, batch, batch_idx):
        block = batch if isinstance(batch, StepBlock) else StepBlock.of_batch(*batch)  # (X (B, D), y (B,)): 1 step
        step_losses = self.runner(block)  # (count,): the block's SGD steps on the path chosen at fit start
        self.log_steps(block, step_losses, batch_idx)
        return {"loss": step_losses[-1], "step_losses": step_losses}  # every step's loss, for the loss history plot
    # [/bridge:lightning-training-step]

    # [bridge:lightning-log-steps]
    def log_steps(self, block, step_losses, batch_idx):
        """train/loss and lr of the last step, on the training_steps whose step metrics Lightning writes and on the
        epoch's last; there also cs231n's train accuracy (the last step's batch, after its update)."""
        last_batch = batch_idx == self.trainer.num_training_batches - 1
        if last_batch or self._logs_this_step():  # self.log costs ~0.1 ms; most steps' values are never written
            self.log("train/loss", step_losses[-1], on_step=True, on_epoch=False, prog_bar=True)
            self.log("lr", lr_at(self.lr_schedulers(), self.trainer.global_step - 1), on_step=True, on_epoch=False)
        if last_batch and len(step_losses):
            X, y = block.step_batch(len(step_losses) - 1)  # (B, D), (B,)
            with torch.no_grad():
                self.train_acc(self.net(X).argmax(dim=1), y)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=y.shape[0])
    # [/bridge:lightning-log-steps]

    def _logs_this_step(self):
        """Whether Lightning writes step metrics to the logger after this training_step: when the SGD step count
        is a multiple of log_every_n_steps (train/steps.py's count_logged_steps), when stopping, under fast_dev_run
        (its _LoggerConnector.should_update_logs, which the LearningRateMonitor asks too). True when that cannot be
        asked. The epoch's last batch logs as well, so
        callback_metrics (EarlyStopping, the progress bar) hold the epoch's last loss."""
        trainer = self.trainer
        # private Lightning API (2.6): the public way, self.log on every step, costs ~0.1 ms a step for values
        # the logger drops
        connector = getattr(trainer, "_logger_connector", None)
        try:
            return bool(trainer.fast_dev_run or connector.should_update_logs)
        except (AttributeError, NotImplementedError):  # another Lightning version or loop: log every step
            return True

    def _evaluate(self, batch, metric, stage):
        X, y = batch  # (n, D), (n,)
        loss = self.batch_loss(X, y)  # the training loss, by the same gradient path
        metric(self.net(X).argmax(dim=1), y)
        self.log(f"{stage}/loss", loss, batch_size=X.shape[0], prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", metric, batch_size=X.shape[0], prog_bar=stage == "val")

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_acc, "test")

    def predict_step(self, batch, batch_idx):
        """Class indices (n,) of the batch's examples (a batch is (X, y) or X)."""
        X = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net(X).argmax(dim=1)
