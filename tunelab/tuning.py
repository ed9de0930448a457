"""The shell that wires the rooms: config -> data -> Optuna study -> MLflow runs -> report.

``tune`` validates everything first (nothing is written to either store on bad input), opens
the study and its parent run, then runs trials in worker processes that are recycled every
``trials_per_process`` trials: TensorFlow leaks memory across models built in one process,
and a fresh process is the only cure that holds over long studies.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tunelab import quiet
from tunelab.config import DEFAULT_TRACKING_URI, ConfigError, StudyConfig, config_from_dict
from tunelab.signals import Terminated
from tunelab.terminal import StudyState, make_display, param_name, short
from tunelab.text_table import table
from tunelab.wiring import (
    confirm,
    load_data,
    make_objective,
    open_study,
    resolve_for_data,
    search_deadline,
    study_selection,
    trial_budget,
    trial_epochs,
    will_confirm,
)


@dataclasses.dataclass(frozen=True)
class StoredStudy:
    """A study found in the storage before ``tune`` writes anything: its user attributes
    (config, identity) and how many trials it holds."""

    name: str
    storage: str
    user_attrs: dict[str, Any]
    n_trials: int
    distributions: dict[str, Any]  # parameter -> the Optuna distribution trials used

    @property
    def config(self) -> dict[str, Any]:
        return self.user_attrs["config"]


def resolve_study(config: StudyConfig | str | Path | Mapping[str, Any] | None,
                  overrides: Mapping[str, Any]) -> tuple[StudyConfig, StoredStudy | None]:
    """The config a ``tune`` call runs: for a study that exists already, its stored config
    with only the keys the user set on top (never today's defaults for the others), and the
    stored study; else the config as given, and None. Reads the storage, writes nothing."""
    from tunelab.config import DEFAULT_STORAGE, apply_overrides, default_study_name, user_mapping
    from tunelab.identity import merge_stored
    from tunelab.search.study import find_stored_study

    path = None
    if isinstance(config, StudyConfig):  # every key of a config object counts as set
        user = apply_overrides(config.to_dict(), overrides)
    elif isinstance(config, Mapping):
        user = apply_overrides({}, copy.deepcopy({**config, **overrides}))
    else:
        path = config
        user = user_mapping(config, overrides)

    def build(raw: Mapping[str, Any]) -> StudyConfig:
        try:
            return config_from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}" if path is not None else str(err)) from None

    name = user.get("study_name") or default_study_name(user)
    storage = user.get("storage") or DEFAULT_STORAGE
    stored = None
    if isinstance(name, str) and isinstance(storage, str):
        try:
            found = find_stored_study(storage, name)
        except (ValueError, OSError) as err:
            raise ConfigError(f"storage: {storage}: cannot read it ({err})") from None
        if found is not None and isinstance(found["user_attrs"].get("config"), Mapping):
            stored = StoredStudy(name, storage, found["user_attrs"], found["n_trials"],
                                 found["distributions"])
    if stored is None:
        return build(user), None
    merged = merge_stored(stored.config, user, study_name=name, storage=user.get("storage"))
    return build(merged), stored


def check_resume(stored: StoredStudy, config: StudyConfig, identity: Mapping[str, Any],
                 accept: tuple[str, ...]):
    """Refuse (ConfigError) a resume that would mix another question into the study; else
    return the ``identity.ResumeCheck`` with what changed and was allowed or accepted."""
    from tunelab.identity import IDENTITY_ATTR, compare, refusal
    from tunelab.search.space import distribution_conflicts

    check = compare(stored.config, stored.user_attrs.get(IDENTITY_ATTR), config, identity,
                    accept)
    if check.refused:
        raise refusal(stored.name, config.storage_url, stored.n_trials, check)
    conflicts = distribution_conflicts(stored.distributions, config.search_space)
    if conflicts:  # accepted, but Optuna would fail every trial that suggests them
        raise ConfigError(f"study {stored.name!r} in {config.storage_url}: Optuna cannot "
                          "change these parameters within one study, even as an accepted "
                          "change:\n  " + "\n  ".join(conflicts)
                          + "\nStart a new study (another study_name) for the new space.")
    return check


def tune(config: StudyConfig | str | Path | Mapping[str, Any] | None = None, *,
         in_process: bool = False, accept_changes: tuple[str, ...] | list[str] = (),
         **overrides: Any):
    """Run (or resume) a study and return the ``optuna.Study``.

    ``config`` is a ``StudyConfig``, a YAML path, a mapping of keys, or None for the embedded
    default; ``overrides`` use dotted keys (``tune(max_epochs=3, **{"dataset.image_size": 8})``).
    ``in_process=True`` runs the trials in this process (handy in notebooks and debuggers;
    memory then grows with every model TensorFlow builds).

    A study of that name that exists already is resumed: keys not given take its stored
    values, and a change of what the study measures (data, model, space, objective, ...) is
    refused unless named in ``accept_changes`` (``tunelab.identity``).
    """
    from tunelab.identity import check_accept_keys

    accept = tuple(check_accept_keys(accept_changes))
    config, stored = resolve_study(config, overrides)
    # the first workers import TensorFlow and Optuna while this process loads the data,
    # checks it and sets up the stores (issue #21: start-up off the critical path); MLflow
    # loads in each worker's writer process, never in the worker (tracking/remote.py)
    standby = None
    left = config.n_trials - stored.n_trials if config.n_trials and stored else config.n_trials
    try:
        if (not in_process and config.engine != "keras-tuner" and config.overlap_recycle
                and (left is None or left > 0)):
            standby = StandbyWorkers.start(min(config.workers, left or config.workers))
        return _tune_study(config, stored, accept, in_process, standby)
    finally:
        if standby is not None:
            standby.close()


def _tune_study(config: StudyConfig, stored: StoredStudy | None, accept: tuple[str, ...],
                in_process: bool, standby: StandbyWorkers | None):
    from tunelab.identity import (
        ACCEPTED_ATTR,
        IDENTITY_ATTR,
        accepted_records,
        accepted_tags,
        notice,
        resume_line,
        study_identity,
    )

    data = load_data(config)
    config = resolve_for_data(config, data)  # dataset.cv_folds / selection.method: auto
    from tunelab.models.timeline import mark

    mark("data_loaded")
    identity = study_identity(config, data)
    # a resume that would mix another question into the study stops here, before Keras loads
    check = check_resume(stored, config, identity, accept) if stored is not None else None
    from tunelab.validation import validate_against_data

    validate_against_data(config, data)
    from tunelab.tracking import StudyTracker, resolve_tracking_uri

    try:
        tracking_uri = resolve_tracking_uri(config.resolved_tracking_uri)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    # every check has passed: from here on the stores are written
    study = open_study(config, create=True)
    if stored is None and study.user_attrs.get(IDENTITY_ATTR) not in (None, identity):
        # another `tune` created the study since it was looked up: compare with its record
        stored = StoredStudy(config.study_name, config.storage_url,
                             {"config": config.to_dict(), **study.user_attrs},
                             len(study.trials), {})
        check = check_resume(stored, config, identity, accept)
    if check is not None and resume_line(config.study_name, stored.n_trials, check):
        print(resume_line(config.study_name, stored.n_trials, check), flush=True)
    for line in notice(config.study_name, stored.n_trials, check) if check else ():
        print(line, file=sys.stderr, flush=True)
    if study.user_attrs.get(IDENTITY_ATTR) != identity:
        study.set_user_attr(IDENTITY_ATTR, identity)
    if check is not None and check.accepted:
        study.set_user_attr(ACCEPTED_ATTR, [*study.user_attrs.get(ACCEPTED_ATTR, []),
                                            *accepted_records(check, stored.n_trials)])
    if config.warm_start:  # known-good configurations first; never enqueued twice
        from tunelab.search.warm_start import enqueue_warm_start

        enqueue_warm_start(study, config.warm_start, config.search_space)
    study.set_user_attr("config", config.to_dict())
    study.set_user_attr("tracking_uri", tracking_uri)
    data_info = {"fingerprint": data.fingerprint(), "class_names": list(data.class_names),
                 "class_counts": data.class_counts(), "input_shape": list(data.input_shape)}
    if study.user_attrs.get("data_info") != {**data_info, "class_index": data.class_index}:
        # what `tunelab sync` needs to log a trial as the live run would have
        study.set_user_attr("data_info", {**data_info, "class_index": data.class_index})
    try:
        if not config.tracking:  # `tracking: false`: no MLflow at all
            raise _TrackingOff
        tracker = StudyTracker(tracking_uri, config.study_name)
        parent_run_id = tracker.start_study(config=config.to_dict(),
                                            space=config.search_space.to_yaml(),
                                            data_info=data_info,
                                            tags=accepted_tags(check) if check else None)
        study.set_user_attr("mlflow_parent_run_id", parent_run_id)
    except _TrackingOff:
        tracker = None
    except Exception as err:  # the study goes on; `tunelab sync` logs the trials later
        tracker = None
        print(f"tunelab: tracking at {tracking_uri} is unavailable ({type(err).__name__}: "
              f"{err}); the study goes on, its results stay in the Optuna storage; run "
              f"`tunelab sync --study-name {config.study_name}` once tracking is back",
              file=sys.stderr, flush=True)
    started = time.time()
    deadline = started + config.timeout if config.timeout else None
    n_trials = trial_budget(config)
    from tunelab.search import best_trial, counted_trials
    from tunelab.search.study import primary_value

    already = counted_trials(study)
    print(study_header(config, data, already, n_trials, tracking_uri), flush=True)
    best = best_trial(study)
    state = StudyState(study_name=config.study_name, metric=config.objective.metric,
                       direction=config.direction, max_epochs=trial_epochs(config),
                       n_trials=n_trials, timeout=config.timeout, started_at=started,
                       done=already, workers=config.workers,
                       best=(primary_value(best), best.number, dict(best.params))
                       if best is not None else None)
    display = make_display(state)
    status = "FINISHED"
    searching = search_deadline(config, deadline)  # confirmation's share of a timeout kept
    try:
        display.start()
        try:
            if config.engine == "keras-tuner":  # KerasTuner's search runs in this process
                run_keras_tuner_engine(study, config, data, tracker, searching, started,
                                       progress=display.handle)
            elif in_process:
                run_worker(study_name=config.study_name, storage=config.storage_url,
                           tracking_uri=tracking_uri, deadline=searching, started_at=started,
                           data=data, config=config, worker_index=0,
                           progress=display.handle, in_study_process=True)
            else:
                _run_worker_processes(
                    config, tracking_uri, searching, started, n_trials, display, standby,
                    on_last_trials=(lambda: warm_study_end(study, tracker)) if tracker else None)
        finally:
            display.stop()
            if quiet.verbose() and display.live:
                print(f"tunelab: display: {display.refreshes} redraws, "
                      f"{display.refresh_seconds:.3f} s, "
                      f"{100 * display.refresh_seconds / max(1e-9, time.time() - started):.2f}% "
                      "of the study's time", flush=True)
        # the top candidates measured again, here in the parent, within the budget (not
        # after a stop deferred past the last trial's end: KerasTuner's search returns then)
        from tunelab.signals import raise_if_stopped

        raise_if_stopped()
        confirm(study, config, data, deadline, tracker)
    except KeyboardInterrupt as interrupt:
        status = "KILLED"
        what = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"\ntunelab: {what}; finished trials are saved. Run the same command again "
              "to resume the study.", file=sys.stderr, flush=True)
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mark("study_end_start")
        end = study_end_report(study, config)  # the study's trials as the workers left them
        if tracker is not None:
            finish_tracking(study, tracker, status, config, end)
        mark("study_end")
    print_summary(study, config, tracking_uri, end)
    mark("tune_return")
    return study


def study_header(config: StudyConfig, data, already: int, n_trials: int | None,
                 tracking_uri: str) -> str:
    """What the study searches and where it is stored, in short lines."""
    families = getattr(config.search_space, "families", None)
    model = (f"models {', '.join(families())} (family search)" if callable(families)
             else config.model)
    budget = f"{already} of {n_trials} trials done" if n_trials else f"{already} trials done"
    if config.timeout:
        budget += f", timeout {config.timeout:g} s"
    return "\n".join([
        f"tunelab: study {config.study_name!r}: {model}; {budget}",
        f"  data {data.name}: {len(data.train)} train / {len(data.val)} validation images, "
        f"{data.n_classes} classes",
        f"  image size {data.info.get('image_size_rule', '?')}, "
        f"{data.input_shape[-1]} channel(s)",
        *([f"  {data.info['auto_rule']}"] if data.info.get("auto_rule") else []),
        f"  storage {config.storage_url}",
        f"  tracking {tracking_uri}"])


def _forward_events(read_fd: int, display, on_event=None) -> None:
    """The workers' events (JSON lines on one pipe) to the display (and ``on_event``)."""
    import json

    with os.fdopen(read_fd, encoding="utf-8", errors="replace") as events:
        for line in events:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if on_event is not None:
                on_event(event)
            display.handle(event)


def _forward_output(stream, display) -> None:
    """A worker's own stdout lines, printed by the display (above the live region)."""
    with stream:
        for line in stream:
            display.message(line)


def import_training_stack() -> None:
    """What training a trial needs: TensorFlow and Keras with every model family registered,
    Optuna, and the MLflow-free trial tracker (a standby worker's imports, and the
    confirmation's in ``tune``)."""
    import tunelab.models.training  # noqa: F401  TensorFlow, Keras
    import tunelab.search.confirm  # noqa: F401  Optuna
    import tunelab.tracking.remote  # noqa: F401  MLflow-free: the writer process loads it
    from tunelab.models import build_model  # noqa: F401  every model family registered


def _import_for_confirmation() -> None:
    """``import_training_stack`` in a thread; ``confirm`` then waits on the import lock if
    this has not finished."""
    from tunelab.models.timeline import mark

    mark("preload_start")
    try:
        import_training_stack()
    except Exception:  # noqa: S110  confirm's own import raises it where it matters
        pass
    mark("preload_done")


def warm_study_end(study, tracker) -> None:
    """While the search's last trials train: start this process's tracking writer and have
    it draw its share of the study end (``WRITER_FIGURES`` and the interactive page) on the
    trials so far, result discarded, so that at the study end it is running and its Plotly
    figure classes are built (a process's first page pays their construction). The workers'
    writers are gone by the study end: without it ``tune`` drew every figure and the page
    alone, on one core (benchmarks/study_end.py: the study end 1.59 s cold, 1.20 s warm).
    ``TUNELAB_WARM_STUDY_END=0`` turns it off (that benchmark's comparison)."""
    writer = getattr(tracker, "writer", None)
    if writer is None or os.environ.get("TUNELAB_WARM_STUDY_END", "1") == "0":
        return
    from tunelab.models.timeline import mark
    from tunelab.search.study_plots import WRITER_FIGURES, study_outputs_of

    try:
        writer.call(study_outputs_of, study.study_name, study.get_trials(deepcopy=False),
                    study.directions, study.user_attrs.get("config") or {},
                    WRITER_FIGURES).add_done_callback(lambda _: mark("study_end_warm_done"))
    except Exception:  # noqa: BLE001  the study end draws in this process then
        return
    mark("study_end_warm_start")


def _worker_environment() -> tuple[dict[str, str], list[str]]:
    """The environment every local worker starts from, and the GPUs its slots take."""
    from tunelab.gpus import visible_gpus

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    return env, visible_gpus()


class StandbyWorkers:
    """Worker processes started before their study exists: each imports what a worker needs
    (TensorFlow with the model families, Optuna), then waits for its command line on
    stdin (``tunelab worker --standby``). ``tune`` starts them first and launches them once
    the data is checked and the stores are set up, so the workers' imports overlap the
    parent's own start-up instead of following it. One never launched holds nothing (no
    study, no run, no file): ``close`` kills it."""

    def __init__(self, procs: dict[int, subprocess.Popen], pipe: tuple[int, int],
                 env_gpus: tuple[dict[str, str], list[str]]) -> None:
        self.procs = procs  # slot -> process not launched yet
        self.pipe: tuple[int, int] | None = pipe  # the events pipe they share
        self.env_gpus = env_gpus

    @classmethod
    def start(cls, n: int) -> StandbyWorkers:
        from tunelab.gpus import worker_env
        from tunelab.models.timeline import mark  # Keras-free
        from tunelab.signals import stop_signals_blocked

        env, gpus = _worker_environment()
        standby = cls({}, os.pipe(), (env, gpus))
        try:
            for slot in range(n):
                with stop_signals_blocked():  # until the worker's own handler is in place
                    standby.procs[slot] = subprocess.Popen(
                        [sys.executable, "-m", "tunelab", "worker", STANDBY_FLAG],
                        env=worker_env(env, slot, gpus), pass_fds=(standby.pipe[1],),
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                        errors="replace")
                mark("standby_spawned", child=standby.procs[slot].pid)
        except BaseException:
            standby.close()
            raise
        return standby

    def take_pipe(self) -> tuple[int, int]:
        """The events pipe's (read, write) ends, now the caller's to close."""
        pipe, self.pipe = self.pipe, None
        return pipe

    def launch(self, slot: int, args: list[str]) -> subprocess.Popen | None:
        """Hand slot's waiting process its command line (``worker ...``); None if none waits
        or the one waiting has died (the caller then starts a fresh worker)."""
        import json

        proc = self.procs.pop(slot, None)
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.stdin.write(json.dumps(args) + "\n")
                proc.stdin.close()
                return proc
        except OSError:  # it exited meanwhile
            pass
        # died while it waited (it held nothing: no trial, no run): a fresh worker instead,
        # whose own output says why if the cause was no accident
        self._discard(proc)
        return None

    @staticmethod
    def _discard(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Kill the ones never launched and close the pipe if nobody took it (idempotent)."""
        for proc in self.procs.values():
            self._discard(proc)
        self.procs.clear()
        if self.pipe is not None:
            for fd in self.take_pipe():
                os.close(fd)


#: ``tunelab worker --standby``: a worker that waits for its command line on stdin
STANDBY_FLAG = "--standby"


def start_writer() -> None:
    """Start this process's tracking writer (MLflow loads there, on another core)."""
    from tunelab.tracking.writer import shared_writer

    shared_writer().start()


def await_launch() -> list[str] | None:
    """A standby worker (``StandbyWorkers``): import what a worker needs, then read its
    command line (one JSON line) from stdin. None: stdin closed first (the ``tune`` process
    ended before it needed this worker). Its tracking writer starts only once it is
    launched: started beside the TensorFlow import, the writer's MLflow import slowed that
    import by 1.2 s (measured; this machine's two cores share their caches)."""
    import json

    from tunelab.models.timeline import mark  # Keras-free
    from tunelab.signals import raise_if_stopped, stops_deferred

    mark("standby_start")
    quiet.configure()  # as the worker's own main would, before the frameworks load
    # a stop during the imports (Ctrl-C while `tune` loads the data) waits for their end:
    # raised inside code that TensorFlow's C++ calls back, it would come out as another error
    with stops_deferred():
        import_training_stack()
    raise_if_stopped()
    mark("standby_ready")
    line = sys.stdin.readline()
    if not line.strip():
        return None
    mark("standby_launched")
    return json.loads(line)


def _run_worker_processes(config: StudyConfig, tracking_uri: str, deadline: float | None,
                          started: float, n_trials: int | None, display,
                          standby: StandbyWorkers | None = None,
                          on_last_trials: Callable[[], None] | None = None) -> None:
    """Keep ``config.workers`` worker processes busy until the budget is met; each exits
    after ``trials_per_process`` trials and is replaced by a fresh one. They send their
    trials' events to this process over one pipe; only this process draws."""
    import threading

    from tunelab.search import counted_trials
    from tunelab.signals import raise_if_stopped, stop_signals_blocked

    study = open_study(config, create=False)
    server = None
    if config.workers > 1 and tracking_uri.startswith("sqlite:"):
        # Several processes writing one SQLite file meet "database is locked": they talk to
        # one local tracking server instead, the only writer of the file.
        from tunelab.tracking import start_server

        server = start_server(backend_store_uri=tracking_uri)
        print(f"tunelab: {config.workers} workers log through a local tracking server at "
              f"{server.url}", flush=True)
        tracking_uri = server.url
    env, gpus = standby.env_gpus if standby is not None else _worker_environment()
    from tunelab.gpus import worker_env

    if gpus:
        print(f"tunelab: {len(gpus)} GPU(s) {','.join(gpus)}: worker slots take them in turn "
              "(CUDA_VISIBLE_DEVICES), with memory growth on", flush=True)
    spawned = 0
    command = [sys.executable, "-m", "tunelab", "worker", "--storage", config.storage_url,
               "--study-name", config.study_name, "--tracking-uri", tracking_uri,
               "--max-trials", str(config.trials_per_process), "--started-at", str(started)]
    if deadline is not None:
        command += ["--deadline", str(deadline)]
    # every worker's events (lines < PIPE_BUF); the standby workers hold its write end already
    read_fd, write_fd = standby.take_pipe() if standby is not None else os.pipe()
    command += ["--events-fd", str(write_fd)]
    started_trials: dict[int, int] = {}  # worker index -> trials it has started

    def on_event(event) -> None:
        if event.get("event") == "trial_started" and isinstance(event.get("worker"), int):
            started_trials[event["worker"]] = started_trials.get(event["worker"], 0) + 1

    readers = [threading.Thread(target=_forward_events, args=(read_fd, display, on_event),
                                name="tunelab-events", daemon=True)]
    readers[0].start()
    # The confirmation runs train in this process after the search: it imports TensorFlow
    # for them in the background once the search's last trials are under way, so that
    # import overlaps their training instead of following it.
    preload = threading.Thread(target=_import_for_confirmation, name="tunelab-preload",
                               daemon=True) if will_confirm(config) else None
    # process -> (slot, trials counted when it started, its worker index)
    running: dict[subprocess.Popen, tuple[int, int, int]] = {}
    successors: dict[subprocess.Popen, subprocess.Popen] = {}  # a recycled worker's next one
    idle_exits = 0

    def spawn(slot: int, counted: int, after: subprocess.Popen | None = None):
        nonlocal spawned
        extra = ["--worker-index", str(spawned)]
        if after is not None:
            extra += ["--after-pid", str(after.pid)]
        proc = standby.launch(slot, command[3:] + extra) if (
            standby is not None and after is None) else None
        if proc is None:
            with stop_signals_blocked():  # until the worker's own handler is in place
                proc = subprocess.Popen(command + extra, env=worker_env(env, slot, gpus),
                                        pass_fds=(write_fd,), stdout=subprocess.PIPE,
                                        text=True, errors="replace")
        readers.append(threading.Thread(target=_forward_output,
                                        args=(proc.stdout, display), daemon=True))
        readers[-1].start()
        running[proc] = (slot, counted, spawned)
        spawned += 1
        return proc

    try:
        while True:
            counted = counted_trials(study)
            done = n_trials is not None and counted >= n_trials
            late = deadline is not None and time.time() >= deadline
            busy = {slot for slot, _, _ in running.values()}
            while not done and not late and len(busy) < config.workers:
                # a free slot: slots map onto GPUs, so each GPU runs one worker at a time
                slot = min(set(range(config.workers)) - busy)
                spawn(slot, counted)
                busy.add(slot)
            if not running:
                return
            last_ones = ((n_trials is not None and n_trials - counted <= config.workers)
                         or (deadline is not None and deadline - time.time() < 45))
            if preload is not None and preload.ident is None and last_ones:
                preload.start()
            if on_last_trials is not None and last_ones and started_trials:
                # once a trial trains: not beside the workers' TensorFlow imports
                on_last_trials()
                on_last_trials = None
            if config.overlap_recycle:
                # A worker training its last trial gets its successor now: the successor
                # imports TensorFlow and loads the data meanwhile, and starts training the
                # moment its predecessor exits (issue #21: recycles off the critical path).
                # A worker of 4 or more trials gets it at its second-to-last trial already
                # (a loaded machine's start-up outlasts a short trial). Not when the trials
                # the workers still have to run may finish the budget, nor near the
                # deadline: then the successor would be started for nothing.
                lead = 2 if config.trials_per_process >= 4 else 1
                for proc, (slot, _, index) in list(running.items()):
                    left = config.trials_per_process - started_trials.get(index, 0)
                    more = (n_trials is None or counted + len(busy) + left < n_trials) and (
                        deadline is None or deadline - time.time() > 30)
                    if (more and left < lead and proc not in successors
                            and proc not in successors.values() and proc.poll() is None):
                        successors[proc] = spawn(slot, counted, after=proc)
            time.sleep(0.5)
            raise_if_stopped()  # a stop whose interrupt a finalizer swallowed
            for proc in [p for p in running if p.poll() is not None]:
                _, before, _ = running.pop(proc)
                successors.pop(proc, None)
                if proc.returncode in STOPPED_CODES:  # someone stopped that worker: stop all
                    raise (Terminated if proc.returncode in (143, -15) else KeyboardInterrupt)(
                        f"a tunelab worker was stopped (exit code {proc.returncode})")
                if proc.returncode != 0:
                    raise RuntimeError(f"a tunelab worker exited with code {proc.returncode}; "
                                       "see its output above" + died_importing(proc.pid))
                progressed = counted_trials(study) > before
                idle_exits = 0 if progressed else idle_exits + 1
            if idle_exits > 2 * config.workers:
                raise RuntimeError("workers keep finishing without completing any trial; every "
                                   "trial failed, see the reasons above")
    except KeyboardInterrupt as interrupt:
        _stop_workers(running, interrupt)
        from tunelab.search.liveness import fail_orphans_of_stop

        kind = "Terminated" if isinstance(interrupt, Terminated) else "KeyboardInterrupt"
        orphans = fail_orphans_of_stop(study, f"{kind}: stopped; its worker exited before "
                                              "it recorded the trial's end")
        if orphans:
            print(f"tunelab: trial(s) {', '.join(map(str, orphans))} marked failed: the stop "
                  "caught their worker before it recorded them", file=sys.stderr, flush=True)
        raise
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        if standby is not None:  # the ones never launched hold the pipe's write end too
            standby.close()
        os.close(write_fd)  # the readers end once every worker's copy is closed too
        for reader in readers:
            reader.join(timeout=5)
        if server is not None:
            server.stop()


def died_importing(pid: int) -> str:
    """The stderr a worker held while it imported TensorFlow, if it died there (an abort
    of TensorFlow's, an unsupported CPU): quiet mode had kept it off the terminal."""
    held = quiet.held_stderr_path(pid)
    try:
        text = held.read_text(errors="replace").strip()
        held.unlink()
    except OSError:
        return ""
    return f"; it died importing TensorFlow, which printed:\n{text}" if text else ""


STOPPED_CODES = (130, 143, -2, -15)  # a worker that exited after Ctrl-C or SIGTERM


def _stop_workers(running, interrupt: BaseException, timeout: float = 60.0,
                  repeat: float = 25.0) -> None:
    """Pass the stop signal on to every worker process this one started (the ones it knows
    of and any that ``Popen`` had forked when the signal landed: a signal that reaches a
    child between fork and exec is lost there), then wait for them to record their trials'
    ends; a worker still alive after ``timeout`` is killed (its trial is failed by the next
    process that checks the budget). Workers ignore the copies of a signal they already got."""
    import signal

    import psutil

    signum = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
    pids = {p.pid for p in running}
    try:  # also a worker whose Popen was interrupted before it returned
        pids |= {c.pid for c in psutil.Process().children()
                 if "worker" in c.cmdline() and "tunelab" in " ".join(c.cmdline())}
    except psutil.Error:
        pass
    alive = []
    for pid in pids:
        try:
            alive.append(psutil.Process(pid))
        except psutil.Error:
            pass
    until = time.time() + timeout
    while alive and time.time() < until:  # again every `repeat` s: one may be swallowed
        for child in alive:
            try:
                child.send_signal(signum)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=min(repeat, max(0.1, until - time.time())))
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    for proc in running:  # reap them
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def run_worker(*, study_name: str, storage: str, tracking_uri: str | None = None,
               max_trials: int | None = None, deadline: float | None = None,
               started_at: float | None = None, data=None, config: StudyConfig | None = None,
               worker_index: int | None = None, events_fd: int | None = None,
               progress=None, after_pid: int | None = None,
               in_study_process: bool = False) -> str:
    """Join a study and run its trials until the budget is met (any number of these may run
    at once, on any machines that reach the storage). Returns why it stopped.

    Its trials' events go to ``progress`` (a callable), else as JSON lines to ``events_fd``
    (the pipe of the ``tune`` process that started it), else to a display of its own.

    ``after_pid``: a recycled worker's successor, started while that worker trains its last
    trial; it imports TensorFlow, loads the data and opens the stores, then waits for that
    process to exit before it asks for a trial (one trainer per slot at a time).

    ``in_study_process``: the trials run inside ``tune`` (``in_process``), whose study end
    waits for the tracking writer itself, after drawing the study plots meanwhile."""
    import logging

    from tunelab.search import run_trials
    from tunelab.search.study import stored_user_attrs

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # per-trial retracing notices

    if config is None:
        raw = stored_user_attrs(storage, study_name).get("config")
        if raw is None:
            raise ConfigError(f"study {study_name!r} in {storage} has no tunelab config; "
                              "start it with `tunelab tune`")
        config = config_from_dict(raw)
    config = dataclasses.replace(config, storage=storage)
    tracker = None
    if config.tracking:  # MLflow loads in the writer while this process opens the study
        start_writer()

    def on_stale(trial) -> None:
        print(f"tunelab: trial {trial.number} stopped sending heartbeats (its worker died); "
              "marked failed and retried once", flush=True)
        on_dead(trial, "its worker stopped sending heartbeats")

    def on_dead(trial, reason: str) -> None:  # a dead process's trial: end its run FAILED
        if tracker is not None and trial.user_attrs.get("mlflow_run_id"):
            tracker.mark_failed(trial.user_attrs["mlflow_run_id"], reason)

    if worker_index is None:  # a worker started by hand, maybe on another machine
        worker_index = os.getpid()
    study = open_study(config, create=False, on_stale=on_stale, worker_index=worker_index)
    data = data if data is not None else load_data(config)
    from tunelab.models.timeline import mark

    mark("data_loaded")
    uri = tracking_uri or study.user_attrs.get("tracking_uri") or config.resolved_tracking_uri
    if config.tracking:
        # MLflow-free here: the writer process creates the runs (and reports a tracking
        # store that is down, once; the trials go on)
        from tunelab.tracking.remote import RemoteTracker

        tracker = RemoteTracker(uri, study_name,
                                parent_run_id=study.user_attrs.get("mlflow_parent_run_id"))

    n_trials = trial_budget(config)
    display = None
    if progress is None and events_fd is not None:
        from tunelab.search import EventWriter

        progress = EventWriter(events_fd)
    elif progress is None:  # a worker started by hand shows its own trials
        from tunelab.search import counted_trials

        display = make_display(StudyState(
            study_name=study_name, metric=config.objective.metric,
            direction=config.direction, max_epochs=trial_epochs(config), n_trials=n_trials,
            timeout=config.timeout, started_at=started_at or time.time(),
            done=counted_trials(study)))
        progress = display.handle
    objective = make_objective(config, data, tracker, n_trials, started_at,
                               progress=progress, worker=worker_index)
    if display is not None:
        display.start()
    try:
        if after_pid is not None:  # inside: a stop while waiting detaches the writer too
            wait_for_exit(after_pid)
            mark("predecessor_exited")
        return run_trials(study, objective, n_trials=n_trials, max_trials_here=max_trials,
                          deadline=deadline, heartbeat_interval=config.heartbeat_interval,
                          on_dead=on_dead)
    except KeyboardInterrupt:
        if tracker is not None:  # exit now; the writer (own session) finishes what it has
            tracker.detach()
            tracker = None
        raise
    finally:
        if display is not None:
            display.stop()
        if tracker is not None and not in_study_process:
            # the last trial's figures and run end, drawn in the background (the study's
            # own process draws its study plots meanwhile: finish_tracking waits for both)
            tracker.flush()
        # which frameworks this process loaded (MLflow belongs to its writer process alone)
        mark("worker_exit", frameworks=sorted(
            m for m in ("tensorflow", "optuna", "mlflow", "sklearn", "pandas", "matplotlib")
            if m in sys.modules))


def wait_for_exit(pid: int, poll: float = 0.05) -> None:
    """Wait until process ``pid`` has exited (a zombie its parent has not reaped yet counts
    as exited). Ctrl-C interrupts the wait."""
    import psutil

    from tunelab.signals import raise_if_stopped

    born = psutil.Process().create_time()  # the predecessor was alive, unreaped, then
    while True:
        raise_if_stopped()
        try:
            process = psutil.Process(pid)
            # a younger process with that pid: the predecessor exited and the pid was reused
            if process.status() == psutil.STATUS_ZOMBIE or process.create_time() > born:
                return
        except psutil.Error:
            return
        time.sleep(poll)


class _TrackingOff(Exception):
    pass


def run_keras_tuner_engine(study, config: StudyConfig, data, tracker, deadline: float | None,
                           started_at: float | None, progress=None) -> str:
    """``engine: keras-tuner``: KerasTuner searches the space; trials land in the same Optuna
    study and MLflow runs as the Optuna engine's (search/keras_tuner_engine.py)."""
    import logging

    from tunelab.search.keras_tuner_engine import (
        EngineError,
        KerasTunerSettings,
        default_directory,
        run_keras_tuner,
    )

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    kt = config.keras_tuner
    settings = KerasTunerSettings(
        kind=kt.kind, max_epochs=config.max_epochs, factor=kt.factor,
        hyperband_iterations=kt.hyperband_iterations, num_initial_points=kt.num_initial_points,
        directory=kt.directory or default_directory(config.storage_url, config.study_name))
    objective = make_objective(config, data, tracker, trial_budget(config), started_at,
                               progress=progress)
    try:
        return run_keras_tuner(study, objective, settings, deadline=deadline)
    except EngineError as err:
        raise ConfigError(str(err)) from None


def finish_tracking(study, tracker, status: str, config: StudyConfig, end=None) -> None:
    """The parent run's end: study plots, the summary, the Pareto front when there is one."""
    from tunelab.search import close_all, study_figures
    from tunelab.search.study_plots import (
        WRITER_FIGURES,
        figure_order,
        interactive_page,
        png_bytes,
        study_outputs_of,
        top_rows,
    )
    from tunelab.tracking.plots import pareto_front

    end = end or study_end_report(study, config)
    figures: dict = {}
    notes: list[str] = []
    page = None
    if status != "KILLED":  # interrupted: exit within seconds; drawn at the next study end
        # the tracking writer draws the Plotly page and WRITER_FIGURES on the other core
        # while this process draws and encodes the rest (1.0 s of a study's end, measured,
        # when this process drew them all; the writer also has the last trial's figures to
        # draw then) when that writer already runs (trials in this process): starting one
        # here costs its MLflow, Optuna and Plotly imports, 2 s, more than it saves
        writer = getattr(tracker, "writer", None)
        job = None
        if writer is not None and writer.running:
            try:
                job = writer.call(study_outputs_of, study.study_name,
                                  study.get_trials(deepcopy=False), study.directions,
                                  study.user_attrs.get("config") or {}, WRITER_FIGURES)
            except Exception:  # noqa: BLE001  the writer is gone: all drawn here
                job = None
        figures, notes = study_figures(study, skip=WRITER_FIGURES if job else ())
        figures = {name: png_bytes(fig) for name, fig in figures.items()}  # while it draws
        close_all()
        try:
            pngs, png_notes, page, page_notes = job.result() if job else ({}, [], None, None)
        except Exception:  # noqa: BLE001  the writer is gone: drawn here instead
            pngs, png_notes, page, page_notes = {}, [], None, None
        if job and page_notes is None:  # its figures too, and only those
            pngs, png_notes = study_figures(study, skip=[
                n for n in figure_order(study) if n not in WRITER_FIGURES])
            png_notes = [n for n in png_notes if n not in notes]
        if page_notes is None:
            page, page_notes = interactive_page(study)  # Plotly, drawn once per study
        drawn = {**figures, **pngs}
        figures = {name: drawn[name] for name in figure_order(study) if name in drawn}
        notes += png_notes + page_notes
    if end["pareto_points"] and status != "KILLED":
        figures["pareto_front"] = pareto_front(
            end["pareto_points"], metric=config.objective.metric, direction=config.direction,
            gap_tolerance=config.objective.gap_tolerance, chosen=end["chosen"],
            title=f"study {config.study_name}: Pareto front of {config.objective.metric} "
                  "and the overfitting gap")
    from tunelab.search.study import ended_trials

    tracker.flush()  # the trials' own run ends first
    tracker.end_stray_runs(ended_trials(study))
    tracker.finish_study(status=status, figures=figures, summary=end["summary"], notes=notes,
                         html={"interactive": page} if page else None,
                         top=top_rows(study), config=config.to_dict())
    close_all()


def study_end_report(study, config: StudyConfig) -> dict[str, Any]:
    """``search.study.study_end`` with the study's own selection rule (computed once)."""
    from tunelab.search.study import study_end

    selection = study_selection(study, config)
    end = study_end(study, selection)
    end["selection"] = selection
    if selection.chosen is not None:
        end["summary"]["selected_trial"] = selection.chosen.number
        end["summary"]["selection_method"] = config.selection.method
    return end


def print_summary(study, config: StudyConfig, tracking_uri: str, end=None) -> None:
    import shutil

    end = end or study_end_report(study, config)
    counts, best, multi, front = end["summary"], end["best"], end["multi"], set(end["front"])
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else None
    print(f"\nstudy {study.study_name!r}: {counts['n_complete']} complete, "
          f"{counts['n_pruned']} pruned, {counts['n_fail']} failed")
    if best is None:
        print("no trial completed")
    else:
        where = f" (selected on the Pareto front of {len(front)} trial(s))" if multi else ""
        print(f"best trial: #{best.number}  {config.objective.metric} = {best.values[0]:.4f}"
              + (f", overfitting gap {best.values[1]:.4f}" if multi else "") + where)
        for key, value in best.params.items():
            print(f"  {key}: {short(value)}")
        top = end["top"]
        # only what differs among the top trials: the rest is the best trial's, above
        varying = [k for k in best.params
                   if len({short(t.params.get(k)) for t in top}) > 1] or list(best.params)
        rows = []
        for t in top:
            s = t.user_attrs.get("summary", {})
            rows.append([t.number, t.values[0], s.get("gap_accuracy"), s.get("best_epoch"),
                         s.get("epochs_trained"),
                         *(["yes" if t.number in front else ""] if multi else []),
                         " ".join(f"{param_name(k)}={short(t.params[k])}" for k in varying
                                  if k in t.params)])
        print(f"\ntop {len(rows)} trials")
        lines = table(["trial", config.objective.metric, "gap", "best ep", "epochs",
                       *(["Pareto front"] if multi else []), "params"], rows).splitlines()
        print("\n".join(line if width is None or len(line) <= width else
                        line[:width - 1] + "…" for line in lines))
    selection = end.get("selection")
    if selection is not None and best is not None:
        text = selection.explanation()
        if width is not None:  # a terminal: wrapped to it, continuation lines indented
            import textwrap

            text = textwrap.fill(text, width=width - 1, subsequent_indent="    ",
                                 break_on_hyphens=False)
        print(f"\n{text}")
    print(f"\nbrowse the runs: {server_hint(tracking_uri, study.study_name)}", flush=True)


def server_hint(tracking_uri: str, study_name: str | None = None) -> str:
    """The command that opens this study's runs in the MLflow UI, and the link that opens
    the study's runs table in model-training mode (see tunelab.tracking.ui)."""
    from tunelab.tracking import ui
    from tunelab.tracking.store import experiment_id_of

    experiment_id = experiment_id_of(tracking_uri, study_name) if study_name else None
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {ui.runs_url(tracking_uri, experiment_id)} in a browser"
    default = Path(DEFAULT_TRACKING_URI.removeprefix("sqlite:///")).expanduser().resolve()
    command = ("tunelab server" if tracking_uri == f"sqlite:///{default}"
               else f"tunelab server --backend-store-uri {tracking_uri}")
    return f"{command}\n  then open {ui.runs_url('http://127.0.0.1:5000', experiment_id)}"
