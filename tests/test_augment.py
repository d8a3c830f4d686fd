"""Augmented views and PCA whitening (train/image_data.py) and how the sampler picks views (train/data.py).

The views of a train image are drawn per example by batch_indices(seed, epoch, batch, ..., views), so the same
key gives the same augmented batch, the eager and step-block paths see the same rows, and a resumed fit continues
bit for bit. Whitening is fitted on the train split only. All data here is small and synthetic.

Run: .venv/bin/python -m pytest tests/test_augment.py -q
"""
import math

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.blobs import one_thread  # noqa: F401  (fixture)
from tests.helpers import assert_close_report
from train.batches import WithReplacementBatches, batch_indices
from train.data import ArrayDataModule, ArraySplits, check_splits
from train.image_data import ImageFolderDataModule, augmented_views, pca_whitening, shifted
from train.module import TwoLayerNetModule

pytestmark = pytest.mark.lightning


# ---------------------------------------------------------------- the sampler's view draw


def test_view_draw_keeps_the_examples_and_is_a_pure_function_of_its_key():
    plain = batch_indices(3, 1, 4, num_train=50, batch_size=64)
    rows = batch_indices(3, 1, 4, num_train=50, batch_size=64, views=10)
    assert rows.dtype == torch.int64 and rows.shape == (64,)
    assert torch.equal(rows % 50, plain)  # the same examples as without views (common random numbers)
    assert 0 <= int(rows.min()) and int(rows.max()) < 500 and len(set((rows // 50).tolist())) > 1
    assert torch.equal(rows, batch_indices(3, 1, 4, 50, 64, views=10))
    for other in [(4, 1, 4), (3, 2, 4), (3, 1, 5)]:
        assert not torch.equal(rows, batch_indices(*other, 50, 64, views=10)), other
    assert torch.equal(batch_indices(3, 1, 4, 50, 64, views=1), plain)


def views_sampler(**kw):
    """20 examples in 3 views: row v * 20 + i holds 100 * v + i, labels i % 4."""
    X = (torch.arange(3)[:, None] * 100 + torch.arange(20)).reshape(-1, 1).float()  # (60, 1)
    y = (torch.arange(20) % 4).repeat(3)  # (60,)
    return WithReplacementBatches(X, y, batch_size=8, seed=5, views=3, **kw)


def test_an_epoch_counts_examples_not_views_and_blocks_gather_the_same_rows():
    sampler = views_sampler(epoch=2)
    got = [(X.clone(), y.clone()) for X, y in sampler]
    assert len(sampler) == len(got) == math.ceil(20 / 8)
    for b, (X, y) in enumerate(got):
        rows = batch_indices(5, 2, b, 20, 8, views=3)
        assert torch.equal(X[:, 0], (rows // 20 * 100 + rows % 20).float())
        assert torch.equal(y, rows % 20 % 4)  # every view keeps its example's label
    table = views_sampler(epoch=2, block_size=2).epoch_indices(2)  # (3, 8) what the step blocks gather
    assert torch.equal(table, torch.stack([batch_indices(5, 2, b, 20, 8, views=3) for b in range(3)]))


def test_a_resumed_sampler_continues_the_same_augmented_batches():
    straight = [X.clone() for X, _ in views_sampler(epoch=1)]
    interrupted = views_sampler(epoch=1)
    first = next(iter(interrupted))[0].clone()
    state = interrupted.state_dict()  # {epoch 1, next_batch 1}
    resumed = views_sampler()
    resumed.load_state_dict(state)
    assert torch.equal(first, straight[0])
    assert all(torch.equal(a, b) for a, b in zip([X for X, _ in resumed], straight[1:]))


def test_train_views_must_divide_the_train_rows():
    X, y = torch.zeros(9, 2), torch.zeros(9, dtype=torch.int64)
    for bad in (2, 0, 1.5):
        with pytest.raises(ValueError, match="train_views"):
            check_splits(ArraySplits(X, y, X, y, train_views=bad))


# ---------------------------------------------------------------- views


@given(n=st.integers(1, 3), c=st.integers(1, 3), s=st.integers(2, 6), dy=st.integers(-5, 5),
       dx=st.integers(-5, 5))
def test_shifted_moves_pixels_and_fills_zeros(n, c, s, dy, dx):
    images = torch.randn(n, c, s, s, dtype=torch.float64)
    got = shifted(images, dy, dx)
    want = torch.zeros_like(images)
    for i in range(s):
        for j in range(s):
            if 0 <= i - dy < s and 0 <= j - dx < s:
                want[..., i, j] = images[..., i - dy, j - dx]
    assert got.dtype == images.dtype and torch.equal(got, want)


def test_augmented_views_order_shapes_and_the_identity_first():
    X = torch.randn(4, 3 * 5 * 5)  # (N, D)
    views = list(augmented_views(X, (3, 5, 5), flip=True, shift=2))
    assert len(views) == 10 and all(v.shape == X.shape and v.dtype == X.dtype for v in views)
    images = X.view(4, 3, 5, 5)
    mirror = images.flip(-1)
    want = [images, *(shifted(images, dy, dx) for dy, dx in [(2, 0), (-2, 0), (0, 2), (0, -2)]),
            mirror, *(shifted(mirror, dy, dx) for dy, dx in [(2, 0), (-2, 0), (0, 2), (0, -2)])]
    for v, w in zip(views, want):
        assert torch.equal(v, w.reshape(4, -1))
    assert views[0] is X
    assert [len(list(augmented_views(X, (3, 5, 5), f, s))) for f, s in [(False, 0), (True, 0), (False, 1)]] == \
        [1, 2, 5]


# ---------------------------------------------------------------- PCA whitening


def test_pca_whitening_without_epsilon_gives_unit_covariance():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(500, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g,
                                                                               dtype=torch.float64) * 40
    X -= X.mean(0)
    for k in (12, 5):
        P = pca_whitening(X, k, 0.0)  # (12, k)
        Z = X @ P
        assert P.shape == (12, k)
        assert_close_report("cov of whitened", Z.T @ Z / 500, torch.eye(k, dtype=torch.float64), rtol=0, atol=1e-10)


def test_pca_whitening_epsilon_damps_each_direction():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(400, 8, generator=g, dtype=torch.float64) * torch.linspace(1, 60, 8, dtype=torch.float64)
    X -= X.mean(0)
    lam = torch.linalg.eigvalsh(X.T @ X / 400 / 255 ** 2).flip(0)[:6]  # the 6 largest variances of X / 255
    Z = X @ pca_whitening(X, 6, 1e-3)
    assert_close_report("whitened variances", torch.diagonal(Z.T @ Z / 400), lam / (lam + 1e-3), rtol=1e-10,
                        atol=1e-12)


def write_png_tree(root, images, labels):
    """root/train/<c>/NN.png from (N, S, S, 3) uint8 images; ImageFolder lists them class by class, in order."""
    for i, (img, c) in enumerate(zip(images, labels)):
        (root / "train" / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "train" / f"c{c}" / f"{i:02d}.png")


def test_whitening_is_fitted_on_the_train_split_only(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 4, 4, 3), dtype=np.uint8)
    labels = [0] * 12 + [1] * 12
    write_png_tree(tmp_path / "a", images, labels)
    plain = ImageFolderDataModule(str(tmp_path / "a"), image_size=4, num_val=6).splits
    kw = dict(image_size=4, num_val=6, whiten_components=5, flip=True, shift=1)
    first = ImageFolderDataModule(str(tmp_path / "a"), **kw).splits
    # the same train images, other val images: identical train features and projection
    order = np.random.default_rng(0).permutation(24)
    changed = images.copy()
    for i in order[-6:]:
        changed[i] = 255 - changed[i]
    write_png_tree(tmp_path / "b", changed, labels)
    second = ImageFolderDataModule(str(tmp_path / "b"), **kw).splits
    assert first.train_views == 10 and first.X_train.shape == (180, 5) and first.X_val.shape == (6, 5)
    assert first.image_shape is None and first.X_train.dtype == torch.float32
    assert torch.equal(first.y_train, plain.y_train.repeat(10))
    assert torch.equal(first.X_train, second.X_train) and not torch.equal(first.X_val, second.X_val)
    P = pca_whitening(plain.X_train, 5, 0.1)  # fitted on the mean-subtracted train split alone
    assert_close_report("val features", first.X_val, plain.X_val @ P, rtol=1e-5, atol=1e-5)
    assert_close_report("view 0", first.X_train[:18], plain.X_train @ P, rtol=1e-5, atol=1e-5)


def test_imagefolder_rejects_bad_augmentation_settings(tmp_path):
    write_png_tree(tmp_path, np.zeros((4, 4, 4, 3), dtype=np.uint8), [0, 0, 1, 1])
    for kw, name in [({"whiten_components": 0}, "whiten_components"), ({"whiten_components": 49}, "at most the 48"),
                     ({"whiten_epsilon": -1.0}, "whiten_epsilon"), ({"flip": "yes"}, "flip"),
                     ({"shift": 4}, "shift"), ({"shift": -1}, "shift")]:
        with pytest.raises(ValueError, match=name):
            ImageFolderDataModule(str(tmp_path), image_size=4, num_val=1, **kw)


# ---------------------------------------------------------------- resume through Lightning


class ViewsDataModule(ArrayDataModule):
    """30 examples x 6 features in 2 views (the second one negated), val = 10 more; 5 steps per epoch."""

    def __init__(self):
        super().__init__(batch_size=6, seed=3)

    def load(self):
        g = torch.Generator().manual_seed(0)
        X = torch.randn(40, 6, generator=g)  # (40, 6)
        y = (X @ torch.randn(6, 3, generator=g)).argmax(dim=1)  # (40,)
        return ArraySplits(torch.cat([X[:30], -X[:30]]), y[:30].repeat(2), X[30:], y[30:], train_views=2)


def fit(tmp_path, name, max_epochs, ckpt_path=None, steps_per_call=1):
    L.seed_everything(0, verbose=False)
    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=8, std=0.3, learning_rate=0.05, momentum=0.9,
                              learning_rate_decay=0.9, steps_per_call=steps_per_call)
    trainer = L.Trainer(max_epochs=max_epochs, default_root_dir=tmp_path / name, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0)
    trainer.fit(model, ViewsDataModule(), ckpt_path=ckpt_path)
    return trainer, model


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_a_fit_with_views_resumes_bit_identical(tmp_path, one_thread, steps_per_call):  # noqa: F811
    _, straight = fit(tmp_path, "straight", 3, steps_per_call=steps_per_call)
    trainer, _ = fit(tmp_path, "first", 1, steps_per_call=steps_per_call)
    assert trainer.global_step == 5  # ceil(30 / 6): an epoch counts examples, not views
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    _, resumed = fit(tmp_path, "resumed", 3, ckpt_path=tmp_path / "one.ckpt", steps_per_call=steps_per_call)
    for name, p in straight.net.named_parameters():
        assert torch.equal(p, dict(resumed.net.named_parameters())[name]), name
