"""evt dlq: list, show, retry, discard, purge — across the store and projections' own files."""

from __future__ import annotations

import json
import re

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


def test_show_prints_one_dead_letter(failed):
    r = failed("dlq", "show", "3")
    assert r.exit_code == 0
    (entry,) = r.json()
    assert brief([entry]) == [(3, "elsewhere", 2, "e2", 1)]


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
