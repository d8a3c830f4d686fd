"""The sweep's Optuna study: its storage, sampler and pruner, asking and telling trials, and never losing one.

    study = open_study(cfg, study_dir)            # refuses a file that is not a study, or a study of another space
    for trial, params in ask_group(study, n_trials, size, space): ...
    tell(study, trial, value)

Storage: by default ``sqlite:///<output_dir>/<study>/study.db`` with Optuna's heartbeats; ``--storage`` takes an
SQLAlchemy URL or a path to an Optuna journal file (no heartbeats). Processes sharing a storage share the trial
budget: each counts the finished and running trials before every ask; two asks racing for the last slot may add
one trial over n_trials.

No trial is left RUNNING without a way back. Right after it is asked, a trial records its process (``worker``:
host:pid) and gets its heartbeat thread. When a study is opened, a RUNNING trial is lost, failed and queued again
with the same hyperparameters, when its process on this host is gone, when it recorded no process and no heartbeat
within ASK_GRACE_S (a process killed between Optuna's ask and that record), or (Optuna's own rule, for other hosts)
when its heartbeat is older than HEARTBEAT_GRACE_S.
"""
import os
import socket
import sqlite3
import time
from pathlib import Path

from train.atomic import process_alive
from train.sweep_train import SEARCHED

HEARTBEAT_INTERVAL_S, HEARTBEAT_GRACE_S = 5, 20
ASK_GRACE_S = 10  # a live process records its worker within milliseconds of asking
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which sweep process runs a trial (trials.csv)


class StudyError(ValueError):
    """A study that cannot be used as it is; the message says what to do."""


def storage_url(cfg, study_dir):
    return cfg.storage or f"sqlite:///{study_dir / 'study.db'}"


def check_storage_file(url):
    """Refuse an existing file that is not an Optuna study (0 bytes, damaged, another program's database): it is
    never overwritten or silently started over."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            return
        why = "0 bytes" if path.stat().st_size == 0 else None
        if why is None:
            try:
                with sqlite3.connect(f"file:{path}?mode=rw", uri=True) as db:  # rw: a hot journal rolls back
                    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                why = None if {"studies", "trials"} <= tables else "an SQLite database without Optuna's tables"
            except sqlite3.DatabaseError as err:
                why = f"not a readable SQLite database ({err})"
        if why:
            raise StudyError(f"storage: {path} is not an Optuna study ({why}); move it away or remove it to start "
                             "a new study there, or give another --study_name or --storage")
    elif "://" not in url and Path(url).is_file() and Path(url).stat().st_size:
        first = Path(url).open("rb").readline()
        if not first.lstrip().startswith(b"{"):
            raise StudyError(f"storage: {url} is not an Optuna journal file (its first line is not JSON); move it "
                             "away or give another --storage")


def make_storage(cfg, study_dir):
    """Optuna storage: the URL or journal path of --storage, else SQLite in the study folder (with heartbeats)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
    from optuna.storages.journal import JournalFileBackend
    from sqlalchemy.exc import IntegrityError, OperationalError

    url = storage_url(cfg, study_dir)
    check_storage_file(url)
    if "://" not in url:
        return JournalStorage(JournalFileBackend(url))
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
        retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
    else:
        retry = {"failed_trial_callback": RetryFailedTrialCallback(max_retry=3)}
    for attempt in range(5):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=HEARTBEAT_GRACE_S, **retry)
        except (IntegrityError, OperationalError):
            # processes starting on one new database race to create its tables; the loser finds them on a second look
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))


def open_study(cfg, study_dir, sampler, pruner):
    """The study of cfg (created or loaded), checked against cfg's space, with its lost trials queued again."""
    import optuna

    study = optuna.create_study(study_name=cfg.study_name, storage=make_storage(cfg, study_dir), sampler=sampler,
                                pruner=pruner, direction="maximize", load_if_exists=True)
    check_same_space(study, cfg, storage_url(cfg, study_dir))
    reclaim_lost_trials(study)
    optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat rule: failed and queued again
    return study


def distributions(space):
    """{name: Optuna distribution} that suggest() uses for ``space``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {name: CategoricalDistribution(list(space[name])) if isinstance(space[name], list)
            else FloatDistribution(space[name].low, space[name].high, log=space[name].log) for name in SEARCHED}


def check_same_space(study, cfg, url):
    """A study keeps one space: a study made with another one (or holding trials outside this one) is refused in
    one line that says what to do."""
    want = distributions(cfg.space)
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if name in want and dist != want[name]:
                where = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
                raise StudyError(
                    f"study {cfg.study_name!r} in {where} was searched over another space (space.{name}: "
                    f"{describe(dist)} there, {describe(want[name])} now); give a new --study_name to search this "
                    f"space, or remove {where} to start the study over")


def describe(dist):
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return str(list(dist.choices))
    return f"low={dist.low:g}, high={dist.high:g}, log={dist.log}"


def reclaim_lost_trials(study, now=None):
    """Fail the RUNNING trials whose process is gone and queue each again with its hyperparameters; returns how many.
    Waits up to ASK_GRACE_S for trials asked moments ago to record their process."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    deadline = time.time() + ASK_GRACE_S
    while True:
        lost, young = [], []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker", "")
            if worker:
                worker_host, _, pid = worker.rpartition(":")
                if worker_host == host and pid.isdigit() and not process_alive(int(pid)):
                    lost.append(t)
            elif not has_heartbeat(study, t):
                started = t.datetime_start.timestamp() if t.datetime_start else 0.0
                (young if (now or time.time()) - started < ASK_GRACE_S else lost).append(t)
        for t in lost:
            requeue(study, t)
        if not young or time.time() >= deadline:
            return len(lost)
        time.sleep(0.5)


def has_heartbeat(study, trial):
    """Whether Optuna recorded a heartbeat for the trial (RDB storages with heartbeats only)."""
    from optuna.storages import RDBStorage

    storage = study._storage  # private Optuna API: the study's storage object (no public accessor)
    storage = getattr(storage, "_backend", storage)  # _CachedStorage wraps the RDBStorage
    if not isinstance(storage, RDBStorage) or storage.heartbeat_interval is None:
        return False
    from optuna.storages._rdb import models  # private Optuna API (3.x-5.x): the heartbeat table's model

    with storage.scoped_session() as session:
        return session.query(models.TrialHeartbeatModel).filter_by(trial_id=trial._trial_id).first() is not None


def requeue(study, trial):
    """Fail a lost trial and, when it had drawn every hyperparameter, queue a copy to run again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:  # it finished after all
        return
    if set(SEARCHED) <= set(trial.params):
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


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


def grid_values(space):
    return {name: list(space[name]) for name in SEARCHED}


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
    divergence; a trial failed because its process was lost is not counted, its retry (waiting) is."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    used = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                             TrialState.WAITING)
            or (t.state == TrialState.FAIL and "diverged_at_step" in t.user_attrs)]
    return len(used), sum(t.state == TrialState.WAITING for t in trials)


def ask_group(study, n_trials, size, space):
    """Up to ``size`` new trials within the study's budget of n_trials (counted anew before each ask):
    [(trial, params, heartbeat thread)]. Each records its worker and starts its heartbeat as soon as it exists."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # private Optuna API (3.x-5.x): what
    # study.optimize starts per trial; ask/tell has no public heartbeat

    group = []
    while len(group) < size:
        used, waiting = counted(study)
        if used >= n_trials and not waiting:
            break
        trial = study.ask()
        trial.set_user_attr("worker", WORKER)
        beat = get_heartbeat_thread(trial._trial_id, study._storage)
        beat.start()
        group.append((trial, suggest(trial, space), beat))
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


def best_trial(study):
    """The completed trial with the highest val acc, or None."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value, default=None)
