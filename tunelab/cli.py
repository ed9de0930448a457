"""The command line: parse, then call the library functions that notebooks call too."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tunelab import data_cli, model_cli, ops_cli  # noqa: E402
from tunelab.config import ConfigError  # noqa: E402

TUNE_FLAGS = {  # flag -> (config key, type, help)
    "--dataset": ("dataset.source", str, "'digits', a MedMNIST-style .npz, an image folder, "
                  "a CIFAR-10 folder or a CSV of path,label"),
    "--model": ("model", str, "a registered model: lenet, alexnet, vgg16, resnet, mlp, ..."),
    "--n-trials": ("n_trials", int, "trials in the whole study"),
    "--timeout": ("timeout", float, "seconds for the whole study"),
    "--max-epochs": ("max_epochs", int, "epochs per trial at most"),
    "--study-name": ("study_name", str, "the study to create or resume"),
    "--storage": ("storage", str, "Optuna storage: a journal file path or a database URL"),
    "--tracking-uri": ("tracking_uri", str, "MLflow tracking URI (sqlite:///... or http://...)"),
    "--seed": ("seed", int, "base random seed; trial N uses seed + N"),
    "--workers": ("workers", int, "local worker processes running trials at once"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunelab", description="Hyperparameter search for Keras image classifiers, "
        "tracked in MLflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    tune = sub.add_parser("tune", help="run or resume a tuning study",
                          description="Run a study from a YAML file (or the embedded default: "
                          "digits, stores under ./mlruns); flags override the file.")
    tune.add_argument("config", nargs="?", help="study YAML file")
    for flag, (key, kind, text) in TUNE_FLAGS.items():
        tune.add_argument(flag, type=kind, help=f"{text} (config: {key})")
    tune.add_argument("--in-process", action="store_true",
                      help="run trials in this process instead of recycled worker processes")
    tune.add_argument("--print-config", action="store_true",
                      help="print the resolved config and exit without training")

    worker = sub.add_parser("worker", help="join an existing study and run its trials")
    worker.add_argument("--storage", required=True)
    worker.add_argument("--study-name", required=True)
    worker.add_argument("--tracking-uri")
    worker.add_argument("--max-trials", type=int, help="exit after this many trials")
    worker.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    worker.add_argument("--started-at", type=float, help=argparse.SUPPRESS)
    worker.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    model_cli.add_parsers(sub)
    ops_cli.add_parsers(sub)
    data_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tunelab.signals import exit_code, handle_stop_signals

    if args.command in ("tune", "worker"):
        handle_stop_signals()  # SIGTERM is handled like Ctrl-C (exit 143)
    try:
        if args.command == "tune":
            return _tune(args)
        if args.command == "worker":
            from tunelab.tuning import run_worker

            run_worker(study_name=args.study_name, storage=args.storage,
                       tracking_uri=args.tracking_uri, max_trials=args.max_trials,
                       deadline=args.deadline, started_at=args.started_at,
                       worker_index=args.worker_index)
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
    from tunelab.config import load_config

    overrides = {key: getattr(args, flag[2:].replace("-", "_"))
                 for flag, (key, _, _) in TUNE_FLAGS.items()}
    config = load_config(args.config, overrides)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    from tunelab.tuning import tune

    tune(config, in_process=args.in_process)
    return 0
