"""evt dlq: list, show, retry, discard, purge — across the store and projections' own files."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

TOML = """
[projections.strict]
setup = "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)"
backoff = 0
[projections.strict.on]
"*" = "INSERT INTO seen VALUES (json_extract(:data, '$.key'))"

[projections.elsewhere]
target = "read.db"
max_attempts = 1
setup = "CREATE TABLE IF NOT EXISTS positive (n INTEGER CHECK (n > 0))"
[projections.elsewhere.on]
"*" = "INSERT INTO positive VALUES (json_extract(:data, '$.n'))"
"""

EVENTS = [
    {"stream": "s-1", "type": "t", "id": "e1", "data": {"key": "a", "n": 1}},
    {"stream": "s-1", "type": "t", "id": "e2", "data": {"key": "a", "n": 0}},  # both fail
    {"stream": "s-2", "type": "t", "id": "e3", "data": {"key": "b", "n": 2}},
    {"stream": "s-2", "type": "t", "id": "e4", "data": {"key": "b", "n": 3}},  # strict fails
]
FIELDS = ["id", "consumer", "position", "eventId", "type", "error", "attempts", "firstFailedAt", "lastFailedAt"]
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def failed(evt, tmp_path):
    (tmp_path / "evt.toml").write_text(TOML)
    evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS))
    r = evt("replay")
    assert r.exit_code == 0, r.stderr
    return evt


def brief(entries) -> list[tuple]:
    return [(e["id"], e["consumer"], e["position"], e["eventId"], e["attempts"]) for e in entries]


def test_list_shows_every_dead_letter_in_every_file(failed):
    entries = failed("dlq", "list").json()
    assert brief(entries) == [(1, "strict", 2, "e2", 3), (3, "elsewhere", 2, "e2", 1), (2, "strict", 4, "e4", 3)]
    for entry in entries:
        assert list(entry) == FIELDS
        assert entry["type"] == "t"
        assert TIME.fullmatch(entry["firstFailedAt"]) and TIME.fullmatch(entry["lastFailedAt"])
    assert entries[1]["error"] == "IntegrityError: CHECK constraint failed: n > 0"
    assert brief(failed("dlq", "list", "--consumer", "elsewhere").json()) == [(3, "elsewhere", 2, "e2", 1)]
    assert failed("dlq", "list", "--consumer", "nobody").stdout == ""


def test_list_as_a_json_array(failed):
    r = failed("dlq", "list", "--format", "json")
    assert [e["id"] for e in json.loads(r.stdout)] == [1, 3, 2]


def test_show_prints_one_dead_letter_with_its_full_error_and_its_event(failed):
    r = failed("dlq", "show", "3")
    assert r.exit_code == 0
    (entry,) = r.json()
    assert list(entry) == FIELDS + ["errorDetail", "event"]
    assert brief([entry]) == [(3, "elsewhere", 2, "e2", 1)]
    assert entry["error"] == "IntegrityError: CHECK constraint failed: n > 0"
    assert entry["errorDetail"] == "IntegrityError: CHECK constraint failed: n > 0\nin: INSERT INTO positive VALUES (json_extract(:data, '$.n'));"
    assert entry["event"] == failed("read", "--from", "2", "--to", "2").json()[0]
    assert {k: entry[k] for k in FIELDS} == failed("dlq", "list", "--consumer", "elsewhere").json()[0]


@pytest.mark.parametrize("args", [("show", "9"), ("retry", "1", "9"), ("discard", "9")])
def test_an_unknown_id_is_exit_4_and_changes_nothing(failed, args):
    before = failed("dlq", "list").stdout
    r = failed("dlq", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (4, "", "evt: no dead letter with id 9 (evt dlq list shows them)\n")
    assert failed("dlq", "list").stdout == before


@pytest.mark.parametrize("command", ["retry", "discard"])
def test_ids_or_all_but_not_both(failed, command):
    r = failed("dlq", command)
    assert (r.exit_code, r.stderr) == (2, "evt: name the dead letters: ids (evt dlq list shows them), or --all\n")
    r = failed("dlq", command, "1", "--all")
    assert (r.exit_code, r.stderr) == (2, "evt: give dead-letter ids or --all, not both\n")


def test_dry_runs_announce_and_change_nothing(failed):
    before = failed("dlq", "list").stdout
    r = failed("dlq", "discard", "--all", "--consumer", "strict", "--dry-run")
    assert r.exit_code == 0
    assert r.stderr == "would discard 2 dead letters (dry run: nothing changed)\n"
    assert brief(r.json()) == [(1, "strict", 2, "e2", 3), (2, "strict", 4, "e4", 3)]
    r = failed("dlq", "retry", "3", "--dry-run")
    assert r.stderr == "would retry 1 dead letter (dry run: nothing changed)\n"
    r = failed("dlq", "purge", "--dry-run")
    assert r.stderr == "would purge 3 dead letters (dry run: nothing changed)\n"
    assert failed("dlq", "list").stdout == before


def test_discard_and_purge(failed):
    r = failed("dlq", "discard", "3")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "discarding 1 dead letter\n")
    assert [e["id"] for e in failed("dlq", "list").json()] == [1, 2]
    r = failed("dlq", "purge", "--consumer", "strict")
    assert (r.exit_code, r.stderr) == (0, "purging 2 dead letters\n")
    assert failed("dlq", "list").stdout == ""
    assert failed("projections").json()[0]["deadLetters"] == 0


def test_retry_runs_the_statement_as_it_is_now(failed, tmp_path):
    r = failed("dlq", "retry", "--all", "--consumer", "elsewhere")
    assert r.exit_code == 7
    assert failed("dlq", "show", "3").json()[0]["attempts"] == 2
    (tmp_path / "evt.toml").write_text(TOML.replace("json_extract(:data, '$.n'))", "max(1, json_extract(:data, '$.n')))"))
    r = failed("dlq", "retry", "3")
    assert (r.exit_code, r.stderr) == (0, "retrying 1 dead letter\nretried 1 dead letter: all succeeded\n")
    import sqlite3

    assert sqlite3.connect("read.db").execute("SELECT n FROM positive ORDER BY rowid").fetchall() == [(1,), (2,), (3,), (1,)]
    assert [e["id"] for e in failed("dlq", "list").json()] == [1, 2]


def test_rebuild_clears_a_projections_dead_letters_and_makes_them_again(failed):
    failed("dlq", "discard", "1")
    r = failed("replay", "strict", "--rebuild")
    assert r.exit_code == 0
    assert brief(failed("dlq", "list", "--consumer", "strict").json()) == [(4, "strict", 2, "e2", 3), (5, "strict", 4, "e4", 3)]


def test_every_command_has_help(evt):
    for args in (["replay"], ["projections"], ["consume"], ["dlq"], ["dlq", "list"], ["dlq", "show"], ["dlq", "retry"], ["dlq", "discard"], ["dlq", "purge"]):
        r = evt(*args, "--help")
        assert r.exit_code == 0
        assert "Usage" in r.stdout


PYTHON_MODEL = """
from evt import Model

model = Model()


@model.upcaster("order.placed", version=1)
def in_cents(data):
    return {**data, "cents": round(data["total"] * 100)}


totals = model.projection("totals", tables=["totals"], backoff=0)


@totals.setup
def create(db):
    db.execute("CREATE TABLE IF NOT EXISTS totals (id TEXT PRIMARY KEY, cents INTEGER)")


@totals.on("order.placed")
def placed(db, event):
    db.execute("INSERT INTO totals VALUES (?, ?)", [event.id, checked(event.data)])


def checked(data):
    if data["cents"] < 0:
        raise ValueError(f"a negative total: {data['total']}")
    return data["cents"]
"""


def test_show_of_a_python_projection_gives_the_traceback_and_the_event_upcast(evt, tmp_path):
    (tmp_path / "model.py").write_text(PYTHON_MODEL)
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    evt("append", "order-1", "order.placed", '{"total": 1.5}', "-q")
    evt("append", "order-2", "order.placed", '{"total": -2}', "--id", "bad", "-q")
    assert evt("replay").exit_code == 0
    insert, check = (PYTHON_MODEL.splitlines().index(line) + 1 for line in (
        '    db.execute("INSERT INTO totals VALUES (?, ?)", [event.id, checked(event.data)])',
        "        raise ValueError(f\"a negative total: {data['total']}\")",
    ))
    (listed,) = evt("dlq", "list").json()
    assert listed["error"] == f"ValueError: a negative total: -2 (model.py, line {check})"
    shown = evt("dlq", "show", str(listed["id"])).json()[0]
    assert {k: shown[k] for k in FIELDS} == listed
    folder = str(tmp_path)
    # From the handler down, none of evt's own frames above it (the lines of carets that
    # point into a line differ between Python versions).
    assert [line for line in shown["errorDetail"].splitlines() if line.strip(" ^~")] == [
        "Traceback (most recent call last):",
        f'  File "{folder}/model.py", line {insert}, in placed',
        "    db.execute(\"INSERT INTO totals VALUES (?, ?)\", [event.id, checked(event.data)])",
        f'  File "{folder}/model.py", line {check}, in checked',
        "    raise ValueError(f\"a negative total: {data['total']}\")",
        "ValueError: a negative total: -2",
    ]
    # the event as evt read prints it: at its latest version, upcast
    assert shown["event"] == evt("read", "order-2").json()[0]
    assert (shown["event"]["version"], shown["event"]["data"]) == (2, {"total": -2, "cents": -200})


def test_show_of_a_consumer_gives_the_end_of_the_commands_stderr(evt, tmp_path):
    evt("append", "s-1", "t.x", '{"n": 1}', "-q")
    script = "echo step one >&2; echo step two >&2; echo 'it broke: no disk' >&2; exit 4"
    r = evt("consume", "mailer", "--exec", script, "--max-attempts", "1")
    assert r.exit_code == 0
    (listed,) = evt("dlq", "list").json()
    assert listed["error"] == "command failed with exit status 4: it broke: no disk"
    shown = evt("dlq", "show", str(listed["id"])).json()[0]
    assert shown["errorDetail"] == "command failed with exit status 4; its stderr ends:\nstep one\nstep two\nit broke: no disk"
    assert shown["event"] == evt("read").json()[0]
    # retried and failing again: the detail is the new failure's
    evt("consume", "mailer", "--exec", "echo once >&2; echo twice >&2; exit 5")
    assert evt("dlq", "retry", str(listed["id"])).exit_code == 7
    again = evt("dlq", "show", str(listed["id"])).json()[0]
    assert (again["error"], again["attempts"]) == ("command failed with exit status 5: twice", 2)
    assert again["errorDetail"] == "command failed with exit status 5; its stderr ends:\nonce\ntwice"


def test_a_one_line_failure_has_that_line_as_its_detail(evt):
    evt("append", "s-1", "t.x", "-q")
    evt("consume", "quiet", "--exec", "exit 3", "--max-attempts", "1")
    shown = evt("dlq", "show", "1").json()[0]
    assert shown["error"] == shown["errorDetail"] == "command failed with exit status 3"


def made_by_format_4(path: str, *, store: bool) -> sqlite3.Connection:
    """A file as evt made it before dead letters had a detail: an events store of format 4,
    or a projection's own target file."""
    from test_broker_urls import store_at_format_4

    from evt.log import migrations

    if store:
        return store_at_format_4(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in migrations.BOOKKEEPING:
        conn.execute(statement)
    return conn


def test_dead_letters_made_before_the_detail_column_show_and_upgrade(evt, tmp_path):
    from evt.log import migrations

    store = made_by_format_4("events.db", store=True)
    store.execute(
        "INSERT INTO events (position, stream, revision, id, type, timestamp, data) VALUES "
        "(1, 's-1', 1, 'e1', 't', '2026-01-01T00:00:00.000000Z', '{\"key\":\"a\",\"n\":0}')"
    )
    store.execute("UPDATE evt_sequences SET value = 2")
    old = "INSERT INTO evt_dead_letters (id, consumer, position, event_id, stream, type, error, attempts, first_failed_at, last_failed_at) VALUES (?, ?, 1, 'e1', 's-1', 't', ?, 1, '2026-01-01T00:00:01.000000Z', '2026-01-01T00:00:01.000000Z')"
    store.execute(old, (1, "mailer", "command failed with exit status 1: no"))
    store.close()
    target = made_by_format_4("read.db", store=False)
    target.execute(old, (2, "elsewhere", "IntegrityError: CHECK constraint failed: n > 0"))
    target.execute("INSERT INTO evt_checkpoints (name, kind, position) VALUES ('elsewhere', 'sql', 1)")
    target.execute("CREATE TABLE positive (n INTEGER CHECK (n > 0))")
    target.close()
    (tmp_path / "evt.toml").write_text("[projections.elsewhere]" + TOML.split("[projections.elsewhere]")[1])
    before = (tmp_path / "read.db").read_bytes()
    assert [e["id"] for e in evt("dlq", "list").json()] == [1, 2]
    shown = evt("dlq", "show", "2").json()[0]
    assert shown["errorDetail"] == shown["error"] == "IntegrityError: CHECK constraint failed: n > 0"
    assert shown["event"]["id"] == "e1"
    assert evt("dlq", "show", "1").json()[0]["errorDetail"] == "command failed with exit status 1: no"
    assert (tmp_path / "read.db").read_bytes() == before  # reading dead letters changes no file
    conn = sqlite3.connect("events.db")
    assert conn.execute("PRAGMA user_version").fetchone() == (migrations.FORMAT_VERSION,)
    assert conn.execute("SELECT name FROM evt_migrations WHERE name = '0006_dead_letter_detail'").fetchone()
    # a replay adds the column to the projection's own file, and records the detail in it
    evt("append", "s-2", "t", '{"n": -1}', "-q")
    assert evt("replay").exit_code == 0
    columns = [row[1] for row in sqlite3.connect("read.db").execute("PRAGMA table_info(evt_dead_letters)")]
    assert columns[-1] == "detail"
    (new,) = [e for e in evt("dlq", "list").json() if e["position"] == 2]
    assert evt("dlq", "show", str(new["id"])).json()[0]["errorDetail"].endswith("\nin: INSERT INTO positive VALUES (json_extract(:data, '$.n'));")


def test_purge_of_every_consumer_needs_yes_in_a_script(failed):
    before = failed("dlq", "list").stdout
    r = failed("dlq", "purge")  # stdin is not a terminal here
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == (
        "evt: dlq purge without --consumer deletes the dead letters of every consumer (3 dead letters): "
        "pass --yes to confirm, or --consumer NAME to purge one consumer's\n"
    )
    assert failed("dlq", "list").stdout == before
    r = failed("dlq", "purge", "--yes")
    assert (r.exit_code, r.stderr) == (0, "purging 3 dead letters\n")
    assert failed("dlq", "list").stdout == ""


@pytest.mark.parametrize("answer, left", [("n\n", 3), ("\n", 3), ("", 3), ("y\n", 0), ("yes\n", 0)])
def test_purge_of_every_consumer_asks_on_a_terminal(failed, tmp_path, answer, left):
    import os
    import pty
    import subprocess

    from conftest import evt_command

    terminal, stdin = pty.openpty()
    proc = subprocess.Popen(evt_command() + ["dlq", "purge"], cwd=tmp_path, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(stdin)
    os.write(terminal, answer.encode() + (b"\x04" if not answer else b""))  # Ctrl-D: no answer at all
    out, err = proc.communicate(timeout=30)
    os.close(terminal)
    said = "purging 3 dead letters\n" if left == 0 else "nothing purged\n"
    assert (proc.returncode, out, err.decode()) == (0, b"", "delete 3 dead letters of elsewhere, strict? [y/N] " + said)
    assert len(failed("dlq", "list").json()) == left


def test_show_as_a_table_gives_the_long_fields_whole_below_it(failed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    r = failed("dlq", "show", "3", "--format", "table")
    table, detail, event = r.stdout.split("\n\n")
    assert [line.split()[0] for line in table.splitlines()] == ["field", *FIELDS]
    assert detail == (
        "errorDetail:\n"
        "  IntegrityError: CHECK constraint failed: n > 0\n"
        "  in: INSERT INTO positive VALUES (json_extract(:data, '$.n'));"
    )
    assert event.startswith("event:\n  {\n    \"position\": 2,\n    \"stream\": \"s-1\",\n")
    assert json.loads(event.removeprefix("event:\n")) == failed("read", "--from", "2", "--to", "2").json()[0]
