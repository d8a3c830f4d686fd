"""AtomicCheckpointIO: round trip; a save cut short (exception, SIGKILL) keeps the old file; a bad file is named.

Run: ``.venv/bin/python -m pytest tests/test_checkpoint_io.py -q``.
"""
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from train.atomic import atomic_write, remove_stale_temporaries
from train.checkpoint_io import AtomicCheckpointIO, atomic_torch_save

pytestmark = pytest.mark.lightning


def state(value, n=1000):
    """A checkpoint-like dict whose every entry says which save wrote it."""
    return {"step": value, "state_dict": {"w": torch.full((n,), float(value), dtype=torch.float64)}}


def assert_consistent(checkpoint):
    assert torch.equal(checkpoint["state_dict"]["w"], torch.full_like(checkpoint["state_dict"]["w"],
                                                                      checkpoint["step"]))


def test_round_trip(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "a.ckpt"
    io.save_checkpoint(state(3), path)
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 3
    assert_consistent(loaded)
    assert os.listdir(path.parent) == ["a.ckpt"]  # no temporary left behind


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(state(1), path)
    real_save = torch.save

    def save_half_then_die(obj, f):  # writes half the bytes, then the "process dies"
        import io as _io

        buffer = _io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint(state(2), path)
    monkeypatch.setattr(torch, "save", real_save)
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 1
    assert_consistent(loaded)
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_truncated_checkpoint_is_named_and_others_remain(tmp_path):
    io = AtomicCheckpointIO()
    good, bad = tmp_path / "epoch=0.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(state(1), good)
    io.save_checkpoint(state(2), bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as info:
        io.load_checkpoint(bad)
    msg = str(info.value)
    assert msg.startswith(f"checkpoint {str(bad)!r} is unreadable (truncated or corrupt"), msg
    assert "epoch=0.ckpt" in msg, msg
    assert_consistent(io.load_checkpoint(good))
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="unreadable"):
        io.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        io.load_checkpoint(tmp_path / "missing.ckpt")


def test_stale_temporary_of_a_dead_writer_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.ckpt.{dead.stdout.strip()}.abcd.tmp"
    stale.write_bytes(b"partial")
    other = tmp_path / ".other.ckpt.1.abcd.tmp"  # another target's temporary: not ours to delete
    other.write_bytes(b"x")
    remove_stale_temporaries(tmp_path / "last.ckpt")
    assert not stale.exists() and other.exists()


def kill_while_writing(path, save, start, delay):
    """Fork a writer that saves a 16 MB checkpoint to ``path`` in a loop; SIGKILL it ``delay`` s after a save.

    A fork (not a fresh interpreter) so that no torch import is paid; the tensors exist before the fork, so the
    child only serializes. Step k holds a tensor filled with k % 2: a torn or mixed file cannot pass.
    """
    tensors = [torch.full((2_000_000,), float(parity), dtype=torch.float64) for parity in (0, 1)]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: never returns into pytest
        try:
            os.close(read_end)
            for step in range(start, start + 10**6):
                save({"step": step, "state_dict": {"w": tensors[step % 2]}}, path)
                os.write(write_end, b".")
        finally:
            os._exit(0)
    os.close(write_end)
    os.read(read_end, 1)  # one save done: from here on it is in the middle of the next ones
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)


def assert_whole(checkpoint):
    w = checkpoint["state_dict"]["w"]
    assert w.shape == (2_000_000,) and torch.equal(w, torch.full_like(w, checkpoint["step"] % 2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_mid_write_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    for i, delay in enumerate([0.0, 0.003, 0.011, 0.019, 0.037, 0.071]):
        kill_while_writing(path, atomic_torch_save, start=100 * i, delay=delay)
        loaded = io.load_checkpoint(path)  # whole, and from one save
        assert loaded["step"] >= 100 * i
        assert_whole(loaded)
    atomic_torch_save(state(7), path)  # a later save of the same name sweeps the killed writers' temporaries
    assert os.listdir(tmp_path) == ["last.ckpt"]


def fit_tiny(tmp_path, max_steps, ckpt_path=None):
    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    model = TinyClassifier()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=2, save_top_k=-1)
    trainer = L.Trainer(max_steps=max_steps, plugins=[AtomicCheckpointIO()], callbacks=[checkpoint],
                        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return trainer


class TinyClassifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        X, y = batch  # (B, 4), (B,)
        return torch.nn.functional.cross_entropy(self.layer(X), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_saves_through_the_plugin_and_names_a_truncated_resume(tmp_path):
    trainer = fit_tiny(tmp_path, max_steps=4)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    names = sorted(os.listdir(tmp_path))
    assert "last.ckpt" in names and not any(n.endswith(".tmp") for n in names), names
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 4
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[:1000])
    with pytest.raises(ValueError, match=r"last\.ckpt' is unreadable .*epoch=0-step=4\.ckpt"):
        fit_tiny(tmp_path, max_steps=6, ckpt_path=str(tmp_path / "last.ckpt"))
    resumed = fit_tiny(tmp_path, max_steps=6, ckpt_path=str(tmp_path / "epoch=0-step=4.ckpt"))
    assert resumed.global_step == 6


@pytest.mark.parametrize("steps_per_call,want", [
    (1, [4, 5, 8, 10, 12, 15]),  # every 4th step and each epoch end (5 batches per epoch)
    (3, [5, 8, 10, 13, 15]),  # blocks end at 3, 5 | 8, 10 | 13, 15: saved after each that reached or crossed 4k
])
def test_last_checkpoint_saves_when_a_step_block_crosses_a_multiple(monkeypatch, tmp_path, steps_per_call, want):
    from tests.blobs import BlobsDataModule
    from train.checkpoint_io import LastCheckpoint
    from train.module import TwoLayerNetModule

    saved = []
    monkeypatch.setattr(LastCheckpoint, "_save_last_checkpoint", lambda self, trainer, _: saved.append(
        trainer.global_step))
    dm = BlobsDataModule()
    model = TwoLayerNetModule(input_size=dm.input_size, num_classes=dm.num_classes, hidden_size=4,
                              steps_per_call=steps_per_call)
    checkpoint = LastCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=4)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[checkpoint],
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 15
    assert sorted(set(saved)) == want


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """atomic_write (checkpoints, export, predictions, the sweep's outputs): an exception while writing keeps the
    target as it was and removes the temporary file; a text write lands whole."""
    path = tmp_path / "net.npz"
    atomic_write(path, lambda f: f.write("old\n"), mode="w")

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["net.npz"]


def damage_largest_member(path, fill, size=8192):
    """Overwrite ``size`` bytes in the middle of the archive's largest member (a weight tensor) with ``fill``, as a
    disk or a copy gone wrong would, keeping the file's length and its zip structure."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda m: m.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2 - size // 2
    data[start:start + size] = bytes([fill]) * size
    path.write_bytes(bytes(data))
    return info.filename


@pytest.mark.parametrize("damage", ["zeroed block of weights", "0xFF block of weights", "zero-filled file",
                                    "0xFF-filled file"])
def test_a_damaged_checkpoint_is_refused_before_any_byte_is_used(tmp_path, damage):
    """torch.load alone loads a zeroed block of weights as zeros; every read here checks the archive's CRC-32s
    first and names the file (never suggesting weights_only=False)."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(state(3, n=100_000), path)
    if damage.endswith("block of weights"):
        member = damage_largest_member(path, 0 if damage.startswith("zeroed") else 0xFF)
        torch.load(path, weights_only=False)  # what torch.load alone does: no complaint
        why = f"{member!r} in it fails its CRC-32 check"
    else:
        path.write_bytes(bytes([0 if damage.startswith("zero") else 0xFF]) * path.stat().st_size)
        why = "not a zip archive"
    with pytest.raises(ValueError) as info:
        io.load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"checkpoint {str(path)!r} is unreadable") and why in msg and "weights_only" not in msg


def test_an_intact_checkpoint_passes_the_check(tmp_path):
    from train.checkpoint_io import damage

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(state(5), path)
    assert damage(path) is None
    assert_consistent(AtomicCheckpointIO().load_checkpoint(path))
