"""``python -m train sweep``: cs231n's hyperparameter search on Optuna, the trials trained together in batched steps.

Usage::

    python -m train sweep                                    # the digits sweep (configs/sweep_digits.yaml's values)
    python -m train sweep --config configs/sweep_digits.yaml --n_trials 64 --space.hidden_size '[100, 200]'
    python -m train sweep --sampler grid --space.learning_rate '[0.1, 0.3]' --space.reg '[1e-4, 1e-3]' ...
    python -m train sweep --storage sqlite:////shared/study.db   # any number of processes share one study
    python -m train sweep --print_config > my_sweep.yaml

Configured like ``fit`` (jsonargparse: YAML, dotted overrides, --print_config): ``space`` (each hyperparameter a
range {low, high, log} or a list of choices; a one-item list fixes it), ``n_trials`` (the study's total over all
processes), ``sampler`` (Optuna's TPE, cs231n's grid, or random), ``pruner`` (on each epoch's val acc),
``data`` (a data module exactly as in fit), ``model`` (the fit settings not searched: std, init_seed, ...) and
``trainer`` (fit's trainer settings for best.yaml; precision 64-true trains in float64).

Trials train ``nets_per_step`` at a time as one BatchedTwoLayerNets (torch_impl/batched.py): one batched SGD step
for all, every net on the same batches (common random numbers). Each net follows exactly the trajectory ``fit``
gives its config: the same init (TwoLayerNet seeded by model.init_seed), the same batches (the data module's keyed
WithReplacementBatches), the same lr of step n (train/schedule.py's EpochDecay) and the same val accuracy after its
last epoch, so ``python -m train fit --config sweep_logs/<study>/best.yaml`` reproduces the best trial's number.
A net whose loss turns NaN/Inf leaves the batch (the trial FAILs with ``diverged_at_step``, where fit would stop);
a pruned net leaves it too. On a CUDA device each epoch's steps replay from a captured CUDA graph.

Storage: by default ``sqlite:///sweep_logs/<study>/study.db`` with Optuna's heartbeat, so a sweep that was
interrupted continues when run again (its trials left running are retried once their heartbeat is older than
HEARTBEAT_GRACE_S). ``--storage`` takes an SQLAlchemy URL (PostgreSQL, MySQL, SQLite) or a path to an Optuna
journal file (JournalFileBackend, no heartbeat). Processes sharing a storage share the trial budget: each counts
the finished and running trials before every ask, so none runs a trial twice; two asks racing for the last slot may
add one trial over n_trials. Outputs in ``<output_dir>/<study_name>/``: trials.csv, best.yaml (a complete fit
config: ``fit --print_config`` of the best trial's settings), sweep.png (cs231n's log lr vs log reg scatter coloured
by val acc, and the optimization history), plus the study file.
"""
import contextlib
import csv
import io
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import yaml

SEARCHED = ("learning_rate", "reg", "hidden_size", "momentum", "learning_rate_decay", "max_epochs")
NOT_FROM_MODEL = {"input_size", "num_classes", *SEARCHED[:-1]}  # model keys the data or the space provide
HEARTBEAT_INTERVAL_S, HEARTBEAT_GRACE_S = 5, 20
PRECISION_DTYPES = {"32-true": torch.float32, "32": torch.float32, "64-true": torch.float64, "64": torch.float64}


@dataclass
class Range:
    """A continuous range: Optuna's suggest_float(low, high, log=log)."""

    low: float
    high: float
    log: bool = False


@dataclass
class SearchSpace:
    """Each hyperparameter of fit searched by the sweep: a Range, or a list of choices (a one-item list fixes it).

    Args:
        learning_rate: model.learning_rate, SGD's step size at the start.
        reg: model.reg, the L2 strength.
        hidden_size: model.hidden_size, H.
        momentum: model.momentum.
        learning_rate_decay: model.learning_rate_decay, per epoch.
        max_epochs: trainer.max_epochs.
    """

    learning_rate: Range | list[float] = field(default_factory=lambda: Range(0.02, 1.0, log=True))
    reg: Range | list[float] = field(default_factory=lambda: Range(1e-5, 1e-2, log=True))
    hidden_size: list[int] = field(default_factory=lambda: [50, 100, 150])
    momentum: Range | list[float] = field(default_factory=lambda: [0.0, 0.5, 0.9])
    learning_rate_decay: Range | list[float] = field(default_factory=lambda: Range(0.9, 1.0))
    max_epochs: list[int] = field(default_factory=lambda: [15, 25])


DEFAULT_DATA = {"class_path": "train.data.DigitsDataModule",
                "init_args": {"batch_size": 200, "seed": 0, "num_val": 250, "num_test": 250}}
DEFAULT_MODEL = {"std": 1e-4, "lr_schedule": "epoch", "grad_mode": "manual", "init_seed": 0, "cuda_graph": False,
                 "steps_per_call": 16}
DEFAULT_TRAINER = {"accelerator": "cpu", "log_every_n_steps": 1}


def build_parser():
    """The sweep's jsonargparse parser; its defaults are the digits sweep (configs/sweep_digits.yaml)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    import train.cli  # noqa: F401  (registers every data module, image ones included, for --data SHORT_NAME)
    from train.data import ArrayDataModule
    from train.module import TwoLayerNetModule

    p = ArgumentParser(prog="python -m train sweep", description="Hyperparameter search on Optuna, trials trained "
                       "together in batched steps (train/sweep.py)", exit_on_error=True)
    p.add_argument("--config", action=ActionConfigFile, help="a sweep YAML (configs/sweep_*.yaml)")
    p.add_argument("--study_name", type=str, default="digits", help="the study; outputs go to output_dir/study_name")
    p.add_argument("--n_trials", type=int, default=64, help="trials of the study in all, over every process")
    p.add_argument("--nets_per_step", type=int, default=16, help="trials trained together in one batched step")
    p.add_argument("--sampler", type=Literal["tpe", "grid", "random"], default="tpe",
                   help="tpe: Optuna's TPE; grid: cs231n's grid over the space's lists; random")
    p.add_argument("--sampler_seed", type=int, default=0, help="seeds the sampler")
    p.add_argument("--pruner", type=Literal["none", "median", "successive_halving"], default="none",
                   help="stop trials early on their per-epoch val acc (Optuna's MedianPruner, SuccessiveHalvingPruner)")
    p.add_argument("--pruner_warmup_epochs", type=int, default=3, help="epochs before the median pruner may prune")
    p.add_argument("--storage", type=str | None, default=None,
                   help="an SQLAlchemy URL or a journal file path; default sqlite:///OUTPUT_DIR/STUDY/study.db")
    p.add_argument("--output_dir", type=str, default="sweep_logs")
    p.add_argument("--device", type=str, default="cpu", help="cpu or cuda (cuda: steps replayed from a CUDA graph)")
    p.add_argument("--torch_num_threads", type=int | None, default=1,
                   help="torch.set_num_threads for the sweep and best.yaml (1 suits the digits' small GEMMs)")
    p.add_argument("--seed_everything", type=int, default=0, help="fit's seed_everything, written to best.yaml")
    p.add_class_arguments(SearchSpace, "space", help="the search space")
    p.add_class_arguments(TwoLayerNetModule, "model", skip=NOT_FROM_MODEL,
                          help="fit's model settings that are not searched")
    p.add_subclass_arguments(ArrayDataModule, "data", help="the data module, exactly as in fit")
    p.add_argument("--trainer", type=dict, default=DEFAULT_TRAINER,
                   help="fit's trainer settings for best.yaml (max_epochs comes from the space)")
    p.set_defaults({"data": DEFAULT_DATA, **{f"model.{k}": v for k, v in DEFAULT_MODEL.items()}})
    return p


def parse_config(argv):
    """The sweep config (a jsonargparse Namespace) from argv; usage errors exit 2 with jsonargparse's message."""
    return build_parser().parse_args(argv)


def check_config(cfg):
    """Refuse settings the sweep cannot run, one ValueError naming the key."""
    for key in ("n_trials", "nets_per_step"):
        if cfg[key] < 1:
            raise ValueError(f"{key}: got {cfg[key]}; expected an integer >= 1")
    for name in SEARCHED:
        value = cfg.space[name]
        if isinstance(value, list):
            if not value:
                raise ValueError(f"space.{name}: got an empty list; expected at least one choice")
        elif not value.low <= value.high or (value.log and value.low <= 0):
            raise ValueError(f"space.{name}: got low={value.low}, high={value.high}, log={value.log}; expected "
                             "low <= high (and low > 0 with log)")
        elif cfg.sampler == "grid":
            raise ValueError(f"space.{name}: got a range; the grid sampler needs a list of values for every "
                             "hyperparameter (e.g. --space.learning_rate '[0.1, 0.3]')")
    for name in ("hidden_size", "max_epochs"):
        if min(cfg.space[name]) < 1:
            raise ValueError(f"space.{name}: got {cfg.space[name]}; expected integers >= 1")
    neutral = {"max_steps": (None, -1), "limit_train_batches": (None, 1.0), "accumulate_grad_batches": (None, 1)}
    for key, unset in neutral.items():
        if cfg.trainer.get(key) not in unset:
            raise ValueError(f"trainer.{key}: got {cfg.trainer[key]!r}; expected it unset (a trial trains "
                             "space.max_epochs whole epochs, as its fit in best.yaml does)")
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"trainer.precision: got {precision!r}; expected 32-true or 64-true (the sweep trains "
                         "in one dtype, as fit does with a 'true' precision)")
    if cfg.device not in ("cpu", "cuda") or (cfg.device == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"device: got {cfg.device!r}; expected cpu, or cuda on a machine with a CUDA GPU")


# ---- training: the trials as fit would train each one, all in one batched model -----------------------------------


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
    from torch_impl.batched import BatchedTwoLayerNets, GraphedBatchedSteps
    from train.data import WithReplacementBatches
    from train.schedule import EpochDecay

    X, y, X_val, y_val = splits.X_train, splits.y_train, splits.X_val, splits.y_val
    views = splits.train_views  # X, y stack this many views (augmentations) of each training example
    N, D = X.shape[0] // views, X.shape[1]  # N examples, as the lr schedule counts them
    C = len(splits.class_names) if splits.class_names else int(y.max()) + 1
    dtype, device = X.dtype, X.device
    sampler = WithReplacementBatches(X, y, batch_size, seed, views=views)  # fit's batches, keyed (seed, epoch, b)
    steps_per_epoch = sampler.num_batches
    factors = [EpochDecay(t["learning_rate_decay"], N, batch_size, model["lr_schedule"]) for t in trials]
    nets = BatchedTwoLayerNets.stack(
        [initial_params(model, t["hidden_size"], D, C, dtype, device) for t in trials],
        reg=[t["reg"] for t in trials], momentum=[t["momentum"] for t in trials])
    outcomes = {}
    graphed = None
    for epoch in range(max(t["max_epochs"] for t in trials)):
        table = sampler.epoch_indices(epoch)  # (steps_per_epoch, B) on the device
        first_step = epoch * steps_per_epoch
        lrs = torch.tensor([[trials[i]["learning_rate"] * factors[i](first_step + b) for i in nets.ids]
                            for b in range(steps_per_epoch)], dtype=dtype, device=device)  # (steps, M)  lr of step n
        if graph:
            if graphed is None:  # first epoch, or nets left: every tensor changed shape
                graphed = GraphedBatchedSteps(nets, X, y)
            graphed.load_epoch(table, lrs)
            losses = graphed.run(0, steps_per_epoch)  # (steps, M)
            bad = ~torch.isfinite(losses)
            for m in bad.any(0).nonzero().flatten().tolist():
                step = first_step + int(bad[:, m].nonzero()[0])
                outcomes[nets.ids[m]] = Outcome("diverged", epochs=epoch, diverged_at_step=step)
            if bad.any():
                nets.drop(bad.any(0))
                graphed = None
        else:
            for b in range(steps_per_epoch):
                idx = table[b]  # (B,)
                losses = nets.step(X.index_select(0, idx), y.index_select(0, idx), lrs[b])  # (M,)
                bad = ~torch.isfinite(losses)
                if bad.any():  # fit's divergence guard stops at this step; here the net leaves the batch
                    for m in bad.nonzero().flatten().tolist():
                        outcomes[nets.ids[m]] = Outcome("diverged", epochs=epoch, diverged_at_step=first_step + b)
                    lrs = lrs[:, ~bad]
                    nets.drop(bad)
        if nets.num_nets == 0:
            break
        accs = nets.accuracy(X_val, y_val).tolist()  # fit's val/acc after this epoch
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
            graphed = None
        if nets.num_nets == 0:
            break
    return [outcomes[i] for i in range(len(trials))]


# ---- the study -------------------------------------------------------------------------------------------------


def make_storage(cfg, study_dir):
    """Optuna storage: the URL or journal path of --storage, else SQLite in the study folder (with heartbeats)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
    from optuna.storages.journal import JournalFileBackend

    url = cfg.storage or f"sqlite:///{study_dir / 'study.db'}"
    if "://" not in url:
        return JournalStorage(JournalFileBackend(url))
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
        retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
    else:
        retry = {"failed_trial_callback": RetryFailedTrialCallback(max_retry=3)}
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(5):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=HEARTBEAT_GRACE_S, **retry)
        except (IntegrityError, OperationalError):
            # processes starting on one new database race to create its tables and version row; the loser
            # finds them made on a second look
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))


def grid_values(space):
    return {name: list(space[name]) for name in SEARCHED}


def make_sampler(cfg):
    import optuna

    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler(grid_values(cfg.space), seed=cfg.sampler_seed)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.sampler_seed)
    # constant_liar: trials asked together (one batched step) are spread apart instead of sampled alike
    return optuna.samplers.TPESampler(seed=cfg.sampler_seed, constant_liar=True)


def make_pruner(cfg):
    import optuna

    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=cfg.pruner_warmup_epochs)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def suggest(trial, space):
    """The trial's hyperparameters from the space, by Optuna's suggest API (the sampler chooses)."""
    params = {}
    for name in SEARCHED:
        value = space[name]
        if isinstance(value, list):
            params[name] = trial.suggest_categorical(name, list(value))
        else:
            params[name] = trial.suggest_float(name, value.low, value.high, log=value.log)
    return params


def counted(study):
    """(trials that use up the budget, trials waiting to be run): finished, running, waiting, and failed by
    divergence; a trial failed by a lost heartbeat is not counted, its retry is (waiting)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    used = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                             TrialState.WAITING)
            or (t.state == TrialState.FAIL and "diverged_at_step" in t.user_attrs)]
    return len(used), sum(t.state == TrialState.WAITING for t in trials)


def ask_group(study, n_trials, size):
    """Up to ``size`` new trials of the study within its budget of n_trials (counted anew before each ask)."""
    group = []
    while len(group) < size:
        used, waiting = counted(study)
        if used >= n_trials and not waiting:
            break
        group.append(study.ask())
    return group


def tell(study, trial, value=None, state=None):
    """study.tell, where the grid sampler's "grid used up" signal is not an error: its after_trial calls
    study.stop(), which raises outside study.optimize after the result is stored (optuna/study/_tell.py stores
    it in a ``finally``); the trial budget ends the sweep instead (n_trials is capped at the grid's size)."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def heartbeats(study, trials):
    """Optuna's heartbeat threads for trials run by hand (ask/tell); a no-op for storages without heartbeats.
    private Optuna API (optuna.storages._heartbeat, 3.x-5.x): study.optimize starts the same thread per trial."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    threads = [get_heartbeat_thread(t._trial_id, study._storage) for t in trials]
    for th in threads:
        th.start()
    return threads


def run_sweep(cfg, out=None):
    """Run the sweep described by ``cfg`` (parse_config's Namespace), printing to ``out`` (default sys.stdout);
    returns the best FrozenTrial."""
    import optuna
    from tqdm import tqdm

    from train.data import ArrayDataModule, ArraySplits

    out = sys.stdout if out is None else out
    check_config(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and the summary say what happened
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retries
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    if cfg.torch_num_threads:
        torch.set_num_threads(cfg.torch_num_threads)
    study_dir = Path(cfg.output_dir) / cfg.study_name
    study_dir.mkdir(parents=True, exist_ok=True)
    n_trials = cfg.n_trials
    if cfg.sampler == "grid":
        n_trials = min(n_trials, math.prod(len(v) for v in grid_values(cfg.space).values()))
    study = optuna.create_study(study_name=cfg.study_name, storage=make_storage(cfg, study_dir),
                                sampler=make_sampler(cfg), pruner=make_pruner(cfg), direction="maximize",
                                load_if_exists=True)
    optuna.storages.fail_stale_trials(study)  # trials of an interrupted run: failed and queued again
    dm = instantiate_data(cfg.data)
    if not isinstance(dm, ArrayDataModule):
        raise ValueError(f"data: got {type(dm).__name__}; expected an ArrayDataModule (train/data.py)")
    dtype = PRECISION_DTYPES[str(cfg.trainer.get("precision", "32-true"))]
    s = dm.splits
    move = lambda t: t.to(device=cfg.device, dtype=dtype if t.is_floating_point() else torch.int64)
    splits = ArraySplits(move(s.X_train), move(s.y_train), move(s.X_val), move(s.y_val),
                         class_names=s.class_names, train_views=s.train_views)
    model = {k: cfg.model[k] for k in ("std", "init_seed", "lr_schedule")}
    used, _ = counted(study)
    print(f"sweep {cfg.study_name!r}: {n_trials} trials ({used} already in the study), {cfg.nets_per_step} per "
          f"batched step, sampler {cfg.sampler}, pruner {cfg.pruner}, {dm.num_train} training examples on "
          f"{cfg.device}; study in {study_dir}", file=out)
    bar = tqdm(total=n_trials, initial=min(used, n_trials), desc="trials", unit="trial", file=out,
               dynamic_ncols=True)
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"  # which sweep process ran a trial (trials.csv)
    try:
        while group := ask_group(study, n_trials, cfg.nets_per_step):
            params = [suggest(t, cfg.space) for t in group]
            threads = heartbeats(study, group)

            def on_epoch_end(i, epoch, acc):  # the pruner's look: a storage write and read per trial and epoch
                group[i].report(acc, epoch)
                return group[i].should_prune()

            try:
                outcomes = train_together(params, splits, model, dm.batch_size, dm.seed,
                                          on_epoch_end if cfg.pruner != "none" else None, graph=cfg.device == "cuda")
            finally:
                for th in threads:
                    th.join()
            for trial, outcome in zip(group, outcomes):
                trial.set_user_attr("epochs", outcome.epochs)
                trial.set_user_attr("val_acc_per_epoch", [round(a, 6) for a in outcome.val_accs])
                trial.set_user_attr("worker", worker)
                if outcome.state == "diverged":
                    trial.set_user_attr("diverged_at_step", outcome.diverged_at_step)
                    tell(study, trial, state=optuna.trial.TrialState.FAIL)
                elif outcome.state == "pruned":
                    tell(study, trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    tell(study, trial, outcome.val_acc)
            bar.update(len(group))
            best = best_trial(study)
            if best is not None:
                bar.set_postfix_str(f"best val acc {best.value:.4f}")
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: run the same command again to continue (trials left running are retried "
              f"{HEARTBEAT_GRACE_S} s after this)", file=out)
        raise
    bar.close()
    elapsed = time.perf_counter() - start
    best = best_trial(study)
    if best is None:
        raise ValueError(f"study {cfg.study_name!r}: no trial completed (all diverged or were pruned); expected a "
                         "space with smaller learning rates (space.learning_rate)")
    write_outputs(study, cfg, study_dir, best)
    print_summary(study, best, study_dir, elapsed, out)
    return best


def instantiate_data(data_config):
    """The data module of a class_path/init_args config, as LightningCLI builds it."""
    from jsonargparse import ArgumentParser

    from train.data import ArrayDataModule

    p = ArgumentParser()
    p.add_subclass_arguments(ArrayDataModule, "data")
    instantiate = getattr(p, "instantiate", None) or p.instantiate_classes  # jsonargparse >= 4.49 / older
    return instantiate(p.parse_object({"data": data_config})).data


def best_trial(study):
    """The completed trial with the highest val acc, or None."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value, default=None)


# ---- outputs -----------------------------------------------------------------------------------------------------


def atomic_write(path, write):
    """write(file) into path.tmp, then rename it over path (a reader never sees half a file)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def write_outputs(study, cfg, study_dir, best):
    atomic_write(study_dir / "trials.csv", lambda f: write_trials_csv(study, f))
    atomic_write(study_dir / "best.yaml", lambda f: f.write(fit_config_yaml(cfg, best.params)))
    save_plot(study, study_dir / "sweep.png")


def write_trials_csv(study, f):
    """One row per trial: number, state, val_acc, the hyperparameters, epochs, diverged_at_step, duration_s and
    the worker (host:pid of the sweep process that ran it)."""
    w = csv.writer(f)
    w.writerow(["number", "state", "val_acc", *SEARCHED, "epochs", "diverged_at_step", "duration_s", "worker"])
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        duration = t.duration.total_seconds() if t.duration is not None else ""
        w.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                    *(t.params.get(k, "") for k in SEARCHED), t.user_attrs.get("epochs", ""),
                    t.user_attrs.get("diverged_at_step", ""), duration, t.user_attrs.get("worker", "")])


def fit_config_yaml(cfg, params):
    """A complete fit config for ``params``: the sweep's model, data and trainer settings with the trial's
    hyperparameters, expanded by ``python -m train fit --print_config``."""
    from train.cli import build_cli

    model = {**{k: v for k, v in cfg.model.items()}, **{k: params[k] for k in SEARCHED[:-1]}}
    trainer = {**cfg.trainer, "max_epochs": params["max_epochs"]}
    data = {"class_path": cfg.data["class_path"], "init_args": dict(cfg.data.get("init_args") or {})}
    given = {"seed_everything": cfg.seed_everything, "model": model, "data": data, "trainer": trainer}
    if cfg.torch_num_threads:
        given["torch_num_threads"] = cfg.torch_num_threads
    tmp = Path(cfg.output_dir) / cfg.study_name / f".best_given.{os.getpid()}.yaml"
    tmp.write_text(yaml.safe_dump(to_plain(given), sort_keys=False))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            build_cli(["fit", "--config", str(tmp), "--print_config"])
    finally:
        tmp.unlink(missing_ok=True)
    header = (f"# python -m train fit --config {Path(cfg.output_dir) / cfg.study_name / 'best.yaml'}\n"
              f"# the best trial of sweep study {cfg.study_name!r}: "
              + ", ".join(f"{k}={params[k]:.6g}" if isinstance(params[k], float) else f"{k}={params[k]}"
                          for k in SEARCHED) + "\n")
    return header + printed.getvalue()


def to_plain(obj):
    """A jsonargparse Namespace / dict tree as plain dicts and lists (for yaml.safe_dump)."""
    if hasattr(obj, "items"):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def save_plot(study, path):
    """cs231n's scatter of log10 lr against log10 reg coloured by val acc, beside the optimization history
    (every completed trial's val acc by number, and the best so far). Matplotlib's object API, no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    other = [t for t in trials if t.state != TrialState.COMPLETE and "learning_rate" in t.params]
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(1, 2)
    log = lambda ts, k: [math.log10(t.params[k]) if t.params[k] > 0 else float("nan") for t in ts]
    points = ax.scatter(log(done, "learning_rate"), log(done, "reg"), c=[t.value for t in done], s=60,
                        cmap="viridis")
    if other:
        ax.scatter(log(other, "learning_rate"), log(other, "reg"), marker="x", c="0.6",
                   label="diverged / pruned")
        ax.legend(loc="best")
    fig.colorbar(points, ax=ax, label="val acc")
    ax.set(xlabel="log10 learning rate", ylabel="log10 reg", title=f"{study.study_name}: val acc by lr and reg")
    numbers, values = [t.number for t in done], [t.value for t in done]
    best_so_far = [max(values[:i + 1]) for i in range(len(values))]
    hist.scatter(numbers, values, s=15, label="val acc")
    hist.step(numbers, best_so_far, where="post", c="C1", label="best so far")
    hist.set(xlabel="trial", ylabel="val acc", title="optimization history")
    hist.legend(loc="lower right")
    fig.savefig(path, dpi=100)


def print_summary(study, best, study_dir, elapsed, out, top=10):
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                          TrialState.FAIL)}
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:top]
    print(f"\n{'trial':>6s} {'val_acc':>8s} {'lr':>10s} {'reg':>10s} {'H':>5s} {'momentum':>8s} {'decay':>7s} "
          f"{'epochs':>6s}", file=out)
    for t in done:
        p = t.params
        print(f"{t.number:6d} {t.value:8.4f} {p['learning_rate']:10.4g} {p['reg']:10.4g} {p['hidden_size']:5d} "
              f"{p['momentum']:8.3g} {p['learning_rate_decay']:7.4f} {p['max_epochs']:6d}", file=out)
    print(f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in states.items())}); this run took "
          f"{elapsed:.1f} s", file=out)
    print(f"best val acc = {best.value:.4f} (trial {best.number}); fit it with: python -m train fit --config "
          f"{study_dir / 'best.yaml'}; also {study_dir / 'trials.csv'}, {study_dir / 'sweep.png'}", file=out)


def main(argv):
    """``python -m train sweep ARGS``; returns the exit status (2 with one ``error:`` line for bad settings)."""
    from train.cli import one_line

    cfg = parse_config(argv)
    try:
        run_sweep(cfg)
    except ValueError as err:
        print(one_line(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
