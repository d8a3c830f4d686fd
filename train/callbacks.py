"""Callbacks of ``python -m train``: TrainingPlots writes fit's PNGs, PredictionsCSV predict's classes, RunSettings
puts the run's settings into its checkpoints, StepProgressBar counts SGD steps.

At the end of fit (rank 0 only), into ``trainer.logger.log_dir`` (e.g. lightning_logs/version_0/):

    loss_history.png   train/loss of every SGD step (cs231n's loss_history plot); the x-axis is the global step,
                       so a resumed run continues where its checkpoint stopped
    accuracy.png       train/acc (last batch of each epoch, as cs231n) and val/acc per validation; with more than
                       ACCURACY_POINTS points a curve shows the mean of each run of consecutive epochs instead
    weights.png        W1's columns as images (cs231n's show_net_weights), when the data has an image_shape;
                       for 2-D features (the spiral) the decision regions instead

The figures are drawn with matplotlib's object API (a Figure on its own Agg canvas): importing or running these
callbacks leaves matplotlib's global backend and pyplot's figures alone (inline plots in a notebook keep working).
"""
import math
import os

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from train.atomic import atomic_write
from train.runs import run_dir_of

ACCURACY_POINTS = 60  # above this many epochs a curve is drawn as means of consecutive epochs, without markers


def new_figure(figsize):
    """A Figure with its own Agg canvas and one Axes: (fig, ax), no pyplot, no global backend."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def epoch_means(history, max_points=ACCURACY_POINTS):
    """[(epoch, acc)] -> (epochs, accs, per): unchanged when at most max_points, else the means of ``per``
    consecutive points each (x: the mean epoch of the group), at most max_points of them."""
    per = max(1, math.ceil(len(history) / max_points))
    groups = [history[i:i + per] for i in range(0, len(history), per)]
    epochs = [sum(e for e, _ in g) / len(g) for g in groups]
    accs = [sum(a for _, a in g) / len(g) for g in groups]
    return epochs, accs, per


class TrainingPlots(L.Callback):
    """Collects the loss of every step and the accuracies of every epoch; plots them when fit ends.

    Args:
        enabled: write the plots at the end of fit (False skips them, e.g. for timing runs).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.losses, self.train_acc, self.val_acc = [], [], []
        self.first_step = 0  # the global step of the first recorded loss (after a resume: the checkpoint's)

    def on_fit_start(self, trainer, pl_module):
        self.losses, self.train_acc, self.val_acc = [], [], []

    def on_train_start(self, trainer, pl_module):
        self.first_step = trainer.global_step  # restored from the checkpoint by now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # TwoLayerNetModule returns every SGD step's loss; another module its loss
        loss = outputs.get("step_losses", outputs.get("loss")) if isinstance(outputs, dict) else outputs
        if self.enabled and loss is not None:
            self.losses.append(loss.detach().reshape(-1))  # stays on the device; one transfer at the end

    def on_train_epoch_end(self, trainer, pl_module):
        if "train/acc" in trainer.callback_metrics:
            self.train_acc.append((trainer.current_epoch, float(trainer.callback_metrics["train/acc"])))

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and "val/acc" in trainer.callback_metrics:
            self.val_acc.append((trainer.current_epoch, float(trainer.callback_metrics["val/acc"])))

    def on_fit_end(self, trainer, pl_module):
        if not self.enabled or not trainer.is_global_zero:
            return
        log_dir = trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir
        os.makedirs(log_dir, exist_ok=True)
        self.plot_loss(os.path.join(log_dir, "loss_history.png"))
        self.plot_accuracy(os.path.join(log_dir, "accuracy.png"))
        dm = trainer.datamodule
        image_shape = getattr(dm, "image_shape", None)
        path = os.path.join(log_dir, "weights.png")
        if image_shape is not None:
            plot_weights(pl_module.net.W1.detach(), image_shape, path)
        elif pl_module.net.W1.shape[0] == 2 and hasattr(dm, "splits"):
            plot_decision_regions(pl_module, dm.splits.X_train, dm.splits.y_train, path)
        else:
            rank_zero_info("TrainingPlots: no image_shape and not 2-D features, so no weights.png")
        rank_zero_info(f"TrainingPlots: wrote the plots to {log_dir}")

    def plot_loss(self, path):
        fig, ax = new_figure((7, 4))
        if self.losses:
            losses = torch.cat(self.losses).double().cpu()  # (steps,) float64: a 64-true run's losses as they are
            steps = torch.arange(self.first_step, self.first_step + losses.numel())  # global steps
            ax.plot(steps.numpy(), losses.numpy(), lw=0.8)
        title = "Loss history" if self.first_step == 0 else f"Loss history (resumed at step {self.first_step})"
        ax.set(title=title, xlabel="iteration (SGD step)", ylabel="training loss")
        fig.savefig(path, dpi=100, bbox_inches="tight")

    def plot_accuracy(self, path):
        fig, ax = new_figure((7, 4))
        for label, history in [("train (last batch)", self.train_acc), ("val", self.val_acc)]:
            if history:
                epochs, accs, per = epoch_means(history)
                if per > 1:
                    label += f", mean of {per} epochs"
                ax.plot(epochs, accs, marker="o" if per == 1 else None, ms=3, label=label)
        ax.set(title="Classification accuracy history", xlabel="epoch", ylabel="accuracy")
        if ax.get_legend_handles_labels()[0]:  # nothing to label when no epoch ended / no validation ran
            ax.legend()
        fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_weights(W1, image_shape, path):
    """W1: (D, H) with D = C*h*w; each column shown as a (C, h, w) image, each scaled to its own range."""
    D, H = W1.shape
    images = W1.T.float().cpu().reshape(H, *image_shape)  # (H, C, h, w)
    grid = make_grid(images, nrow=math.ceil(math.sqrt(H)), padding=1, normalize=True, scale_each=True,
                     pad_value=1.0)  # (3, gh, gw)
    gh, gw = grid.shape[1:]
    zoom = max(1, round(600 / max(gh, gw)))  # a whole number of screen pixels per weight: tiles stay equal
    fig, ax = new_figure((gw * zoom / 100, gh * zoom / 100))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", interpolation="nearest")
    ax.set_title(f"First-layer weights W1: {H} units as {tuple(image_shape)} images")
    ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")


@torch.no_grad()
def plot_decision_regions(pl_module, X, y, path, steps=200):
    """The classifier's regions over the plane with the points X: (N, 2), y: (N,) on top (the case study's plot)."""
    X, y = X.cpu(), y.cpu()
    lo, hi = X.min(dim=0).values - 0.2, X.max(dim=0).values + 0.2  # (2,), (2,)
    xx, yy = torch.meshgrid(torch.linspace(lo[0], hi[0], steps), torch.linspace(lo[1], hi[1], steps), indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (steps^2, 2)
    W1 = pl_module.net.W1
    Z = pl_module.net(grid.to(W1.device, W1.dtype)).argmax(dim=1).cpu().reshape(steps, steps)  # (steps, steps)
    fig, ax = new_figure((5, 5))
    ax.contourf(xx.numpy(), yy.numpy(), Z.numpy(), cmap="Spectral", alpha=0.8)
    ax.scatter(X[:, 0].numpy(), X[:, 1].numpy(), c=y.numpy(), s=15, cmap="Spectral", edgecolors="k", lw=0.3)
    ax.set_title("Decision regions (train points)")
    fig.savefig(path, dpi=100, bbox_inches="tight")


class RunSettings(L.Callback):
    """Writes the run's settings into every checkpoint it saves, as ``checkpoint["run_settings"]`` = {"model": {...},
    "data": {"class_path": ..., "init_args": {...}}, "torch_num_threads": N, "trainer": {"precision": P}} (plain
    values: weights_only loads them): every setting that changes the checkpoint's numbers, so one copied away from
    its run folder still evaluates as its run did (train/runs.py, train/cli_argv.py)."""

    def __init__(self, settings):
        self.settings = settings

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["run_settings"] = self.settings


class StepProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar whose training bar counts SGD steps ("Epoch 3: 7/7 [..., 900 step/s]"), also where a
    training_step runs a step block of several: the epoch's total and position come from the loader
    (train/data.py's WithReplacementBatches: num_batches SGD steps per epoch, next_batch of them taken). It redraws
    every ``refresh_rate`` training_steps and at each epoch's end, as Lightning's bar."""

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        bar, loader = self.train_progress_bar, trainer.train_dataloader
        bar.unit = "step"
        if getattr(loader, "block_size", 0) and bar.total is not None:
            bar.total = min(loader.num_batches, bar.total * loader.block_size)  # limit_train_batches counts blocks

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bar, loader = self.train_progress_bar, trainer.train_dataloader
        if bar is None or not self._should_update(batch_idx + 1, trainer.num_training_batches):
            return
        steps = loader.next_batch if getattr(loader, "block_size", 0) else batch_idx + 1  # SGD steps this epoch
        if not bar.disable:
            bar.n = steps
            bar.refresh()
        bar.set_postfix(self.get_metrics(trainer, pl_module))


class PredictionsCSV(BasePredictionWriter):
    """``python -m train predict`` writes predictions.csv: index, predicted_class and, when the data carry labels,
    true_class. The file goes into the run folder of the checkpoint predicted from (lightning_logs/version_N/ for
    version_N/checkpoints/last.ckpt), else into the logger's folder.

    Args:
        filename: the CSV file's name inside that folder.
    """

    def __init__(self, filename: str = "predictions.csv"):
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.labels = []
        self.written = None  # (path, rows) of the latest predictions.csv written

    def on_predict_epoch_start(self, trainer, pl_module):
        self.labels = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        has_labels = isinstance(batch, (tuple, list)) and len(batch) == 2 and batch[1].shape[:1] == outputs.shape[:1]
        self.labels.append(batch[1].cpu() if has_labels else None)

    def output_folder(self, trainer):
        """The checkpoint's run folder, else the logger's folder, else the trainer's default_root_dir."""
        if trainer.ckpt_path:
            return str(run_dir_of(trainer.ckpt_path))
        return trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        if not trainer.is_global_zero:
            return
        preds = torch.cat([p.cpu() for p in predictions]) if predictions else torch.empty(0, dtype=torch.int64)
        labels = torch.cat(self.labels) if self.labels and all(t is not None for t in self.labels) else None
        path = os.path.join(self.output_folder(trainer), self.filename)

        def write(f):
            if labels is None:
                f.write("index,predicted_class\n")
                f.writelines(f"{i},{int(c)}\n" for i, c in enumerate(preds))
            else:
                f.write("index,predicted_class,true_class\n")
                f.writelines(f"{i},{int(c)},{int(t)}\n" for i, (c, t) in enumerate(zip(preds, labels)))

        self.written = (atomic_write(path, write, mode="w"), len(preds))  # the CLI says where (after_predict)
