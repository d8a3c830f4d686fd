"""TwoLayerNetModule: the lr schedules, gradients through the autograd engine, precision, checkpoints, errors.

Run: pytest tests/test_lightning_module.py
"""
import lightning as L
import pytest
import torch

from tests.blobs import BlobsDataModule, one_thread  # noqa: F401 (fixture)
from tests.helpers import CUDA, assert_close_report
from train.module import TwoLayerNetModule
from train.schedule import EpochDecay

pytestmark = [pytest.mark.lightning, pytest.mark.usefixtures("one_thread")]


def quiet_trainer(**kw):
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**{**defaults, **kw})


@pytest.mark.parametrize("num_train,batch_size", [(1000, 100), (1297, 200), (49000, 200), (50, 200), (300, 7),
                                                  (10, 4), (1, 1)])
def test_cs231n_schedule_counts_decays_like_the_float_modulo_loop(num_train, batch_size):
    schedule = EpochDecay(0.5, num_train, batch_size, "cs231n")
    ipe = max(num_train / batch_size, 1)  # cs231n's iterations_per_epoch, a float
    count = 0
    for n in range(0, 1200):
        assert schedule.num_decays(n) == count, f"after {n} steps"
        count += n % ipe == 0  # the article's test, after step n


@pytest.mark.parametrize("num_train,batch_size", [(1000, 100), (1297, 200), (50, 200)])
def test_epoch_schedule_decays_after_every_ceil_n_over_b_steps(num_train, batch_size):
    schedule = EpochDecay(0.5, num_train, batch_size, "epoch")
    steps_per_epoch = -(-num_train // batch_size)
    assert [schedule.num_decays(n) for n in range(3 * steps_per_epoch + 1)] == \
        [n // steps_per_epoch for n in range(3 * steps_per_epoch + 1)]
    assert schedule(2 * steps_per_epoch) == 0.25


def test_fit_decays_lr_per_epoch_and_logs_metrics():
    dm = BlobsDataModule(n=90, batch_size=20)  # 5 steps per epoch
    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=8, std=0.1, learning_rate=0.1,
                              learning_rate_decay=0.5)
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 15
    assert_close_report("lr after 3 epochs", model.optimizers().param_groups[0]["lr"], 0.1 * 0.5 ** 3,
                        rtol=1e-12, atol=0)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
        assert key in trainer.callback_metrics, key
    test_metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert 0.0 <= test_metrics["test/acc"] <= 1.0


@pytest.mark.parametrize("grad_mode", ["manual", "autograd"])
def test_gradients_arrive_through_the_autograd_engine(grad_mode):
    """Each parameter's post-accumulate-grad hook fires once per step: .grad is filled by backward, which is
    what DDP's all-reduce and AMP's scaler hook into (an assignment to .grad would fire nothing)."""
    dm = BlobsDataModule(n=40, batch_size=20)
    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=8, std=0.1, learning_rate=0.1,
                              grad_mode=grad_mode)
    fired = {name: 0 for name, _ in model.net.named_parameters()}
    for name, p in model.net.named_parameters():
        p.register_post_accumulate_grad_hook(lambda _p, name=name: fired.__setitem__(name, fired[name] + 1))
    quiet_trainer(max_steps=6, limit_val_batches=0).fit(model, datamodule=dm)
    assert fired == {"W1": 6, "b1": 6, "W2": 6, "b2": 6}


def test_precision_64_true_gives_float64_parameters_and_batches():
    seen = set()

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.add((batch[0].dtype, batch[1].dtype))

    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=8)
    quiet_trainer(max_steps=3, precision="64-true", limit_val_batches=0, callbacks=[Spy()]).fit(
        model, datamodule=BlobsDataModule())
    assert seen == {(torch.float64, torch.int64)}
    assert {p.dtype for p in model.parameters()} == {torch.float64}


@pytest.mark.cuda
@CUDA
def test_fit_on_cuda_keeps_data_and_parameters_on_the_gpu():
    devices = set()

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            devices.add((batch[0].device.type, batch[1].device.type, pl_module.net.W1.device.type))

    dm = BlobsDataModule()
    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=8, std=0.1, learning_rate=0.1)
    trainer = quiet_trainer(accelerator="gpu", devices=1, max_epochs=2, callbacks=[Spy()])
    trainer.fit(model, datamodule=dm)
    assert devices == {("cuda", "cuda", "cuda")}  # Lightning moves the module back to the CPU after fit
    assert dm._device_splits.X_val.device.type == "cuda"
    assert 0.0 <= float(trainer.callback_metrics["val/acc"]) <= 1.0


def test_checkpoint_holds_numpy_layout_parameters_and_scheduler(tmp_path):
    dm = BlobsDataModule()
    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=8, std=0.1, learning_rate=0.1)
    trainer = quiet_trainer(max_steps=7, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    shapes = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    assert shapes == {"net.W1": (6, 8), "net.b1": (8,), "net.W2": (8, 3), "net.b2": (3,)}
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 7
    assert ckpt["hyper_parameters"]["hidden_size"] == 8
    restored = TwoLayerNetModule.load_from_checkpoint(path)
    assert_close_report("W1 restored", restored.net.W1, model.net.W1, rtol=0, atol=0)
    preds = restored.predict_step((dm.splits.X_val, dm.splits.y_val), 0)
    assert preds.dtype == torch.int64 and preds.shape == (40,)
    assert_close_report("predict_step", preds, restored.net.predict(dm.splits.X_val), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs,needle", [
    ({"grad_mode": "numeric"}, "grad_mode"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"learning_rate_decay": 1.5}, "learning_rate_decay"),
])
def test_bad_hyperparameters_raise_a_clear_value_error(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        TwoLayerNetModule(input_size=6, num_classes=3, **kwargs)


def test_plain_dataloaders_train_with_the_epoch_length_of_the_loader():
    X, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=4)  # 3 batches an epoch
    model = TwoLayerNetModule(input_size=6, num_classes=3, learning_rate=0.1, learning_rate_decay=0.5)
    quiet_trainer(max_epochs=2).fit(model, loader, loader)
    assert model.trainer.global_step == 6
    assert model.lr_schedulers().get_last_lr() == [0.1 * 0.5 ** 2]  # one decay per 3-batch epoch


def test_positional_arguments_are_refused():
    with pytest.raises(TypeError, match="positional"):
        TwoLayerNetModule(64, 100, 10)  # cs231n's (input_size, hidden_size, output_size) order is not guessed
