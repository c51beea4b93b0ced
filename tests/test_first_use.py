"""What a new user meets first: --version, completion, options before the command, hints
where people slip, and the corners that used to answer wrongly."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from importlib.metadata import version

import pytest

from conftest import evt_command
from evt.cli.argv import GROUPS, hoist_global_options


def test_version_from_the_package_metadata(evt):
    for flag in ("--version", "-V"):
        result = evt(flag)
        assert (result.exit_code, result.stdout, result.stderr) == (0, f"evt {version('evt')}\n", "")


def test_completion_the_typer_way(evt_proc):
    # typer detects the shell from the process tree (shellingham), which a test run started
    # from no shell lacks; its own switch makes --show-completion take the shell's name.
    script = evt_proc("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.exit_code == 0 and "_EVT_COMPLETE=complete_bash" in script.stdout
    env = {"_EVT_COMPLETE": "complete_bash", "COMP_WORDS": "evt re", "COMP_CWORD": "1"}
    assert evt_proc(env=env).stdout.split() == ["read", "redact", "replay", "relay"]
    env = {"_EVT_COMPLETE": "complete_bash", "COMP_WORDS": "evt dlq re", "COMP_CWORD": "2"}
    assert evt_proc(env=env).stdout.split() == ["retry"]
    env = {"_EVT_COMPLETE": "complete_bash", "COMP_WORDS": "evt read --format ", "COMP_CWORD": "3"}
    assert evt_proc(env=env).stdout.split() == ["table", "json", "ndjson", "cloudevents", "cloudevents-json"]
    env = {"_EVT_COMPLETE": "complete_bash", "COMP_WORDS": "evt streams --format ", "COMP_CWORD": "3"}
    assert evt_proc(env=env).stdout.split() == ["table", "json", "ndjson"]
    assert "--install-completion" in evt_proc("--help").stdout


def test_append_with_options_before_the_command_still_skips_typer(tmp_path):
    code = (
        "import sys; from evt.__main__ import main; main(['--db', 'x.db', 'append', 's-1', 't.x', '-q']); "
        "print(sorted(m for m in ('typer', 'rich', 'pydantic', 'click') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout == "[]\n", proc.stderr
    assert (tmp_path / "x.db").exists() and not (tmp_path / "events.db").exists()


# -- options before the command -------------------------------------------------------


@pytest.mark.parametrize(
    "given, parsed",
    [
        (["--db", "x.db", "read"], ["read", "--db", "x.db"]),
        (["--db=x.db", "--model", "m.py", "read", "s-1"], ["read", "--db=x.db", "--model", "m.py", "s-1"]),
        (["--db", "x.db", "dlq", "list", "--consumer", "c"], ["dlq", "list", "--db", "x.db", "--consumer", "c"]),
        (["--db", "x.db", "read", "--db", "y.db"], ["read", "--db", "x.db", "--db", "y.db"]),  # the later one wins
        (["read", "--db", "x.db"], ["read", "--db", "x.db"]),
        (["--db", "x.db"], ["--db", "x.db"]),  # no command: left for the parser to report
        (["--db"], ["--db"]),
        (["--db", "x.db", "dlq", "--help"], ["--db", "x.db", "dlq", "--help"]),
        (["--version"], ["--version"]),
        (["--db", "x.db", "projections"], ["projections", "--db", "x.db"]),  # a group that also runs alone
        (["--db", "x.db", "projections", "--format", "json"], ["projections", "--db", "x.db", "--format", "json"]),
        (["--db", "x.db", "projections", "reset", "p", "--to", "0"], ["projections", "reset", "--db", "x.db", "p", "--to", "0"]),
    ],
)
def test_shared_options_before_the_command_move_after_it(given, parsed):
    assert hoist_global_options(given) == parsed


def test_the_groups_hoisting_knows_are_the_apps_groups():
    import typer.main

    from evt.cli.app import app

    root = typer.main.get_command(app)
    assert sorted(GROUPS) == sorted(name for name, command in root.commands.items() if hasattr(command, "commands"))


def test_shared_options_before_the_command_work(evt):
    evt("append", "s-1", "t.x", "--db", "x.db", "-q")
    assert [e["stream"] for e in evt("--db", "x.db", "read").json()] == ["s-1"]
    assert evt("--db", "x.db", "append", "s-2", "t.x", "-q").exit_code == 0
    assert evt("--db=x.db", "stats").json()[0]["events"] == 2
    assert evt("--db", "x.db", "dlq", "list").exit_code == 0
    assert not os.path.exists("events.db")
    result = evt("--db", "x.db")
    assert (result.exit_code, result.stderr) == (
        2, "evt: --db needs a command: evt --db VALUE COMMAND …, or evt COMMAND --db VALUE (see 'evt --help')\n"
    )


# -- hints ----------------------------------------------------------------------------


def test_unquoted_json_split_by_the_shell_gets_a_hint_to_quote_it(evt):
    result = evt("append", "order-1", "order.placed", "{total:", "5}")  # what bash makes of {"total": 5}
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "evt: DATA was split into several arguments by the shell: quote the JSON in single quotes, so the shell "
        """keeps it whole with its double quotes: '{"total": 5}' (see 'evt append --help')\n"""
    )
    result = evt("append", "order-1", "order.placed", "{}", "extra")
    assert result.stderr == "evt: too many arguments: evt append STREAM TYPE [DATA] takes at most three (see 'evt append --help')\n"
    assert not os.path.exists("events.db")


@pytest.mark.parametrize("option, hint", [("--json", "--format json"), ("--ndjson", "--format ndjson"), ("--table", "--format table")])
def test_format_spelt_as_a_flag_points_to_format(evt, option, hint):
    result = evt("read", option)
    assert (result.exit_code, result.stderr) == (2, f"evt: no such option {option}: use {hint} (see 'evt read --help')\n")


def test_read_takes_n_like_tail(evt):
    for n in range(3):
        evt("append", "s-1", "t.x", json.dumps({"n": n}), "-q")
    assert [e["data"]["n"] for e in evt("read", "-n", "2").json()] == [0, 1]
    assert [e["data"]["n"] for e in evt("read", "--limit", "2").json()] == [0, 1]
    result = evt("read", "-n", "-1")
    assert (result.exit_code, result.stderr) == (2, "evt: Invalid value for '--limit' / '-n': must be 0 or more, not -1 (see 'evt read --help')\n")


# -- answers that were wrong ----------------------------------------------------------


def test_a_folder_named_as_the_store_is_said_to_be_a_folder(evt, tmp_path):
    (tmp_path / "stores").mkdir()
    message = f"evt: stores is a folder, not a store file (name the file in it, e.g. {os.path.join('stores', 'events.db')})\n"
    for args in (("read",), ("stats",), ("append", "s-1", "t.x")):
        result = evt(*args, "--db", "stores")
        assert (result.exit_code, result.stdout, result.stderr) == (6, "", message)
    assert list((tmp_path / "stores").iterdir()) == []


def read_lines(stream, n: int, timeout: float = 20) -> list[bytes]:
    "The next n lines of a process's pipe, read from its file descriptor (no buffer to hide lines from select)."
    import time

    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < n:
        assert selector.select(max(0.0, deadline - time.monotonic())), f"not {n} lines within the timeout: {data!r}"
        chunk = os.read(stream.fileno(), 65536)
        assert chunk, f"the pipe closed after {data!r}"
        data += chunk
    return data.splitlines(keepends=True)


def test_tail_follow_waits_for_a_store_that_does_not_exist_yet(evt_proc, tmp_path):
    follower = subprocess.Popen(
        evt_command() + ["tail", "-f", "-n", "0"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        [waiting] = read_lines(follower.stderr, 1)  # said once it waits: nothing is appended before
        assert waiting == b"evt: no store at events.db yet; waiting for the first append (Ctrl-C to stop)\n"
        assert not (tmp_path / "events.db").exists()  # waiting creates nothing
        batch = "".join(json.dumps({"stream": "s-1", "type": "t.x", "data": {"n": n}}) + "\n" for n in (1, 2))
        assert evt_proc("append", "--ndjson", "-", "-q", input=batch).exit_code == 0
        # every event of a store that appeared while waiting is new, even with -n 0
        assert [json.loads(line)["data"]["n"] for line in read_lines(follower.stdout, 2)] == [1, 2]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(20) == 130
    finally:
        follower.kill()
        follower.wait()


def test_tail_without_follow_on_a_missing_store_is_still_exit_6(evt):
    result = evt("tail")
    assert result.exit_code == 6 and result.stderr.startswith("evt: no store at events.db")
