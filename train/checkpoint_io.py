"""AtomicCheckpointIO: Lightning checkpoints that a kill at any moment cannot tear.

Usage::

    trainer = L.Trainer(plugins=[AtomicCheckpointIO()])          # or, in the CLI's trainer defaults:
    # "plugins": [{"class_path": "train.checkpoint_io.AtomicCheckpointIO"}]

Every file a Trainer writes through ``trainer.save_checkpoint`` (ModelCheckpoint's top-k files and ``last.ckpt``,
which with ``save_last=True`` is a second full save, not a copy) goes through ``save_checkpoint`` below, which is
train/atomic.py's atomic_write (torch.save into a temporary file beside the target, fsync, one os.replace, fsync
of the folder). A SIGKILL before the rename leaves the previous checkpoint and a stray ``.tmp`` (removed by the
next save of that name once its process is gone; the "newest last.ckpt" lookup, train/runs.py's
newest_last_checkpoint, ignores it); after it the new one. Lightning's own TorchCheckpointIO writes through an
fsspec transaction whose temporary file lives in /tmp and is moved without fsync, which on another filesystem is a
copy that a kill can cut short.

Not covered by this plugin: ``ModelCheckpoint(save_last="link")`` deletes last.ckpt and then creates a symlink
(a window with no last.ckpt); keep ``save_last=True``. ``LightningModule.load_from_checkpoint`` reads with
torch.load directly; ``load_checkpoint`` below serves ``fit(ckpt_path=...)`` and the other trainer entry points.
"""
import os
import pickle
import zipfile

import torch

# private Lightning API (2.6): the test TorchCheckpointIO itself uses to tell a local path from a URL; the public
# alternative, fsspec's url_to_fs, is a second opinion that could disagree with where Lightning writes
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from train.atomic import atomic_write
from train.steps import Every


def atomic_torch_save(obj, path):
    """torch.save(obj) to ``path`` through train/atomic.py's atomic_write (a fsynced temporary file, one rename)."""
    atomic_write(path, lambda f: torch.save(obj, f))


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic (temporary file, fsync, rename) and whose loads name a bad file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        """checkpoint: the dict Lightning built; path: the target file (local paths atomic, URLs as Lightning)."""
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None):
        """The checkpoint dict at ``path``; a truncated or corrupt file raises ValueError naming it, before any of
        it is used (check_intact: every byte against the archive's CRC-32s)."""
        if _is_local_file_protocol(path) and os.path.isfile(path):
            check_intact(path)
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as err:
            if "Weights only load failed" in str(err):  # a trust setting, not damage: Lightning's message is right
                raise
            raise ValueError(unreadable_message(path, err)) from err


def damage(path):
    """Why the file at ``path`` is not an intact torch.save archive, or None. torch.save writes a zip archive with a
    CRC-32 per member, but torch.load checks none of them (a zeroed block of weights loads as zeros); this reads
    every member and checks it. An archive written without CRCs (torch.serialization.set_crc32_options(False))
    cannot be checked and passes."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.file_size]
            if members and all(m.CRC == 0 for m in members):
                return None
            bad = archive.testzip()  # the first member whose bytes do not match their CRC-32, or None
    except zipfile.BadZipFile as err:
        return f"not a zip archive as torch.save writes ({err})"
    except Exception as err:  # a damaged header can fail in zipfile or zlib in many ways
        return f"its archive cannot be read ({type(err).__name__}: {err})"
    return f"{bad!r} in it fails its CRC-32 check: its bytes were changed after it was written" if bad else None


def check_intact(path):
    """Raise ValueError (unreadable_message) when the file at ``path`` is damaged (``damage``)."""
    why = damage(path)
    if why is not None:
        raise ValueError(unreadable_message(path, why))


def unreadable_message(path, err):
    """'checkpoint 'x.ckpt' is unreadable (truncated or corrupt): ...' plus the other checkpoints beside it."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    size = os.path.getsize(path) if os.path.exists(path) else 0
    others = sorted(e for e in os.listdir(folder) if e.endswith(".ckpt") and e != name) if os.path.isdir(folder) else []
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"checkpoint {path!r} is unreadable (truncated or corrupt, {size} bytes): {first_line}; the other "
            f"checkpoints in its folder are untouched: {others if others else 'none'} (pass one to --ckpt_path)")


class LastCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose ``last.ckpt`` is always the run's newest state: every ``every_n_train_steps`` steps
    (so a kill mid-epoch loses at most that many, plus a step block's length), at every training-epoch end and at
    the end of fit. It writes only last.ckpt (keep save_top_k 0: the top-k files are ModelCheckpoint's job).

    Lightning 2.6's ModelCheckpoint rewrites last.ckpt at an epoch end only when it also saved a top-k file there,
    so with a monitor (val/acc) last.ckpt lags the run whenever the metric did not improve. After manual
    optimization the saved state is the one after opt.step(), which is exactly what an exact resume needs.
    """

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        # private ModelCheckpoint attribute (2.6): the every_n_train_steps it was built with
        self._every = Every(self._every_n_train_steps) if self._every_n_train_steps >= 1 else None
        if self._every is not None:
            self._every.start(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Save when the step count reached or crossed a multiple of every_n_train_steps during this batch (a step
        block advances it by up to steps_per_call, so ``global_step % n == 0`` alone would skip most multiples)."""
        every = getattr(self, "_every", None)
        if every is not None and every.crossed(trainer.global_step):
            self._save_last_now(trainer)

    def _save_last_now(self, trainer):
        # private ModelCheckpoint API (2.6): saving last.ckpt alone, with its skip rules and file name; the public
        # trainer.save_checkpoint would bypass both and re-implement the save_last naming
        if not self._should_skip_saving_checkpoint(trainer):  # skips sanity checks and a step already saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer, pl_module):
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_now(trainer)

    def on_train_end(self, trainer, pl_module):
        self._save_last_now(trainer)
