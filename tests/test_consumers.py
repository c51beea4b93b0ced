"""Shell consumers: one process per event, positions kept, failures retried and parked."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from conftest import evt_command

EVENTS = [
    {"stream": "order-1", "type": "order.placed", "data": {"orderId": "1"}},
    {"stream": "order-1", "type": "order.broken", "data": {"orderId": "1"}},
    {"stream": "account-1", "type": "account.opened", "data": {}},
    {"stream": "order-2", "type": "order.placed", "data": {"orderId": "2"}},
]

# Logs each event's position and type; fails on order.broken unless ok.flag exists.
SCRIPT = """#!/bin/sh
event=$(cat)
type=${event#*'"type":"'}
type=${type%%'"'*}
if [ "$type" = order.broken ] && [ ! -e ok.flag ]; then
  echo "cannot handle $EVT_POSITION" >&2
  exit 3
fi
echo "$EVT_CONSUMER $EVT_POSITION $type" >> handled.log
echo "handled $EVT_POSITION"
"""


@pytest.fixture
def store(evt_proc, tmp_path):
    r = evt_proc("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS))
    assert r.exit_code == 0, r.stderr
    (tmp_path / "handle.sh").write_text(SCRIPT)
    (tmp_path / "handle.sh").chmod(0o755)
    return evt_proc


def handled(tmp_path) -> list[str]:
    path = tmp_path / "handled.log"
    return path.read_text().splitlines() if path.exists() else []


def status(evt_proc, name: str) -> dict:
    return next(p for p in evt_proc("projections").json() if p["name"] == name)


def test_consume_runs_the_command_per_event_and_dead_letters_failures(store, tmp_path):
    r = store("consume", "mailer", "--exec", "./handle.sh", "--backoff", "0")
    assert r.exit_code == 0
    assert r.stdout.splitlines() == ["handled 1", "handled 3", "handled 4"]
    assert r.stderr.splitlines() == [
        line
        for n in (1, 2, 3)
        for line in ("cannot handle 2", f"evt: mailer: position 2 (order.broken) failed, attempt {n} of 3: command failed with exit status 3: cannot handle 2")
    ]
    assert handled(tmp_path) == ["mailer 1 order.placed", "mailer 3 account.opened", "mailer 4 order.placed"]
    (dead,) = store("dlq", "list").json()
    assert (dead["consumer"], dead["position"], dead["type"], dead["attempts"]) == ("mailer", 2, "order.broken", 3)
    assert dead["error"] == "command failed with exit status 3: cannot handle 2"
    line = status(store, "mailer")
    assert (line["kind"], line["checkpoint"], line["lag"], line["deadLetters"]) == ("exec", 4, 0, 1)


def test_the_envelope_arrives_as_one_json_line(store, tmp_path):
    r = store("consume", "copier", "order-2", "--exec", "cat >> got.ndjson")
    assert r.exit_code == 0
    expected = store("read", "order-2").stdout
    assert (tmp_path / "got.ndjson").read_text() == expected


def test_a_restart_resumes_after_the_last_acknowledged_event(store, tmp_path):
    store("consume", "mailer", "--exec", "./handle.sh", "--type", "order.placed")
    assert store("consume", "mailer").stdout == ""  # the last command is reused; nothing new
    store("append", "order-3", "order.placed", "-q")
    r = store("consume", "mailer")
    assert r.stdout == "handled 5\n"
    assert handled(tmp_path) == ["mailer 1 order.placed", "mailer 4 order.placed", "mailer 5 order.placed"]


def test_a_command_that_does_not_read_its_stdin_is_judged_by_its_exit_status(store, tmp_path):
    "evt does not die of SIGPIPE when a command exits without reading the envelope (here 200 KB, past a pipe's buffer)."
    store("append", "order-5", "order.placed", "-", "-q", input=json.dumps({"blob": "x" * 200_000}))
    r = store("consume", "ids", "--exec", 'echo "$EVT_POSITION" >> ids.log')
    assert (r.exit_code, r.stderr) == (0, "")
    assert (tmp_path / "ids.log").read_text().split() == ["1", "2", "3", "4", "5"]
    assert status(store, "ids")["checkpoint"] == 5
    r = store("consume", "fails", "--exec", "exit 4", "--max-attempts", "1")
    assert r.exit_code == 0
    assert [d["error"] for d in store("dlq", "list").json()] == ["command failed with exit status 4"] * 5
    r = store("dlq", "retry", "--all")
    assert r.exit_code == 7, r.stderr
    store("consume", "fails", "--exec", "true")  # the command dlq retry runs is the last one given
    assert store("dlq", "retry", "--all").exit_code == 0
    assert store("dlq", "list").stdout == ""


def test_a_closed_stdout_stops_the_consumer_quietly_before_the_event(store, tmp_path):
    "evt consume … | head -1: the reader is gone, so the next command's failure is no dead letter."
    command = "cat || exit; while [ ! -e closed.flag ]; do sleep 0.01; done"
    proc = subprocess.Popen(evt_command() + ["consume", "printer", "--exec", command], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(proc.stdout.readline())["position"] == 1
        proc.stdout.close()  # as head -1 does
        (tmp_path / "closed.flag").touch()
        assert proc.wait(timeout=20) == 141
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
    assert store("dlq", "list").stdout == ""
    assert status(store, "printer")["checkpoint"] == 1
    r = store("consume", "printer")
    assert [e["position"] for e in r.json()] == [2, 3, 4]


def test_filters_like_read(store, tmp_path):
    store("consume", "accounts", "--exec", "./handle.sh", "--category", "account")
    store("consume", "one", "order-1", "--exec", "./handle.sh", "--type", "order.p*")
    assert handled(tmp_path) == ["accounts 3 account.opened", "one 1 order.placed"]


def test_correlation_id_and_time_filters_like_read(store, tmp_path):
    store("append", "order-5", "order.placed", "--correlation-id", "req-7", "-q")
    store("append", "--ndjson", "-", "-q", input='{"stream": "order-6", "type": "order.placed", "data": {}, "correlationId": "req-7", "timestamp": "2020-01-01T00:00:00Z"}\n')
    r = store("consume", "chain", "--exec", "./handle.sh", "--correlation-id", "req-7")
    assert (r.exit_code, r.stdout) == (0, "handled 5\nhandled 6\n")
    r = store("consume", "recent", "--exec", "./handle.sh", "--type", "order.placed", "--since", "1h")
    assert (r.exit_code, r.stdout) == (0, "handled 1\nhandled 4\nhandled 5\n")
    r = store("consume", "old", "--exec", "./handle.sh", "--until", "2021-01-01T00:00:00Z")
    assert (r.exit_code, r.stdout) == (0, "handled 6\n")
    assert status(store, "old")["checkpoint"] == 6


def test_on_error_stop_exits_7_and_keeps_the_position_before_the_event(store, tmp_path):
    r = store("consume", "mailer", "--exec", "./handle.sh", "--on-error", "stop", "--max-attempts", "1")
    assert r.exit_code == 7
    assert r.stdout == "handled 1\n"
    assert r.stderr.splitlines()[-1] == "evt: mailer stopped at position 2 (order.broken) after 1 attempt: command failed with exit status 3: cannot handle 2"
    assert status(store, "mailer")["checkpoint"] == 1
    assert store("dlq", "list").stdout == ""
    (tmp_path / "ok.flag").touch()
    r = store("consume", "mailer")
    assert (r.exit_code, r.stdout) == (0, "handled 2\nhandled 3\nhandled 4\n")


def test_retry_after_fixing_the_script_clears_the_dead_letter(store, tmp_path):
    store("consume", "mailer", "--exec", "./handle.sh", "--backoff", "0")
    r = store("dlq", "retry", "--all")
    assert r.exit_code == 7
    assert r.stderr.splitlines() == [
        "retrying 1 dead letter",
        "cannot handle 2",
        "evt: dead letter 1 (mailer, position 2) failed again: command failed with exit status 3: cannot handle 2",
        "evt: 1 of 1 dead letter failed again; they stay in the table",
    ]
    assert store("dlq", "show", "1").json()[0]["attempts"] == 4
    (tmp_path / "ok.flag").touch()
    r = store("dlq", "retry", "1")
    assert r.exit_code == 0
    assert r.stdout == "handled 2\n"
    assert r.stderr.splitlines() == ["retrying 1 dead letter", "retried 1 dead letter: all succeeded"]
    assert handled(tmp_path)[-1] == "mailer 2 order.broken"
    assert store("dlq", "list").stdout == ""


def test_consume_refuses_a_projections_name_and_a_missing_command(store, tmp_path):
    r = store("consume", "mailer")
    assert (r.exit_code, r.stderr) == (2, "evt: consumer mailer has never run: give the command with --exec 'CMD'\n")
    (tmp_path / "evt.toml").write_text('[projections.mailer]\non = {"x" = "SELECT 1"}\n')
    r = store("consume", "mailer", "--exec", "true")
    assert (r.exit_code, r.stderr) == (2, "evt: mailer is a projection; name the consumer differently\n")
    r = store("consume", "x", "--exec", "true", "--on-error", "ignore")
    assert (r.exit_code, r.stderr) == (2, "evt: on error must be one of dlq, stop, park-stream, not 'ignore'\n")


def test_follow_consumes_new_events_and_ctrl_c_exits_130_with_the_position_saved(store, tmp_path):
    (tmp_path / "ok.flag").touch()
    proc = subprocess.Popen(evt_command() + ["consume", "mailer", "--exec", "./handle.sh", "--follow"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(handled(tmp_path)) == 4)
        store("append", "order-9", "order.placed", "-q")
        wait_for(lambda: len(handled(tmp_path)) == 5)
        wait_for(lambda: status(store, "mailer")["checkpoint"] == 5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == b""
    assert out.decode().splitlines()[-1] == "handled 5"
    assert store("consume", "mailer").stdout == ""  # nothing handled twice after the restart


def wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_running_command_does_not_block_appenders(store, tmp_path):
    proc = subprocess.Popen(evt_command() + ["consume", "slow", "--exec", "sleep 3"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        r = store("append", "order-7", "order.placed", "-q", env={"EVT_BUSY_TIMEOUT": "1"})
        assert r.exit_code == 0, r.stderr
        assert time.monotonic() - started < 2
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_mid_command_runs_that_event_again_and_no_earlier_one(store, tmp_path):
    "At-least-once: the event whose command was running when evt died is delivered again."
    (tmp_path / "ok.flag").touch()
    command = './handle.sh; [ "$EVT_POSITION" = 3 ] && [ ! -e killed.flag ] && touch started.flag && sleep 30; true'
    proc = subprocess.Popen(evt_command() + ["consume", "mailer", "--exec", command], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "started.flag").exists())
        proc.kill()  # kill -9 evt; its command is orphaned mid-run
        proc.wait()
    finally:
        import os

        os.killpg(proc.pid, signal.SIGKILL)
    (tmp_path / "killed.flag").touch()
    assert status(store, "mailer")["checkpoint"] == 2
    r = store("consume", "mailer")
    assert r.exit_code == 0
    assert handled(tmp_path) == [
        "mailer 1 order.placed", "mailer 2 order.broken", "mailer 3 account.opened",
        "mailer 3 account.opened", "mailer 4 order.placed",
    ]


def test_a_long_stderr_is_kept_truncated():
    from evt.processing.deadletters import truncate

    assert truncate("short\n") == "short"
    assert truncate("x" * 10 + "y" * 2000) == "…" + "y" * 2000


def on_a_terminal(tmp_path, *args: str) -> tuple[subprocess.Popen, int]:
    "Start evt with its stderr on a terminal (a pseudo-terminal we read from); (process, the terminal's end)."
    import os
    import pty

    terminal, stderr = pty.openpty()
    proc = subprocess.Popen(evt_command() + list(args), cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    os.close(stderr)
    return proc, terminal


def terminal_text(terminal: int) -> str:
    "Everything written to the terminal, once every process that had it has ended."
    import os

    chunks = []
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: no process has the terminal open any more
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(terminal)
    return b"".join(chunks).decode().replace("\r\n", "\n")


SECONDS = r"\d+(\.\d+)? s"


def test_on_a_terminal_the_summary_counts_the_events_handled(store, tmp_path):
    import re

    proc, terminal = on_a_terminal(tmp_path, "consume", "mailer", "--exec", "./handle.sh", "--type", "order.placed")
    assert proc.wait(30) == 0
    assert proc.stdout.read().decode().splitlines() == ["handled 1", "handled 4"]
    # Not an error: no "evt:" prefix. The events it handled (2 of the 4 in the log).
    assert re.fullmatch(rf"mailer: 2 events in {SECONDS}, 0 dead-lettered\n", terminal_text(terminal))
    proc, terminal = on_a_terminal(tmp_path, "consume", "mailer", "--type", "order.placed")  # nothing new
    assert proc.wait(30) == 0
    assert re.fullmatch(rf"mailer: 0 events in {SECONDS}, 0 dead-lettered\n", terminal_text(terminal))


def test_follow_ended_by_ctrl_c_prints_its_summary_on_a_terminal(store, tmp_path):
    import re

    (tmp_path / "ok.flag").touch()
    proc, terminal = on_a_terminal(tmp_path, "consume", "mailer", "--exec", "./handle.sh", "--type", "order.*", "--follow")
    try:
        wait_for(lambda: len(handled(tmp_path)) == 3)
        store("append", "order-9", "order.placed", "-q")
        store("append", "account-9", "account.opened", "-q")
        wait_for(lambda: len(handled(tmp_path)) == 4)
        wait_for(lambda: status(store, "mailer")["checkpoint"] == 6)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    finally:
        proc.kill()
    assert re.fullmatch(rf"mailer: 4 events in {SECONDS}, 0 dead-lettered\n", terminal_text(terminal))


@pytest.mark.parametrize("value", ["nan", "inf", "1e308"])
def test_a_backoff_that_is_no_number_of_seconds_is_a_usage_error(store, tmp_path, value):
    "nan, infinity or more seconds than Python can sleep: exit 2 before anything runs (it crashed at the first retry)."
    r = store("consume", "mailer", "--exec", "./handle.sh", "--backoff", value)
    shown = {"nan": "nan", "inf": "inf", "1e308": "1e+308"}[value]
    assert (r.exit_code, r.stdout, r.stderr) == (
        2, "", f"evt: Invalid value for '--backoff': must be a number of seconds from 0 to 1e+09, not {shown} (see 'evt consume --help')\n"
    )
    assert handled(tmp_path) == []


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "-1"])
def test_an_evt_toml_backoff_that_is_no_number_of_seconds_is_a_config_error(store, tmp_path, value):
    (tmp_path / "evt.toml").write_text(f'[projections.q]\nbackoff = {value}\n[projections.q.on]\n"*" = "INSERT INTO nope VALUES (1)"\n')
    r = store("replay")
    shown = {"nan": "nan", "inf": "inf", "1e300": "1e+300", "-1": "-1"}[value]
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == f"evt: {tmp_path / 'evt.toml'}: projections.q: backoff must be a number of seconds from 0 to 1e+09, not {shown}\n"


def test_a_doubling_backoff_stops_growing_where_python_can_still_sleep():
    from evt.config import MAX_SECONDS
    from evt.model.retry import RetryPolicy

    policy = RetryPolicy(10_000, 0.1)
    assert policy.delay(2) == 0.1 and policy.delay(4) == 0.4
    assert policy.delay(10_000) == MAX_SECONDS  # 0.1 * 2**9998 overflowed a float
