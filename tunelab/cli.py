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
    "--study-name": ("study_name", str, "the study to create or resume (default: "
                     "<dataset>-<model> from the dataset's file or folder name and the model, "
                     "e.g. breastmnist-lenet, or <dataset>-search for a family search; "
                     "digits-lenet for the embedded default)"),
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
                      help="print the resolved config (for an existing study: its stored "
                      "config with the keys given here on top) and exit without training")
    tune.add_argument("--accept-change", action="append", default=[], metavar="KEY",
                      help="resuming a study whose data, model, space, objective, image "
                      "size, colour mode, cv_folds, engine or another key (seed, sampler, "
                      "...) would change is refused, naming each difference; accept an "
                      "intended change of KEY (data, model, space, objective.metric, ...; "
                      "repeatable), recorded in the study and on its parent run")

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
    except KeyboardInterrupt:
        return 130
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
