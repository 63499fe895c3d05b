"""tool.cli and the command line of every script: one help formatter, a help text on every option, and a user's
mistake answered by one ``error: …`` line with exit status 2 (no traceback)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from tool import cli

REPO = Path(__file__).resolve().parents[1]
# every top-level script with a parser, found by glob so that a script added later is checked too
SCRIPTS = sorted(p.stem for p in REPO.glob("*.py")
                 if "def get_args_parser" in p.read_text(encoding="utf-8")) + ["voc12.make_cls_labels"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_has_help_and_the_shared_formatter(script):
    parser = importlib.import_module(script).get_args_parser()
    assert parser.formatter_class is cli.HelpFormatter, f"{script}: build the parser with tool.cli.make_parser"
    silent = [a.option_strings[0] for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not silent, f"{script}: options without help: {silent}"
    text = parser.format_help()  # a stray % in a help string fails here, as it would under --help
    assert "usage:" in text


def test_help_states_every_default_once():
    parser = cli.make_parser("demo")
    parser.add_argument("--lr", default=0.01, type=float, help="learning rate")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--crop", default=448, type=int, help="crop in pixels (default: the published 448)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = " ".join(parser.format_help().split())
    assert "learning rate (default: 0.01)" in text
    assert "output folder" in text and "(default: None)" not in text
    assert text.count("default") == 2  # --lr's appended one and --crop's own
    assert "a switch (default" not in text


def test_run_turns_a_user_error_into_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def bad():
        raise cli.UserError("--weights x.jpg: not a checkpoint; pass a .pth file")

    assert cli.run(bad) == 2
    assert capsys.readouterr().err == "error: --weights x.jpg: not a checkpoint; pass a .pth file\n"
    assert cli.run(lambda: None) == 0 and cli.run(lambda: 3) == 3
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(cli.UserError):
        cli.run(bad)
