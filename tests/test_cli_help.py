"""The CLI explains itself: --version, help on every option with its default, where to start."""

import argparse
import subprocess
import sys

from tunelab import __version__
from tunelab.cli import build_parser


def subparsers(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subparsers(sub, (*prefix, name))


def test_every_command_and_option_has_help_with_its_default():
    parser = build_parser()
    commands = dict(subparsers(parser))
    assert {("worker",), ("sync",), ("studies",), ("server",), ("data", "inspect")} <= \
        set(commands)
    for name, sub in commands.items():
        assert sub.description, name
        text = sub.format_help()
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, (name, action.dest)
            if action.default not in (None, False) and action.option_strings:
                assert f"(default: {action.default})" in " ".join(text.split()) or \
                    "default" in action.help, (name, action.dest)
    worker = " ".join(commands[("worker",)].format_help().split())
    assert "--max-trials MAX_TRIALS exit after this many trials (default:" in worker
    server = " ".join(commands[("server",)].format_help().split())
    assert "port of the UI and REST API (default: 5000)" in server


def test_version_and_where_to_start():
    out = subprocess.run([sys.executable, "-m", "tunelab", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"tunelab {__version__}"
    text = subprocess.run([sys.executable, "-m", "tunelab", "--help"], capture_output=True,
                          text=True, check=True, env={"COLUMNS": "80", "PATH": ""}).stdout
    tail = text.strip().splitlines()[-4:]
    assert tail[0] == "start with:"
    assert [line.split()[:2] for line in tail[1:]] == [["tunelab", "tune"],
                                                      ["tunelab", "best"],
                                                      ["tunelab", "server"]]
    assert all(len(line) <= 80 for line in text.splitlines())
