"""Every code example in README.md and docs/*.md runs as written.

``python`` blocks are executed, each in a fresh namespace, in an empty
working directory that holds links to the Zeus NSDI '23 trace files (examples
that replay a trace name them as a reader who downloaded the traces would, by
file name). ``bash`` blocks are not run (they install packages or start
clusters), but every ``banditfleet ...`` command in them must be accepted by
the real command-line parser, so an example never shows an option that does
not exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from banditfleet.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces" / "zeus-nsdi23"
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _blocks(language: str) -> list[tuple[str, int, str]]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in re.finditer(rf"^```{language}\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, match.start()) + 2
            found.append((path.relative_to(REPO).as_posix(), line, match.group(1)))
    return found


PYTHON_BLOCKS = _blocks("python")
BASH_BLOCKS = _blocks("bash")


def test_documents_have_examples():
    if not (REPO / "docs").is_dir():
        pytest.skip("docs/ is not next to the tests (not running from a checkout)")
    assert PYTHON_BLOCKS and BASH_BLOCKS


@pytest.mark.parametrize("where,line,code", PYTHON_BLOCKS, ids=[f"{w}:{n}" for w, n, _ in PYTHON_BLOCKS])
def test_python_example_runs(where, line, code, tmp_path, monkeypatch):
    if "summary_train.csv" in code or "zeus-nsdi23" in code:
        if not TRACES.is_dir():
            pytest.skip(f"{TRACES} (the Zeus traces from ../shared) is absent")
        for trace in TRACES.iterdir():
            (tmp_path / trace.name).symlink_to(trace)
    monkeypatch.chdir(tmp_path)
    # Line numbers in tracebacks point into the document.
    compiled = compile("\n" * (line - 1) + code, str(REPO / where), "exec")
    exec(compiled, {"__name__": "docs_example"})


def _commands(code: str) -> list[str]:
    commands = []
    for raw in code.replace("\\\n", " ").splitlines():
        text = raw.split(" #", 1)[0].strip()
        if text.startswith("banditfleet "):
            commands.append(text)
    return commands


BANDITFLEET_COMMANDS = [(w, n, c) for w, n, code in BASH_BLOCKS for c in _commands(code)]


@pytest.mark.parametrize("where,line,command", BANDITFLEET_COMMANDS, ids=[f"{w}:{n}:{c[:40]}" for w, n, c in BANDITFLEET_COMMANDS])
def test_shell_example_uses_real_options(where, line, command, capsys):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{where}:{line}: `{command}` is refused by the CLI: {capsys.readouterr().err}")
        raise AssertionError from exc
