"""train/data.py: the with-replacement sampler (determinism, epochs, resume, DDP slices), evaluation chunks, the
digits and spiral data modules, and a mid-epoch resume through Lightning.

Run: pytest tests/test_data.py
"""
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.helpers import assert_close_report
from train.batches import ContiguousChunks, WithReplacementBatches, batch_indices
from train.data import DigitsDataModule, SpiralDataModule
from train.module import TwoLayerNetModule

pytestmark = pytest.mark.lightning


def batches(it):
    return [(X.clone(), y.clone()) for X, y in it]


def make_sampler(**kw):
    X = torch.arange(50, dtype=torch.float32)[:, None] * torch.ones(1, 3)  # (50, 3): row i is i
    y = torch.arange(50)  # (50,)
    return WithReplacementBatches(X, y, batch_size=8, seed=5, **kw)


def test_batch_indices_are_a_pure_function_of_seed_epoch_and_batch():
    a = batch_indices(1, 2, 3, num_train=100, batch_size=64)
    assert a.dtype == torch.int64 and a.shape == (64,) and 0 <= int(a.min()) and int(a.max()) < 100
    assert torch.equal(a, batch_indices(1, 2, 3, 100, 64))
    for other in [(2, 2, 3), (1, 3, 3), (1, 2, 4)]:
        assert not torch.equal(a, batch_indices(*other, 100, 64)), other


def test_an_epoch_is_ceil_n_over_b_batches_drawn_by_index():
    sampler = make_sampler()
    got = batches(sampler)
    assert len(sampler) == len(got) == math.ceil(50 / 8)
    for b, (X, y) in enumerate(got):
        idx = batch_indices(5, 0, b, 50, 8)
        assert torch.equal(y, idx) and torch.equal(X[:, 0], idx.float())


def test_set_epoch_changes_the_sequence_and_sampler_is_the_lightning_hook():
    sampler = make_sampler()
    assert sampler.sampler is sampler  # Lightning calls dataloader.sampler.set_epoch(e)
    first = batches(sampler)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, batches(sampler)))  # same epoch: same batches
    sampler.set_epoch(1)
    second = batches(sampler)
    assert torch.equal(second[0][1], batch_indices(5, 1, 0, 50, 8))
    assert not torch.equal(first[0][1], second[0][1])


def test_state_dict_resumes_mid_epoch():
    sampler = make_sampler(epoch=2)
    it = iter(sampler)
    for _ in range(3):
        next(it)
    state = sampler.state_dict()
    assert state == {"epoch": 2, "next_batch": 3, "seed": 5}
    rest = batches(it)
    resumed = make_sampler()
    resumed.load_state_dict(state)
    got = batches(resumed)
    assert [y.tolist() for _, y in got] == [y.tolist() for _, y in rest]
    assert len(batches(resumed)) == len(resumed)  # the skip applies once; the next pass is a full epoch


def test_ranks_take_contiguous_slices_of_the_global_batch():
    whole = batches(make_sampler())
    halves = [batches(make_sampler(rank=r, world_size=2)) for r in range(2)]
    for b, (_, y) in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][b][1], halves[1][b][1]]), y)


def test_contiguous_chunks_cover_the_split_in_order():
    X, y = torch.randn(25, 3), torch.arange(25)
    chunks = list(ContiguousChunks(X, y, chunk_size=10))
    assert len(chunks) == len(ContiguousChunks(X, y, chunk_size=10)) == 3
    assert torch.equal(torch.cat([c[1] for c in chunks]), y)
    assert torch.equal(torch.cat([c[0] for c in chunks]), X)


def test_digits_split_and_preprocessing():
    dm = DigitsDataModule()
    s = dm.splits
    assert (s.X_train.shape, s.X_val.shape, s.X_test.shape) == ((1297, 64), (250, 64), (250, 64))
    assert s.X_train.dtype == torch.float64 and s.y_train.dtype == torch.int64  # preprocessed in float64
    assert (dm.input_size, dm.num_classes, dm.num_train, dm.image_shape) == (64, 10, 1297, (1, 8, 8))
    zeros = torch.zeros(64, dtype=torch.float64)
    assert_close_report("train mean image", s.X_train.mean(dim=0), zeros, rtol=0, atol=1e-12)
    assert s.X_val.mean().abs() < 0.5  # shifted by the same (train) mean
    other = DigitsDataModule(split_seed=1).splits
    assert not torch.equal(other.y_val, s.y_val)
    assert torch.equal(DigitsDataModule().splits.y_val, s.y_val)
    all_labels = torch.cat([s.y_train, s.y_val, s.y_test])
    assert torch.bincount(all_labels).min() >= 170  # all ten digits, ~180 each


def test_spiral_matches_the_case_study_shape():
    dm = SpiralDataModule()
    s = dm.splits
    assert s.X_train.shape == (300, 2) and s.image_shape is None and dm.num_classes == 3
    assert torch.equal(torch.bincount(s.y_train), torch.tensor([100, 100, 100]))
    radius = s.X_train.norm(dim=1)
    assert_close_report("radii of arm 0", radius[:100], torch.linspace(0, 1, 100), rtol=1e-6, atol=1e-6)
    assert not torch.equal(s.X_train, s.X_val)  # val/test: a second draw


@pytest.mark.parametrize("make,needle", [
    (lambda: DigitsDataModule(batch_size=0), "batch_size"),
    (lambda: DigitsDataModule(num_val=1700), "num_val"),
    (lambda: SpiralDataModule(num_classes=1), "num_classes"),
])
def test_bad_arguments_raise_a_clear_value_error(make, needle):
    with pytest.raises(ValueError, match=needle):
        make()


def test_a_data_module_without_test_split_neither_tests_nor_predicts():
    """predict refuses a missing test split as test does, rather than predict the validation split unasked."""
    dm = DigitsDataModule(num_test=0)
    with pytest.raises(ValueError, match="no test split to test"):
        dm.test_dataloader()
    with pytest.raises(ValueError, match="no test split to predict"):
        dm.predict_dataloader()


class BatchRecorder(L.Callback):
    def __init__(self):
        self.batches = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches[trainer.global_step] = batch[1].clone()


def fit(tmp_path, max_steps, ckpt_path=None, callbacks=()):
    recorder = BatchRecorder()
    model = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=8, learning_rate=0.1)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        default_root_dir=tmp_path, callbacks=[recorder, *callbacks])
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=200, seed=3), ckpt_path=ckpt_path)
    return recorder.batches, model


@pytest.mark.slow
def test_lightning_resume_mid_epoch_continues_the_batch_sequence(tmp_path):
    """7 steps per epoch; a checkpoint after step 10 (mid epoch 1), resumed to step 18, sees the same batches
    and ends with the same weights as one uninterrupted run."""
    torch.set_num_threads(1)
    straight, model = fit(tmp_path / "a", 18)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=10, save_top_k=-1)
    first, _ = fit(tmp_path / "b", 10, callbacks=[ckpt])
    resumed, resumed_model = fit(tmp_path / "c", 18, ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=10.ckpt"))
    assert sorted(first) == list(range(10)) and sorted(resumed) == list(range(10, 18))
    for step in range(18):
        seen = first[step] if step < 10 else resumed[step]
        assert torch.equal(seen, straight[step]), f"batch of step {step} differs after resuming"
    assert_close_report("W1 after resume", resumed_model.net.W1, model.net.W1, rtol=0, atol=0)
