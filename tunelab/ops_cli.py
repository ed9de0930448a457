"""Commands for running tunelab as a service: server, sync, studies."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tunelab.config import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, ConfigError, config_from_dict

COMMANDS = ("server", "sync", "studies")


def add_parsers(sub: Any) -> None:
    server = sub.add_parser("server", help="start the MLflow UI (tracking server) and "
                            "optuna-dashboard",
                            description="An MLflow tracking server (UI, REST API, artifact "
                            "serving) on the local ./mlruns store or a database, and "
                            "optuna-dashboard on the study storage; each link is printed "
                            "once it answers.")
    server.add_argument("--backend-store-uri", default=DEFAULT_TRACKING_URI,
                        help="the MLflow store: sqlite:///... or postgresql://...")
    server.add_argument("--artifacts-destination",
                        help="where artifacts go (default: artifacts/ beside the SQLite file)")
    server.add_argument("--host", default="127.0.0.1",
                        help="interface to bind; anything but loopback needs --allowed-hosts")
    server.add_argument("--port", type=int, default=5000, help="port of the UI and REST API")
    server.add_argument("--allowed-hosts", help="Host header values clients use, comma-separated "
                        "(default: none; required when binding beyond loopback)")
    server.add_argument("--cors-allowed-origins", help="allowed CORS origins, comma-separated "
                        "(default: http:// + each allowed host)")
    server.add_argument("--storage", default=DEFAULT_STORAGE,
                        help="the Optuna storage optuna-dashboard shows (default: "
                             "mlruns/optuna.journal; or a database URL)")
    server.add_argument("--no-dashboard", action="store_true",
                        help="serve the MLflow UI only")
    server.add_argument("--dashboard-port", type=int, default=8080,
                        help="port of optuna-dashboard")
    server.add_argument("--dashboard-host", default="127.0.0.1",
                        help="interface optuna-dashboard binds (default 127.0.0.1; it has no "
                             "login and can delete studies)")
    server.add_argument("--access-log", action="store_true",
                        help="log every HTTP request (off: the UI makes hundreds a minute)")

    sync = sub.add_parser("sync", help="log to MLflow every trial missing there",
                          description="Log to MLflow every finished trial of a study that is "
                          "missing there (tracking was down), never duplicating a run.")
    _study_args(sync)
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's own)")

    studies = sub.add_parser("studies", help="list, delete or export studies",
                             description="List the studies of a storage, delete one (with "
                             "--runs: its MLflow runs too) or export its trials as CSV.")
    studies.add_argument("action", nargs="?", choices=("list", "delete", "export"),
                         default="list", help="what to do")
    studies.add_argument("name", nargs="?", help="the study (delete, export)")
    studies.add_argument("--storage", default=DEFAULT_STORAGE,
                         help="Optuna storage: a journal file path or a database URL")
    studies.add_argument("--runs", action="store_true",
                         help="delete: also delete the study's MLflow experiment, runs and "
                              "artifacts")
    studies.add_argument("--output", "-o", help="export: CSV file (default: standard output)")


def _study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study-name", required=True, help="the study (required)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help="Optuna storage: a journal file path or a database URL")


def run(args: argparse.Namespace) -> int:
    return {"server": _server, "sync": _sync, "studies": _studies}[args.command](args)


def _server(args: argparse.Namespace) -> int:
    import signal
    from pathlib import Path

    from tunelab.search.study import RDB_PREFIXES
    from tunelab.tracking import server_command
    from tunelab.tracking.server import dashboard_command, serve

    try:
        command = server_command(backend_store_uri=args.backend_store_uri, host=args.host,
                                 port=args.port, artifacts_destination=args.artifacts_destination,
                                 allowed_hosts=args.allowed_hosts,
                                 cors_origins=args.cors_allowed_origins,
                                 access_log=args.access_log)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    dashboard = dashboard_url = None
    if not args.no_dashboard:
        storage, storage_class = args.storage, None
        if not storage.startswith(RDB_PREFIXES):  # tunelab's journal file (journal:PATH)
            path = Path(storage.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            storage, storage_class = str(path), "JournalFileStorage"
        dashboard = dashboard_command(storage, storage_class=storage_class,
                                      host=args.dashboard_host, port=args.dashboard_port,
                                      access_log=args.access_log)
        if dashboard is None:
            print("tunelab: optuna-dashboard is not installed (pip install "
                  "'tunelab[dashboard]'); serving the MLflow UI only", flush=True)
        else:
            host = "127.0.0.1" if args.dashboard_host in ("0.0.0.0", "::") else (
                args.dashboard_host)
            dashboard_url = f"http://{host}:{args.dashboard_port}"
    from tunelab import quiet

    # the servers' start-up (and, with --access-log, request) lines only with -v or
    # --access-log; otherwise only what says something went wrong
    loud = quiet.verbose() or args.access_log

    def stop_on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # Ctrl-C stops it whatever the inherited disposition: a server started as a background
    # job of a non-interactive shell (`tunelab server &` in a script) inherits SIGINT ignored,
    # and Python then raises no KeyboardInterrupt (as `tune` and `worker` handle it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # each in its own process group, stopped as a whole: MLflow's server starts uvicorn and
    # job consumers that outlive it when only the server process is signalled
    return serve(mlflow_command=command, mlflow_url=f"http://{shown}:{args.port}",
                 dashboard=dashboard, dashboard_url=dashboard_url, storage=args.storage,
                 errors_only=None if loud else _server_errors)


def _server_errors(stream, what: str = "server") -> None:
    """Pass on only what says something went wrong (a traceback and what follows it)."""
    import re

    failing = False
    for line in stream:
        failing = failing or bool(re.search(r"Traceback|\b(ERROR|CRITICAL)\b|Error:", line))
        if failing:
            print(f"tunelab: {what}: {line.rstrip()}", file=sys.stderr, flush=True)


def _open(storage: str, name: str):
    from tunelab.search import open_study

    try:
        return open_study(storage=storage, study_name=name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _sync(args: argparse.Namespace) -> int:
    from tunelab.search.study import finished_trial_records
    from tunelab.tracking import StudyTracker
    from tunelab.tracking.sync import sync_trials

    study = _open(args.storage, args.study_name)
    raw = study.user_attrs.get("config") or {}
    uri = args.tracking_uri or study.user_attrs.get("tracking_uri")
    if not uri:
        raise ConfigError(f"study {args.study_name!r} records no tracking URI; pass "
                          "--tracking-uri")
    config = config_from_dict(raw)
    data_info = study.user_attrs.get("data_info") or {}  # recorded by `tunelab tune`
    try:
        tracker = StudyTracker(uri, args.study_name,  # in this process: it reports failures
                               parent_run_id=study.user_attrs.get("mlflow_parent_run_id"),
                               background=False)
        if tracker.parent.run_id is None:  # tracking was down when the study started
            parent = tracker.start_study(config=raw, space=config.search_space.to_yaml(),
                                         data_info=data_info)
            study.set_user_attr("mlflow_parent_run_id", parent)
        logged = sync_trials(tracker, finished_trial_records(study), config=raw,
                             data_info=data_info)
        status, summarized = tracker.parent_state()
    except RuntimeError:
        raise
    except Exception as err:  # MlflowException, connection errors: name the store
        raise RuntimeError(f"tracking at {uri} is still unavailable ({type(err).__name__}: "
                           f"{err})") from None
    print(f"tunelab: logged {len(logged)} trial(s) to {tracker.tracking_uri}"
          + (f": {', '.join(map(str, logged))}" if logged else "; every trial was already there"))
    if logged or status == "RUNNING" or not summarized:
        # the parent run ends as a live study's does: study plots, best trial, FINISHED (an
        # interrupted study's KILLED or FAILED stays)
        from tunelab.tuning import finish_tracking

        finish_tracking(study, tracker, "FINISHED" if status in (None, "RUNNING") else status,
                        config)
        if tracker.parent.broken:
            raise RuntimeError(f"finishing the study's parent run at {uri} failed; see the "
                               "error above")
        print(f"tunelab: finished the study's parent run {tracker.parent.run_id} with its "
              "study plots and best_trial.json")
    return 0


def _studies(args: argparse.Namespace) -> int:
    from tunelab.search.study import delete_study, study_overview
    from tunelab.text_table import table

    if args.action == "list":
        rows = [[row["name"], row["n_trials"], row["best"], row["tracking_uri"] or "-"]
                for row in study_overview(args.storage)]
        print(table(["study (= MLflow experiment)", "trials", "best", "tracking"], rows)
              if rows else f"no study in {args.storage}")
        return 0
    if not args.name:
        raise ConfigError(f"studies {args.action}: name the study")
    study = _open(args.storage, args.name)
    if args.action == "export":
        frame = study.trials_dataframe()
        if args.output:
            frame.to_csv(args.output, index=False)
            print(f"tunelab: wrote {len(frame)} trials to {args.output}")
        else:
            frame.to_csv(sys.stdout, index=False)
        return 0
    uri = study.user_attrs.get("tracking_uri")
    delete_study(args.storage, args.name)
    print(f"tunelab: deleted study {args.name!r} from {args.storage}")
    if args.runs and uri:
        from tunelab.tracking.store import delete_experiment

        print(delete_experiment(uri, args.name))
    return 0
