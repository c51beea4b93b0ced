"""The command line as a whole: help for every command, docs, the append fast path."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt import NewEvent, Store
from evt.cli import append as append_cli
from evt.cli.app import app, run

ROOT = pathlib.Path(__file__).parent.parent


def commands(group=None, prefix=()):
    import typer.main

    group = group or typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        path = prefix + (name,)
        if hasattr(command, "commands"):
            yield from commands(command, path)
        else:
            yield path, command


def test_every_command_has_help_and_is_in_the_readme(evt):
    readme = (ROOT / "README.md").read_text()
    for path, command in commands():
        assert (command.help or "").strip(), f"evt {' '.join(path)} has no help text"
        assert f"evt {' '.join(path)}" in readme, f"README never mentions evt {' '.join(path)}"
        result = evt(*path, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_help_shows_every_option_as_written(evt):
    "No help text is lost (e.g. to markup): each parameter's help appears in --help."
    for path, command in commands():
        shown = "".join(evt(*path, "--help").stdout.split())  # lines may wrap anywhere, even at a hyphen
        for param in command.params:
            text = "".join((getattr(param, "help", None) or "").split())
            assert text[:60] in shown, f"evt {' '.join(path)} --help lost: {text!r}"


def test_unknown_command_is_a_one_line_usage_error(evt):
    result = evt("frobnicate")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "evt: No such command 'frobnicate'. (see 'evt --help')\n"


def typer_request(args):
    "The AppendRequest the typer command builds for these arguments (None if it refuses them)."
    captured = []
    original = append_cli.run_append
    import evt.cli.log as log

    log.run_append = captured.append
    try:
        code = run(["append", *args])
    finally:
        log.run_append = original
    return captured[0] if captured and code == 0 else None


@pytest.mark.parametrize(
    "args",
    [
        ["s-1", "t.x"],
        ["s-1", "t.x", '{"a": 1}', "--id", "x", "-q"],
        ["--quiet", "s-1", "t.x", "-", "--schema-version", "3", "--meta", "a=b", "--meta=c=d"],
        ["--ndjson", "-", "--db", "x.db", "--format", "json"],
        ["s-1", "t.x", "--expect", "0", "--source", "svc", "--correlation-id", "c", "--causation-id", "d",
         "--metadata", "{}", "--no-validate", "--config", "c.toml", "--model", "m.py"],
    ],
)
def test_fast_path_parses_like_typer(args):
    assert append_cli.parse_fast(args) == typer_request(args)


OPTION_WORDS = list(append_cli.VALUE_OPTIONS) + list(append_cli.FLAG_OPTIONS) + ["--help", "--bogus", "-x", "--"]
WORDS = st.one_of(
    st.sampled_from(OPTION_WORDS),
    st.sampled_from(["s-1", "t.x", "{}", "-", "3", "a=b", "json", "table", "any", "x"]),
    st.text(alphabet="ab-={}1", min_size=0, max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(WORDS, max_size=8))
def test_fast_path_never_disagrees_with_typer(capsys, args):
    "Whatever the fast parser accepts, typer parses to the same request."
    fast = append_cli.parse_fast(args)
    if fast is not None:
        assert fast == typer_request(args)
    capsys.readouterr()  # typer's usage errors for what the fast path refused


def test_append_does_not_import_typer_rich_or_pydantic(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from evt.__main__ import main; main(['append', 's-1', 't.x', '-q']); "
        "print(sorted(m for m in ('typer', 'rich', 'pydantic', 'sqlite_utils', 'click') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout == "[]\n", proc.stderr


@pytest.mark.parametrize("args", [["read", "s-1"], ["read", "--format", "json"], ["stats"], ["streams"]])
def test_reading_commands_import_neither_rich_nor_pydantic(tmp_path, args):
    """A reading command's start-up is typer's and evt's own: nothing of rich (a table
    needs it, JSON lines do not) nor pydantic (typer 0.29 imports it to check every
    parameter, which doubles the start-up: hence typer < 0.29 in pyproject.toml)."""
    import subprocess
    import sys

    with Store(tmp_path / "events.db") as store:
        store.write([NewEvent("s-1", "t.x")])
    code = (
        f"import sys; from evt.__main__ import main\ntry: main({args!r})\nexcept SystemExit as e: assert not e.code, e.code\n"
        "print(sorted(m for m in ('rich', 'pydantic') if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "[]\n", proc.stderr


def test_a_group_alone_shows_its_help_a_command_without_arguments_is_a_usage_error(evt):
    group = evt("dlq")
    assert group.exit_code == 0 and group.stdout.startswith("Usage: evt dlq")
    command = evt("aggregate")
    assert (command.exit_code, command.stdout) == (2, "")
    assert command.stderr == "evt: evt aggregate needs arguments (see 'evt aggregate --help')\n"
