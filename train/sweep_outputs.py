"""The sweep's outputs in ``<output_dir>/<study_name>/``: trials.csv, best.yaml (a complete fit config of the best
trial), sweep.png, and the summary printed at the end. Every file is written atomically (temporary file, fsync,
rename); a killed sweep's temporary files are removed by the next run.

    write_outputs(study, cfg, study_dir, best)
    print_summary(study, best, study_dir, elapsed, out)
"""
import contextlib
import csv
import io
import math
import warnings
from pathlib import Path

import yaml

from train import atomic
from train.atomic import atomic_write
from train.sweep_train import SEARCHED

OUTPUTS = ("trials.csv", "best.yaml", "sweep.png")


def remove_stale_temporaries(study_dir):
    """Remove the temporary files of the outputs that a killed sweep process left in study_dir."""
    for name in OUTPUTS:
        atomic.remove_stale_temporaries(study_dir / name)


def write_outputs(study, cfg, study_dir, best):
    atomic_write(study_dir / "trials.csv", lambda f: write_trials_csv(study, f), mode="w")
    atomic_write(study_dir / "best.yaml", lambda f: f.write(fit_config_yaml(cfg, best.params)), mode="w")
    atomic_write(study_dir / "sweep.png", lambda f: save_plot(study, f), mode="wb")


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
    printed = io.StringIO()
    given_yaml = yaml.safe_dump(to_plain(given), sort_keys=False)  # --config takes a YAML string: no temporary file
    with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        build_cli(["fit", "--config", given_yaml, "--print_config"])
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


def save_plot(study, file):
    """sweep.png into ``file``: cs231n's scatter of log10 lr against log10 reg coloured by val acc (marker size by
    hidden size), the optimization history, and val acc against each other hyperparameter; the best trial is a red
    star in every panel, diverged and pruned trials grey crosses. Matplotlib's object API, no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    other = [t for t in trials if t.state != TrialState.COMPLETE and set(SEARCHED) <= set(t.params)]
    best = max(done, key=lambda t: t.value, default=None)
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    (ax, hist, by_h), (by_m, by_d, by_e) = fig.subplots(2, 3)
    log = lambda ts, k: [math.log10(t.params[k]) if t.params[k] > 0 else float("nan") for t in ts]
    sizes = lambda ts: [20 + 0.5 * t.params["hidden_size"] for t in ts]
    points = ax.scatter(log(done, "learning_rate"), log(done, "reg"), c=[t.value for t in done], s=sizes(done),
                        cmap="viridis")
    if other:
        ax.scatter(log(other, "learning_rate"), log(other, "reg"), marker="x", c="0.6", label="diverged / pruned")
    if best is not None:
        ax.scatter(log([best], "learning_rate"), log([best], "reg"), marker="*", s=300, c="red",
                   label=f"best: trial {best.number}, val acc {best.value:.4f}")
    ax.legend(loc="best", fontsize="small")
    fig.colorbar(points, ax=ax, label="val acc")
    ax.set(xlabel="log10 learning rate", ylabel="log10 reg",
           title=f"{study.study_name}: val acc by lr and reg (size: hidden size)")
    numbers, values = [t.number for t in done], [t.value for t in done]
    best_so_far = [max(values[:i + 1]) for i in range(len(values))]
    hist.scatter(numbers, values, s=15, label="val acc")
    hist.step(numbers, best_so_far, where="post", c="C1", label="best so far")
    hist.set(xlabel="trial", ylabel="val acc", title="optimization history")
    hist.legend(loc="lower right")
    for panel, name in ((by_h, "hidden_size"), (by_m, "momentum"), (by_d, "learning_rate_decay"),
                        (by_e, "max_epochs")):
        panel.scatter([t.params[name] for t in done], values, s=15, c="C0")
        if best is not None:
            panel.scatter([best.params[name]], [best.value], marker="*", s=200, c="red")
        panel.set(xlabel=name, ylabel="val acc", title=f"val acc by {name}")
    fig.savefig(file, format="png", dpi=80)


def state_counts(trials):
    """{"complete": n, "pruned": n, "diverged": n, "failed": n, "running": n, "waiting": n}: a FAIL with
    diverged_at_step diverged; any other FAIL is a trial whose process was lost (and is retried)."""
    from optuna.trial import TrialState

    counts = dict.fromkeys(("complete", "pruned", "diverged", "failed", "running", "waiting"), 0)
    for t in trials:
        if t.state == TrialState.FAIL:
            counts["diverged" if "diverged_at_step" in t.user_attrs else "failed"] += 1
        elif t.state.name.lower() in counts:
            counts[t.state.name.lower()] += 1
    return counts


def print_summary(study, best, study_dir, elapsed, out, top=10):
    """The top trials, the study's counts by state, the best val acc and where the outputs are."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = state_counts(trials)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:top]
    print(f"\n{'trial':>6s} {'val_acc':>8s} {'lr':>10s} {'reg':>10s} {'H':>5s} {'momentum':>8s} {'decay':>7s} "
          f"{'epochs':>6s}", file=out)
    for t in done:
        p = t.params
        print(f"{t.number:6d} {t.value:8.4f} {p['learning_rate']:10.4g} {p['reg']:10.4g} {p['hidden_size']:5d} "
              f"{p['momentum']:8.3g} {p['learning_rate_decay']:7.4f} {p['max_epochs']:6d}", file=out)
    print(f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); this run took "
          f"{elapsed:.1f} s", file=out)
    if counts["running"]:
        print(f"{counts['running']} trials are still running in other processes: their results are not in these "
              "outputs yet (run the same command again when they are done)", file=out)
    print(f"best val acc = {best.value:.4f} (trial {best.number}); fit it with: python -m train fit --config "
          f"{study_dir / 'best.yaml'}; also {study_dir / 'trials.csv'}, {study_dir / 'sweep.png'}", file=out)
