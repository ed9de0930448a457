"""Subcommands after a study: ``best``, ``register``, ``predict``, ``continue``.

Kept out of ``cli.py`` so that file stays a short list of commands; like it, this module only
parses and calls the library functions in ``tunelab.commands``.
"""

from __future__ import annotations

import argparse

COMMANDS = ("best",)


def _study_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study-name", help="the study (default: the only one in the storage)")
    parser.add_argument("--storage", help="Optuna storage: journal file or database URL "
                        "(default: mlruns/optuna.journal)")


def add_parsers(sub) -> None:
    best = sub.add_parser(
        "best", help="rank a study's trials and select the one to trust",
        description="Rank the complete trials by objective and select the best one whose "
        "train-validation accuracy gap is within objective.gap_tolerance and whose validation "
        "loss was not rising while training loss fell; say why each top trial was or was not "
        "chosen.")
    _study_flags(best)


def run(args: argparse.Namespace) -> int:
    from tunelab import commands

    if args.command == "best":
        selection = commands.best(args.study_name, args.storage)
        commands.print_selection(selection)
        return 0 if selection.chosen is not None else 3
    raise ValueError(f"not a lifecycle command: {args.command}")
