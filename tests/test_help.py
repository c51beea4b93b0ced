"""Help that reads like a tool's: every argument and option by a human metavar, required
arguments shown as such, and the command list whole at 80 and 120 columns."""

from __future__ import annotations

import re

import pytest

from test_cli import commands

PYTHON_TYPES = re.compile(r"<(str|int|float|bool|list|path|text)\b|range>|\[x[<>]=|<=x<=|\{[a-z_]+\}")


@pytest.mark.parametrize("width", ["80", "120"])
def test_no_help_shows_a_python_type_or_a_range(evt, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", width)
    for path in [()] + [p for p, _ in commands()] + [("dlq",), ("upcast",)]:
        text = evt(*path, "--help").stdout
        assert not PYTHON_TYPES.search(text), f"evt {' '.join(path)} --help: {PYTHON_TYPES.search(text).group()!r}\n{text}"


def test_every_value_has_a_metavar_and_the_usage_shows_what_is_required(evt):
    for path, command in commands():
        usage = evt(*path, "--help").lines[0]
        pieces = []
        for param in command.params:
            if param.param_type_name == "option" and not param.is_flag and param.name != "help":
                assert param.metavar and param.metavar[:1].isupper(), f"evt {' '.join(path)} {param.opts[0]} has no metavar"
            if param.param_type_name == "argument":
                assert param.metavar and param.metavar.isupper(), f"evt {' '.join(path)}: argument {param.name}"
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        assert usage == " ".join(["Usage: evt", *path, "[OPTIONS]", *pieces]), usage


def test_usage_lines_as_written(evt):
    assert evt("aggregate", "--help").lines[0] == "Usage: evt aggregate [OPTIONS] NAME STREAM"
    assert evt("append", "--help").lines[0] == "Usage: evt append [OPTIONS] [STREAM] [TYPE] [DATA]"
    assert evt("dlq", "retry", "--help").lines[0] == "Usage: evt dlq retry [OPTIONS] [ID...]"
    help = evt("read", "--help").stdout
    assert "  -n, --limit N  " in help and "  --type TYPE  " in help and "  STREAM  Read one stream" in help
    assert "  --backoff SECONDS  " in evt("consume", "--help").stdout


@pytest.mark.parametrize("width", ["80", "120"])
def test_the_command_list_is_never_cut(evt, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", width)
    for group in ((), ("dlq",), ("upcast",)):
        text = evt(*group, "--help").stdout
        listed = text.split("Commands:\n", 1)[1].splitlines()
        assert listed and not any(line.rstrip().endswith("...") for line in listed), text
        assert all(len(line) <= int(width) for line in text.splitlines())


def test_a_command_runs_from_an_app_of_that_command_alone_and_says_the_same(capsys):
    """evt builds only the command it runs (typer builds every command's parameters
    first: about 100 ms of each start); each command's and group's help, and a usage
    error, read exactly as from the whole app."""
    import typer.main

    from evt.cli.app import _app_for, app, run

    whole = typer.main.get_command(app)
    for name in sorted(whole.commands):
        trimmed = _app_for(name)
        assert len(trimmed.registered_commands) + len(trimmed.registered_groups) == 1, name
        for args in ([name, "--help"], [name, "--no-such-option"]):
            code = run(args)
            own = capsys.readouterr()
            try:
                expected = whole.main(args, prog_name="evt", standalone_mode=False)
            except Exception as e:  # a usage error: run() prints it as one line, so compare the message
                expected = e.exit_code
                assert e.format_message() in own.err, (args, own.err)
            else:
                assert own.out == capsys.readouterr().out, args
            assert code == (expected or 0), args
    assert _app_for("no-such-command") is app and _app_for("--help") is app
