"""A command's parser built alone (its branch) parses, helps and refuses as the whole tree."""

from __future__ import annotations

import contextlib
import io

import pytest

from backchain.cli import parser

ARGVS = [
    ["commit", "--yes", "--top", "mid.qcow2", "--base", "base.qcow2", "active.qcow2"],
    ["plan", "--json", "--pull", "--base", "b.qcow2", "t.qcow2"],
    ["pull", "--rate", "5", "--yes", "t.qcow2"],
    ["chain", "--json", "--scan", "/tmp", "a.qcow2"],
    ["gui", "--demo", "--quit-after", "0.5"],
    ["demo", "/tmp/x"],
    ["resume"],
    ["snapshot-delete", "--connect", "qemu:///system", "--domain", "vm", "snap1"],
    ["plan", "--no-such-option", "a.qcow2"],
    ["commit", "--help"],
    ["resume", "--help"],
    ["commit"],
]


def _outcome(build: parser.argparse.ArgumentParser, argv: list[str]) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(build.parse_args(argv))
        except SystemExit as stop:
            result = stop.code
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", ARGVS)
def test_the_branch_alone_gives_what_the_whole_tree_gives(argv: list[str]) -> None:
    whole = _outcome(parser.build_parser(), argv)
    alone = _outcome(parser.build_parser(argv[0]), argv)
    assert alone == whole
    assert whole[0] not in (None, {})


def test_parse_builds_only_the_branch_of_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str | None] = []
    real = parser.build_parser

    def counted(only: str | None = None) -> parser.argparse.ArgumentParser:
        built.append(only)
        return real(only)

    monkeypatch.setattr(parser, "build_parser", counted)
    assert parser.parse(["commit", "--yes", "a.qcow2"]).command == "commit"
    assert parser.parse(["a.qcow2"]).command == "gui"
    assert built == ["commit", "gui"]
