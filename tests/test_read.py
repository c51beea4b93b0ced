"""evt read, tail, streams, stats: filters, formats, errors."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from evt.log.timestamps import format_timestamp, now_us


def seed(evt):
    "Six events over three streams of two categories and two request chains, at known times."
    rows = [
        ("order-1", "order.placed", "2026-11-01T10:00:00Z", "r1"),
        ("order-1", "order.shipped", "2026-11-02T10:00:00Z", "r2"),
        ("order-2", "order.placed", "2026-11-03T10:00:00Z", "r1"),
        ("account-1", "account.opened", "2026-11-04T10:00:00Z", None),
        ("order-1", "order.delivered", "2026-11-05T10:00:00Z", "r2"),
        ("account-1", "account.credited", "2026-11-06T10:00:00Z", None),
    ]
    batch = "\n".join(
        json.dumps({"stream": s, "type": t, "data": {"n": i}, "timestamp": ts, "correlationId": c, "id": f"e{i}"})
        for i, (s, t, ts, c) in enumerate(rows, 1)
    )
    assert evt("append", "--ndjson", "-", "-q", input=batch).exit_code == 0


def positions(result):
    assert result.exit_code == 0, result
    return [e["position"] for e in result.json()]


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], [1, 2, 3, 4, 5, 6]),
        (["order-1"], [1, 2, 5]),
        (["--category", "account"], [4, 6]),
        (["--type", "order.placed"], [1, 3]),
        (["--type", "order.*"], [1, 2, 3, 5]),
        (["--type", "*.placed", "--type", "account.opened"], [1, 3, 4]),
        (["--correlation-id", "r2"], [2, 5]),
        (["--since", "2026-11-03T10:00:00Z"], [3, 4, 5, 6]),
        (["--until", "2026-11-03T10:00:00Z"], [1, 2, 3]),
        (["--since", "2026-11-02", "--until", "2026-11-04T10:00:00+00:00"], [2, 3, 4]),
        (["--from", "2", "--to", "4"], [2, 3, 4]),
        (["order-1", "--from", "2"], [2, 5]),
        (["order-1", "--to", "2"], [1, 2]),
        (["--limit", "2"], [1, 2]),
        (["--backwards", "--limit", "2"], [6, 5]),
        (["order-1", "--backwards"], [5, 2, 1]),
        (["--category", "order", "--type", "order.placed", "--correlation-id", "r1"], [1, 3]),
        (["--type", "nothing.*"], []),
    ],
)
def test_filters(evt, args, expected):
    seed(evt)
    assert positions(evt("read", *args)) == expected


def test_relative_times(evt):
    recent = format_timestamp(now_us() - 60_000_000)  # a minute ago
    old = format_timestamp(now_us() - 3 * 86400 * 1_000_000)
    batch = "\n".join(json.dumps({"stream": "s-1", "type": "a.b", "data": {}, "timestamp": t}) for t in (old, recent))
    evt("append", "--ndjson", "-", "-q", input=batch)
    assert positions(evt("read", "--since", "5m")) == [2]
    assert positions(evt("read", "--since", "1w")) == [1, 2]
    assert positions(evt("read", "--until", "2d")) == [1]
    assert positions(evt("read", "--since", "2h", "--until", "30s")) == [2]


def test_a_missing_stream_is_exit_4_but_an_empty_filter_is_not(evt):
    seed(evt)
    result = evt("read", "order-9")
    assert (result.exit_code, result.stdout, result.stderr) == (4, "", "evt: stream 'order-9' not found\n")
    assert (evt("read", "order-1", "--type", "nope").exit_code, evt("read", "order-1", "--type", "nope").stdout) == (0, "")


def test_reading_never_creates_a_store(evt, tmp_path):
    for command in (["read"], ["tail"], ["streams"], ["stats"]):
        result = evt(*command)
        assert result.exit_code == 6
        assert result.stderr == "evt: no store at events.db (evt append creates one; pass --db PATH or set EVT_DB to use another)\n"
    assert not (tmp_path / "events.db").exists()


def test_reading_an_empty_file_leaves_it_empty(evt, tmp_path):
    (tmp_path / "events.db").touch()
    for command in (["read"], ["tail"], ["streams"], ["stats"]):
        result = evt(*command)
        assert (result.exit_code, result.stderr) == (6, "evt: events.db is empty, not an evt store yet (evt append creates one)\n")
    assert (tmp_path / "events.db").stat().st_size == 0
    assert evt("append", "s-1", "t.x", "-q").exit_code == 0


def test_bad_time_bound_is_a_usage_error(evt):
    seed(evt)
    result = evt("read", "--since", "last tuesday")
    assert result.exit_code == 2
    assert result.stderr == "evt: --since 'last tuesday': expected RFC 3339 (2026-11-28T02:00:00Z) or an age like 30s, 15m, 2h, 7d, 1w\n"


def test_json_format_is_one_array_and_ndjson_one_envelope_per_line(evt):
    seed(evt)
    ndjson = evt("read", "--limit", "2", "--format", "ndjson").stdout
    array = evt("read", "--limit", "2", "--format", "json").stdout
    assert json.loads(array) == [json.loads(line) for line in ndjson.splitlines()]
    assert array == "[\n" + ",\n".join(ndjson.splitlines()) + "\n]\n"
    assert evt("read", "--type", "none", "--format", "json").stdout == "[]\n"


def test_the_default_in_a_pipe_is_ndjson(evt):
    seed(evt)
    assert evt("read").stdout == evt("read", "--format", "ndjson").stdout


def test_table_format(evt):
    seed(evt)
    out = evt("read", "--format", "table", "--limit", "1").stdout
    assert out.split()[:7] == ["pos", "stream", "rev", "type", "v", "timestamp", "data"]
    assert "order-1" in out and "order.placed" in out


def test_a_table_too_wide_for_the_terminal_cuts_the_data_column_and_keeps_the_others(evt, monkeypatch):
    evt("append", "s-1", "t.x", json.dumps({"pad": "x" * 200}), "-q")
    monkeypatch.setenv("COLUMNS", "80")
    lines = evt("read", "--format", "table").stdout.splitlines()
    assert lines[0].split() == ["pos", "stream", "rev", "type", "v", "timestamp", "data"]
    assert lines[1].split()[:5] == ["1", "s-1", "1", "t.x", "1"]
    assert lines[1].endswith('{"pad":"' + 'x' * 22 + '…')
    assert [len(line) for line in lines] == [len("pos  stream  rev  type  v  timestamp             data"), 80]


def test_bounds_and_limits_beyond_64_bits_mean_no_bound(evt):
    seed(evt)
    huge = str(2**64)
    assert len(evt("read", "--limit", huge).lines) == 6
    assert len(evt("tail", "-n", huge).lines) == 6
    assert len(evt("read", "order-1", "--to", huge).lines) == 3
    assert (evt("read", "--from", huge).exit_code, evt("read", "--from", huge).stdout) == (0, "")


def test_brackets_in_a_table_are_text_not_markup(evt, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    evt("append", "x-[/bold]", "t.[x]", '{"a": "[red]hi[/red]"}', "-q")
    result = evt("read", "--format", "table")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[1].split()[1:4] == ["x-[/bold]", "1", "t.[x]"]
    assert '{"a":"[red]hi[/red]"}' in result.stdout


def test_unknown_format(evt):
    seed(evt)
    result = evt("read", "--format", "xml")
    assert (result.exit_code, result.stderr) == (2, "evt: unknown format 'xml' (choose from table, json, ndjson, cloudevents, cloudevents-json)\n")


def test_tail_prints_the_last_n_in_order(evt):
    seed(evt)
    assert positions(evt("tail", "-n", "2")) == [5, 6]
    assert positions(evt("tail", "order-1", "-n", "2")) == [2, 5]
    assert len(evt("tail").lines) == 6
    assert evt("tail", "order-9").exit_code == 4


def test_streams(evt):
    seed(evt)
    result = evt("streams")
    assert result.json() == [
        {"stream": "account-1", "category": "account", "revision": 2,
         "firstTimestamp": "2026-11-04T10:00:00.000000Z", "lastTimestamp": "2026-11-06T10:00:00.000000Z"},
        {"stream": "order-1", "category": "order", "revision": 3,
         "firstTimestamp": "2026-11-01T10:00:00.000000Z", "lastTimestamp": "2026-11-05T10:00:00.000000Z"},
        {"stream": "order-2", "category": "order", "revision": 1,
         "firstTimestamp": "2026-11-03T10:00:00.000000Z", "lastTimestamp": "2026-11-03T10:00:00.000000Z"},
    ]
    assert [s["stream"] for s in evt("streams", "--category", "account").json()] == ["account-1"]


def test_stats(evt, tmp_path):
    seed(evt)
    [stats] = evt("stats").json()
    assert stats["events"] == 6 and stats["streams"] == 3
    assert (stats["firstPosition"], stats["lastPosition"]) == (1, 6)
    assert stats["types"]["order.placed"] == {"count": 2, "versions": {"1": 2}}
    assert stats["fileSize"] == os.path.getsize(tmp_path / "events.db") + os.path.getsize(tmp_path / "events.db-wal")
    table = evt("stats", "--format", "table").stdout
    assert "order.placed" in table and "v1: 2" in table


def test_indexes_serve_streams_categories_correlations_and_time_ranges(evt):
    seed(evt)
    from evt.log.filters import Filter
    from evt.log.store import COLUMNS

    conn = sqlite3.connect("events.db")
    for f in (Filter(stream="order-1"), Filter(category="order"), Filter(correlation_id="r1"), Filter(since="2026-11-03")):
        sql, params = f.to_sql(COLUMNS)
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
        assert "SCAN events" not in plan, plan


def test_an_age_older_than_any_time_means_the_beginning(evt):
    seed(evt)
    assert positions(evt("read", "--since", "99999999999999999999d")) == [1, 2, 3, 4, 5, 6]
    assert positions(evt("read", "--until", "700000d")) == []  # year 0110: before every event
    assert evt("read", "--since", "５d").exit_code == 2  # ages are ASCII digits


def test_exact_types_match_names_that_hold_glob_characters(evt, tmp_path):
    "A type holding '*', '?' or '[' is matched as it is with --exact-type (and Filter(exact_types=…))."
    batch = "\n".join(
        json.dumps({"stream": "odd-1", "type": t, "data": {}})
        for t in ("price.set", "price.*", "price.[eu]", "price.?", "price.e")
    )
    assert evt("append", "--ndjson", "-", "-q", input=batch).exit_code == 0
    assert positions(evt("read", "--type", "price.*")) == [1, 2, 3, 4, 5]  # a glob: everything
    assert positions(evt("read", "--exact-type", "price.*")) == [2]
    assert positions(evt("read", "--exact-type", "price.[eu]")) == [3]
    assert positions(evt("read", "--exact-type", "price.?", "--exact-type", "price.e")) == [4, 5]
    assert positions(evt("read", "--exact-type", "price.[eu]", "--type", "*.set")) == [1, 3]
    assert positions(evt("tail", "-n", "5", "--exact-type", "price.?")) == [4]
    from evt import Filter, Store

    with Store(tmp_path / "events.db", create=False) as store:
        assert [e.position for e in store.read(Filter(exact_types=["price.*"]))] == [2]
        assert [e.position for e in store.read(Filter(types=["price.[eu]"]))] == [5]  # the glob matches 'price.e'
