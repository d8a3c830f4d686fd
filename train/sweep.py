"""``python -m train sweep``: cs231n's hyperparameter search on Optuna, the trials trained together in batched steps.

Usage::

    python -m train sweep                                    # the digits sweep (train/configs/sweep_digits.yaml)
    python -m train sweep --config configs/sweep_digits.yaml --n_trials 64 --space.hidden_size '[100, 200]'
    python -m train sweep --sampler grid --space.learning_rate '[0.1, 0.3]' --space.reg '[1e-4, 1e-3]' ...
    python -m train sweep --storage sqlite:////shared/study.db   # any number of processes share one study
    python -m train sweep --print_config > my_sweep.yaml

Configured like ``fit`` (jsonargparse: YAML, dotted overrides, --print_config); the defaults are the file
train/configs/sweep_digits.yaml. ``space`` gives each hyperparameter a range {low, high, log} or a list of choices
(a one-item list fixes it), checked before the first trial (lr > 0, reg >= 0, 0 <= momentum < 1, decay > 0, sizes
>= 1, low <= high). ``n_trials`` is the study's total over all processes; ``sampler``: Optuna's TPE, cs231n's grid,
or random; ``pruner`` works on each epoch's val acc; ``data`` is a data module exactly as in fit; ``model`` holds
the fit settings not searched; ``trainer`` fit's trainer settings for best.yaml (precision 64-true trains in float64).

The rooms: train/sweep_train.py trains the nets of a group together exactly as fit trains each (no Optuna);
train/sweep_study.py holds the study (storage, asking and telling, lost trials queued again); train/sweep_outputs.py
writes trials.csv, best.yaml (``python -m train fit --config`` reproduces the best val acc), sweep.png and the
summary. Every setting, storage, disk or permission error ends as one ``error:`` line, exit status 2.
"""
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from train.sweep_train import SEARCHED

NOT_FROM_MODEL = {"input_size", "num_classes", *SEARCHED[:-1]}  # model keys the data or the space provide
DEFAULTS_FILE = Path(__file__).resolve().parent / "configs" / "sweep_digits.yaml"  # package data
SWEEP_PRECISIONS = ("32-true", "32", "64-true", "64")  # one dtype throughout, as fit with a "true" precision
# what each hyperparameter must satisfy: (test, the words for it)
VALID = {"learning_rate": (lambda v: v > 0, "> 0"), "reg": (lambda v: v >= 0, ">= 0"),
         "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"), "learning_rate_decay": (lambda v: v > 0, "> 0"),
         "hidden_size": (lambda v: v >= 1, "an integer >= 1"), "max_epochs": (lambda v: v >= 1, "an integer >= 1")}


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

    learning_rate: Range | list[float]
    reg: Range | list[float]
    hidden_size: list[int]
    momentum: Range | list[float]
    learning_rate_decay: Range | list[float]
    max_epochs: list[int]


def build_parser():
    """The sweep's jsonargparse parser; its defaults are train/configs/sweep_digits.yaml's."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    import train.cli  # noqa: F401  (registers every data module, image ones included, for --data SHORT_NAME)
    from train.data import ArrayDataModule
    from train.module import TwoLayerNetModule

    p = ArgumentParser(prog="python -m train sweep", description="Hyperparameter search on Optuna, trials trained "
                       "together in batched steps (train/sweep.py)", exit_on_error=True,
                       default_config_files=[str(DEFAULTS_FILE)])
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
    p.add_argument("--trainer", type=dict, default={},
                   help="fit's trainer settings for best.yaml (max_epochs comes from the space)")
    return p


def parse_config(argv):
    """The sweep config (a jsonargparse Namespace) from argv; usage errors exit 2 with jsonargparse's message."""
    return build_parser().parse_args(argv)


def check_config(cfg):
    """Refuse settings the sweep cannot run before any trial exists: one ValueError naming the key."""
    for key in ("n_trials", "nets_per_step"):
        if cfg[key] < 1:
            raise ValueError(f"{key}: got {cfg[key]}; expected an integer >= 1")
    for name in SEARCHED:
        check_space_entry(name, cfg.space[name], cfg.sampler)
    neutral = {"max_steps": (None, -1), "limit_train_batches": (None, 1.0), "accumulate_grad_batches": (None, 1)}
    for key, unset in neutral.items():
        if cfg.trainer.get(key) not in unset:
            raise ValueError(f"trainer.{key}: got {cfg.trainer[key]!r}; expected it unset (a trial trains "
                             "space.max_epochs whole epochs, as its fit in best.yaml does)")
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision not in SWEEP_PRECISIONS:
        raise ValueError(f"trainer.precision: got {precision!r}; expected 32-true or 64-true (the sweep trains "
                         "in one dtype, as fit does with a 'true' precision)")
    if cfg.device not in ("cpu", "cuda") or (cfg.device == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"device: got {cfg.device!r}; expected cpu, or cuda on a machine with a CUDA GPU")


def check_space_entry(name, value, sampler):
    """One hyperparameter's range or list: every value it can give must be valid (VALID)."""
    test, words = VALID[name]
    if isinstance(value, list):
        if not value:
            raise ValueError(f"space.{name}: got an empty list; expected at least one choice")
        bad = [v for v in value if not test(v)]
        if bad:
            raise ValueError(f"space.{name}: got {value}; expected every value {words} (not {bad[0]})")
        return
    if not value.low <= value.high or (value.log and value.low <= 0):
        raise ValueError(f"space.{name}: got low={value.low}, high={value.high}, log={value.log}; expected "
                         "low <= high (and low > 0 with log)")
    if not (test(value.low) and test(value.high)):
        raise ValueError(f"space.{name}: got low={value.low}, high={value.high}; expected the whole range {words}")
    if sampler == "grid":
        raise ValueError(f"space.{name}: got a range; the grid sampler needs a list of values for every "
                         "hyperparameter (e.g. --space.learning_rate '[0.1, 0.3]')")

def run_sweep(cfg, out=None):
    """Run the sweep described by ``cfg`` (parse_config's Namespace), printing to ``out`` (default sys.stdout);
    returns the best FrozenTrial."""
    from train import sweep_outputs, sweep_study

    out = sys.stdout if out is None else out
    check_config(cfg)
    quiet_optuna()
    if cfg.torch_num_threads:
        torch.set_num_threads(cfg.torch_num_threads)
    study_dir = Path(cfg.output_dir) / cfg.study_name
    study_dir.mkdir(parents=True, exist_ok=True)
    sweep_outputs.remove_stale_temporaries(study_dir)
    n_trials = cfg.n_trials
    if cfg.sampler == "grid":
        n_trials = min(n_trials, math.prod(len(v) for v in sweep_study.grid_values(cfg.space).values()))
    study = sweep_study.open_study(cfg, study_dir, sweep_study.make_sampler(cfg), sweep_study.make_pruner(cfg))
    dm, splits = load_splits(cfg)
    used, _ = sweep_study.counted(study)
    print(f"sweep {cfg.study_name!r}: {n_trials} trials ({used} already in the study), {cfg.nets_per_step} per "
          f"batched step, sampler {cfg.sampler}, pruner {cfg.pruner}, {dm.num_train} training examples on "
          f"{cfg.device}; study in {study_dir}", file=out)
    start = time.perf_counter()
    run_trials(cfg, study, n_trials, used, dm, splits, out)
    elapsed = time.perf_counter() - start
    best = sweep_study.best_trial(study)
    if best is None:
        counts = sweep_outputs.state_counts(study.get_trials(deepcopy=False))
        hint = ("expected a space with smaller learning rates (space.learning_rate)" if counts["diverged"]
                else "run the same command again to continue")
        raise ValueError(f"study {cfg.study_name!r}: no trial completed ("
                         + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"); {hint}")
    sweep_outputs.write_outputs(study, cfg, study_dir, best)
    sweep_outputs.print_summary(study, best, study_dir, elapsed, out)
    return best


def quiet_optuna():
    """The progress bar and the summary say what happened; Optuna's own logging and notes stay quiet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retries
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a Jupyter kernel without ipywidgets


def load_splits(cfg):
    """The data module of cfg and its train/val splits on the sweep's device, in the run's dtype."""
    from train.data import ArrayDataModule, ArraySplits, precision_dtype

    dm = instantiate_data(cfg.data)
    if not isinstance(dm, ArrayDataModule):
        raise ValueError(f"data: got {type(dm).__name__}; expected an ArrayDataModule (train/data.py)")
    dtype = precision_dtype(cfg.trainer.get("precision", "32-true"))
    s = dm.splits
    move = lambda t: t.to(device=cfg.device, dtype=dtype if t.is_floating_point() else torch.int64)
    splits = ArraySplits(move(s.X_train), move(s.y_train), move(s.X_val), move(s.y_val),
                         class_names=s.class_names, train_views=s.train_views)
    return dm, splits


def run_trials(cfg, study, n_trials, used, dm, splits, out):
    """Ask groups of trials until the budget is used, train each group together, tell every result."""
    from tqdm import tqdm

    from train.sweep_study import ask_group, best_trial
    from train.sweep_train import train_together

    model = {k: cfg.model[k] for k in ("std", "init_seed", "lr_schedule")}
    bar = tqdm(total=n_trials, initial=min(used, n_trials), desc="trials", unit="trial", file=out, dynamic_ncols=True)
    try:
        while group := ask_group(study, n_trials, cfg.nets_per_step, cfg.space):
            trials = [trial for trial, _, _ in group]

            def on_epoch_end(i, epoch, acc, trials=trials):  # the pruner's look: a storage write and read
                trials[i].report(acc, epoch)
                return trials[i].should_prune()

            try:
                outcomes = train_together([params for _, params, _ in group], splits, model, dm.batch_size, dm.seed,
                                          on_epoch_end if cfg.pruner != "none" else None, graph=cfg.device == "cuda")
            finally:
                for _, _, beat in group:
                    beat.join()
            for trial, outcome in zip(trials, outcomes):
                record(study, trial, outcome)
            bar.update(len(group))
            if (best := best_trial(study)) is not None:
                bar.set_postfix_str(f"best val acc {best.value:.4f}")
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (the trials left running are run again)",
              file=out)
        raise
    finally:
        bar.close()


def record(study, trial, outcome):
    """Store one trial's outcome: its epochs and val acc per epoch, then its state (diverged is a FAIL that says
    where)."""
    import optuna

    from train.sweep_study import tell

    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("val_acc_per_epoch", [round(a, 6) for a in outcome.val_accs])
    if outcome.state == "diverged":
        trial.set_user_attr("diverged_at_step", outcome.diverged_at_step)
        tell(study, trial, state=optuna.trial.TrialState.FAIL)
    elif outcome.state == "pruned":
        tell(study, trial, state=optuna.trial.TrialState.PRUNED)
    else:
        tell(study, trial, outcome.val_acc)


def instantiate_data(data_config):
    """The data module of a class_path/init_args config, as LightningCLI builds it."""
    from jsonargparse import ArgumentParser

    from train.data import ArrayDataModule

    p = ArgumentParser()
    p.add_subclass_arguments(ArrayDataModule, "data")
    instantiate = getattr(p, "instantiate", None) or p.instantiate_classes  # jsonargparse >= 4.49 / older
    return instantiate(p.parse_object({"data": data_config})).data


def main(argv):
    """``python -m train sweep ARGS``; returns the exit status: 2 with one ``error:`` line for bad settings, a
    storage that is not a study (or of another space), a full disk or a folder without write permission."""
    from train.cli import one_line

    cfg = parse_config(argv)
    try:
        run_sweep(cfg)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as err:
        print(one_line(err), file=sys.stderr)
        return 2
    except Exception as err:  # storage errors (SQLAlchemy, Optuna) name their cause in the first line
        if not is_storage_error(err):
            raise
        print(one_line(f"storage: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; check "
                       f"--storage / --output_dir (a damaged study file: move it away or give another "
                       "--study_name)"), file=sys.stderr)
        return 2
    return 0


def is_storage_error(err):
    """Whether err comes from the study's storage (SQLAlchemy, sqlite3 or Optuna's storage layer)."""
    module = type(err).__module__ or ""
    return module.startswith(("sqlalchemy", "sqlite3", "optuna.storages", "optuna.exceptions"))
