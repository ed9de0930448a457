"""The command line: parse, then call the library functions that notebooks call too."""

from __future__ import annotations

import argparse
import os
import sys

from tunelab import __version__, data_cli, model_cli, ops_cli, quiet
from tunelab.config import ConfigError
from tunelab.help_format import HelpFormatter

START_WITH = """start with:
  tunelab tune      run the default study (digits, 20 trials, into ./mlruns)
  tunelab best      rank its trials and say which one to trust
  tunelab server    browse every trial's curves and plots in the MLflow UI"""

TUNE_FLAGS = {  # flag -> (config key, type, help)
    "--dataset": ("dataset.source", str, "'digits', a MedMNIST-style .npz, an image folder, "
                  "a CIFAR-10 folder or a CSV of path,label"),
    "--model": ("model", str, "a registered model: lenet, alexnet, vgg16, resnet, mlp, ..."),
    "--n-trials": ("n_trials", int, "trials in the whole study"),
    "--timeout": ("timeout", float, "seconds for the whole study"),
    "--max-epochs": ("max_epochs", int, "epochs per trial at most"),
    "--study-name": ("study_name", str, "the study to create or resume (default: "
                     "<dataset>-<model> from the dataset's file or folder name and the model, "
                     "e.g. breastmnist-lenet, or <dataset>-search for a family search; "
                     "digits-lenet for the embedded default)"),
    "--storage": ("storage", str, "Optuna storage: a journal file path or a database URL"),
    "--tracking-uri": ("tracking_uri", str, "MLflow tracking URI (sqlite:///... or http://...)"),
    "--seed": ("seed", int, "base random seed; trial N uses seed + N"),
    "--image-size": ("dataset.image_size", lambda v: v if v in ("auto", "native") else int(v),
                     "square side in pixels, 'native' (keep the size) or 'auto' (native for "
                     ".npz and CIFAR-10, 16 for digits, folders: median capped at 128)"),
    "--workers": ("workers", int, "local worker processes running trials at once"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunelab", description="Hyperparameter search for Keras image classifiers, "
        "tracked in MLflow.", epilog=START_WITH, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"tunelab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the frameworks' own logs and warnings (TensorFlow, "
                        "MLflow, Optuna), in this command and the processes it starts")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_SubParser)
    tune = sub.add_parser("tune", help="run or resume a tuning study",
                          description="Run a study from a YAML file (or the embedded default: "
                          "digits, stores under ./mlruns); flags override the file.")
    tune.add_argument("config", nargs="?",
                      help="study YAML file (default: the embedded digits/LeNet study)")
    for flag, (key, kind, text) in TUNE_FLAGS.items():
        tune.add_argument(flag, type=kind,
                          help=f"{text} (default: the study file's {key})")
    tune.add_argument("--in-process", action="store_true",
                      help="run trials in this process instead of recycled worker processes")
    tune.add_argument("--print-config", action="store_true",
                      help="print the resolved config (for an existing study: its stored "
                      "config with the keys given here on top) and exit without training")
    tune.add_argument("--accept-change", action="append", default=[], metavar="KEY",
                      help="resuming a study whose data, model, space, objective, image "
                      "size, colour mode, cv_folds, engine or another key (seed, sampler, "
                      "...) would change is refused, naming each difference; accept an "
                      "intended change of KEY (data, model, space, objective.metric, ...; "
                      "repeatable), recorded in the study and on its parent run")

    worker = sub.add_parser("worker", help="join an existing study and run its trials",
                            description="Join a study that `tunelab tune` created and run "
                            "its trials until its budget is met; start as many as you like, "
                            "on any machine that reaches the storage.")
    worker.add_argument("--storage", required=True,
                        help="the study's Optuna storage: a journal file path or a database "
                        "URL (postgresql://...)")
    worker.add_argument("--study-name", required=True, help="the study to join")
    worker.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the "
                        "study recorded when `tunelab tune` created it)")
    worker.add_argument("--max-trials", type=int,
                        help="exit after this many trials (default: run until the budget is "
                        "met)")
    worker.add_argument("--events-fd", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    worker.add_argument("--started-at", type=float, help=argparse.SUPPRESS)
    worker.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--after-pid", type=int, help=argparse.SUPPRESS)
    model_cli.add_parsers(sub)
    ops_cli.add_parsers(sub)
    data_cli.add_parsers(sub)
    return parser


class _SubParser(argparse.ArgumentParser):
    """Every subcommand's help shows the defaults (``HelpFormatter``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def entry() -> None:
    """The ``tunelab`` command (and ``python -m tunelab``): ``main``, then a fast exit."""
    exit_now(main())


def exit_now(code: int) -> None:
    """Exit with ``code`` once everything is written, without the interpreter's teardown.

    With TensorFlow loaded, Python's own exit (freeing every module, TensorFlow's thread
    pools and graphs) took 6 to 7 s on a loaded 2-core machine after the command had done
    everything it had to: the seconds between a worker's last trial and its successor's
    start, and most of the time from Ctrl-C to the prompt. The atexit handlers still run
    (the tracking writer's close, logging's flush); a non-daemon thread still running keeps
    the normal exit, which waits for it."""
    import atexit
    import threading

    if "tensorflow" not in sys.modules or any(
            not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    atexit._run_exitfuncs()
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["worker", "--standby"]:  # started by `tune` before its study is ready
        from tunelab.signals import exit_code
        from tunelab.tuning import await_launch

        try:
            launched = await_launch()
        except KeyboardInterrupt as interrupt:
            return exit_code(interrupt)
        if launched is None:
            return 0
        argv = launched
    args = build_parser().parse_args(argv)
    quiet.configure(args.verbose)  # before TensorFlow, absl or MLflow load (Optuna has)
    from tunelab.signals import (
        STOPPABLE_COMMANDS,
        exit_code,
        handle_stop_signals,
        stop_handlers_installed,
    )

    if args.command in STOPPABLE_COMMANDS and not stop_handlers_installed():
        handle_stop_signals()  # SIGTERM is handled like Ctrl-C (exit 143); the CLI's
        # entry has installed them already (``stop_handlers_early``): a stop since stays
    try:
        if args.command == "tune":
            return _tune(args)
        if args.command == "worker":
            from tunelab.tuning import run_worker

            run_worker(study_name=args.study_name, storage=args.storage,
                       tracking_uri=args.tracking_uri, max_trials=args.max_trials,
                       deadline=args.deadline, started_at=args.started_at,
                       worker_index=args.worker_index, events_fd=args.events_fd,
                       after_pid=args.after_pid)
            return 0
        if args.command in model_cli.COMMANDS:
            return model_cli.run(args)
        if args.command in ops_cli.COMMANDS:
            return ops_cli.run(args)
        if args.command in data_cli.COMMANDS:
            return data_cli.run(args)
    except ConfigError as err:
        print(f"tunelab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C: 130; SIGTERM: 143
        return exit_code(interrupt)
    except RuntimeError as err:
        print(f"tunelab: error: {err}", file=sys.stderr)
        return 1
    return 1


def _tune(args: argparse.Namespace) -> int:
    overrides = {key: getattr(args, flag[2:].replace("-", "_"))
                 for flag, (key, _, _) in TUNE_FLAGS.items()}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.print_config:
        from tunelab.tuning import resolve_study

        config, _ = resolve_study(args.config, overrides)
        print(config.to_yaml(), end="")
        return 0
    from tunelab.tuning import tune

    # the file and the flags, not a resolved config: a resumed study takes the keys they do
    # not set from its stored config
    tune(args.config, in_process=args.in_process, accept_changes=args.accept_change,
         **overrides)
    return 0
