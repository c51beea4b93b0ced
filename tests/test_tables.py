"""Tables on a terminal: at 60, 80 and 120 columns no key column is lost, what is cut shows
…, what is left out is said, and widths hold for the whole output."""

from __future__ import annotations

import json
import re

import pytest

EVENTS = [
    {"stream": "account-1", "type": "account.opened", "timestamp": "2026-11-20T10:00:00Z", "data": {"owner": "Ann"}},
    {"stream": "account-1", "type": "account.credited", "timestamp": "2026-11-20T10:01:00.5Z",
     "data": {"amount": 100, "note": "salary for November, paid on time"}},
    {"stream": "order-ord_0001", "type": "order.placed", "version": 2, "timestamp": "2026-11-20T10:02:00Z",
     "data": {"orderId": "ord_0001", "total": 42.5}},
]


@pytest.fixture
def store(evt):
    result = evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS))
    assert result.exit_code == 0, result.stderr
    return evt


def table(evt, monkeypatch, width: int, *args: str):
    monkeypatch.setenv("COLUMNS", str(width))
    result = evt(*args, "--format", "table")
    assert result.exit_code == 0, result.stderr
    assert all(len(line) <= width for line in result.lines), result.stdout
    return result


@pytest.mark.parametrize(
    "width, note, lines",
    [
        (60, "(not shown at 60 columns: rev, v, timestamp; --format json shows every field)\n", [
            'pos  stream          type              data',
            '  1  account-1       account.opened    {"owner":"Ann"}',
            '  2  account-1       account.credited  {"amount":100,"note"…',
            '  3  order-ord_0001  order.placed      {"orderId":"ord_0001…',
        ]),
        (80, "(not shown at 80 columns: rev, v, timestamp; --format json shows every field)\n", [
            'pos  stream          type              data',
            '  1  account-1       account.opened    {"owner":"Ann"}',
            '  2  account-1       account.credited  {"amount":100,"note":"salary for Novembe…',
            '  3  order-ord_0001  order.placed      {"orderId":"ord_0001","total":42.5}',
        ]),
        (120, "", [
            'pos  stream          rev  type              v  timestamp             data',
            '  1  account-1         1  account.opened    1  2026-11-20T10:00:00Z  {"owner":"Ann"}',
            '  2  account-1         2  account.credited  1  2026-11-20T10:01:00Z  {"amount":100,"note":"salary for November, paid on…',
            '  3  order-ord_0001    1  order.placed      2  2026-11-20T10:02:00Z  {"orderId":"ord_0001","total":42.5}',
        ]),
    ],
)
def test_read_keeps_position_and_stream_cuts_data_with_an_ellipsis_and_says_what_it_left_out(store, monkeypatch, width, note, lines):
    result = table(store, monkeypatch, width, "read")
    assert (result.lines, result.stderr) == (lines, note)


STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def failed(evt):
    "A consumer whose command fails on the credit: one dead letter, stamped now."
    result = evt("consume", "notifier", "--exec", "echo boom >&2; exit 3", "--max-attempts", "1", "--type", "account.credited")
    assert result.exit_code == 0


@pytest.mark.parametrize(
    "width, note, lines",
    [
        (60, "eventId, type, attempts, firstFailedAt, lastFailedAt", [
            "id  consumer  position  error",
            " 1  notifier         2  command failed with exit status 3: …",
        ]),
        (80, "eventId, type, attempts, firstFailedAt", [
            "id  consumer  position  error                               lastFailedAt",
            " 1  notifier         2  command failed with exit status 3…  TIME",
        ]),
        (120, "eventId", [
            "id  consumer  position  type              error                     attempts  firstFailedAt         lastFailedAt",
            " 1  notifier         2  account.credited  command failed with exi…         1  TIME  TIME",
        ]),
    ],
)
def test_dlq_list_never_loses_the_id_and_consumer(store, monkeypatch, width, note, lines):
    failed(store)
    result = table(store, monkeypatch, width, "dlq", "list")
    assert [STAMP.sub("TIME", line) for line in result.lines] == lines
    assert result.stderr == f"(not shown at {width} columns: {note}; --format json shows every field)\n"


@pytest.mark.parametrize(
    "width, lines",
    [
        (60, ["name      kind  checkpoint  lag  deadLetters", "notifier  exec           3    0            1"]),
        (80, ["name      kind  checkpoint  head  lag  deadLetters  lastRunAt", "notifier  exec           3     3    0            1  TIME"]),
        (120, ["name      kind  checkpoint  head  lag  deadLetters  lastRunAt", "notifier  exec           3     3    0            1  TIME"]),
    ],
)
def test_projections_keep_the_name_and_lag(store, monkeypatch, width, lines):
    failed(store)
    result = table(store, monkeypatch, width, "projections")
    assert [STAMP.sub("TIME", line) for line in result.lines] == lines


def test_when_even_the_key_columns_do_not_fit_it_says_so_and_points_to_json(store, monkeypatch):
    failed(store)
    monkeypatch.setenv("COLUMNS", "20")
    result = store("dlq", "list", "--format", "table")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == (
        "evt: the table does not fit in 20 columns (id, consumer, position need 22): widen the terminal, or use --format json\n"
    )


def column_starts(header: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", header)]


def test_widths_hold_for_the_whole_table_chunk_after_chunk(evt, monkeypatch):
    "The first 500 rows set the widths; later, longer values are cut with … and every row stays aligned."
    short = [{"stream": f"s-{i % 7}", "type": "t.x", "data": {"n": i}} for i in range(500)]
    long = [{"stream": f"s-{i % 7}", "type": "much.longer.type.name", "data": {"n": i, "pad": "x" * 50}} for i in range(700)]
    evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in short + long))
    result = table(evt, monkeypatch, 80, "read")
    header, *rows = result.lines
    assert header.split() == ["pos", "stream", "rev", "type", "v", "timestamp", "data"]
    starts = column_starts(header)
    assert len(rows) == 1200
    for row in rows:  # pos and rev are right-aligned numbers: their columns end where the header's do
        cells = row.split()
        assert row.index(cells[1]) == starts[1] and row.index(cells[3], starts[3]) == starts[3], row
    assert rows[0].split()[:2] == ["1", "s-0"]
    assert rows[-1].split()[3] == "muc…"  # the later, longer type is cut to the width the first chunk set
    assert rows[-1].split()[:2] == ["1200", "s-6"]  # the position's width was set by the store's head


def test_a_longer_key_later_widens_its_column_and_is_never_cut(evt, monkeypatch):
    first = [{"stream": "s-1", "type": "t.x", "data": {}} for _ in range(500)]
    later = [{"stream": "a-much-longer-stream-name", "type": "t.x", "data": {}}]
    evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in first + later))
    result = table(evt, monkeypatch, 80, "read")
    assert result.lines[-1].split()[:2] == ["501", "a-much-longer-stream-name"]
    monkeypatch.setenv("COLUMNS", "40")  # tight: the columns under the header stay, whatever it takes
    lines = evt("read", "--format", "table").lines
    assert lines[0].split() == ["pos", "stream", "type", "data"]
    assert [line.split() for line in lines[1:]] == (
        [[str(n), "s-1", "t.x", "{}"] for n in range(1, 501)] + [["501", "a-much-longer-stream-name", "t.x", "{}"]]
    )


def test_stats_shows_the_file_size_in_human_units_on_a_terminal(store, monkeypatch):
    result = table(store, monkeypatch, 80, "stats")
    size = [line for line in result.lines if line.startswith("fileSize")]
    assert len(size) == 1 and re.fullmatch(r"fileSize\s+\d+\.\d KiB", size[0]), size
    assert isinstance(store("stats").json()[0]["fileSize"], int)  # JSON keeps the bytes


def test_streams_sort_naturally_in_a_table_and_by_name_in_json(evt, monkeypatch):
    for name in ("account-10", "account-2", "account-1", "account-02"):
        evt("append", name, "t.x", "-q")
    result = table(evt, monkeypatch, 120, "streams")
    assert [line.split()[0] for line in result.lines[1:]] == ["account-1", "account-02", "account-2", "account-10"]
    assert [s["stream"] for s in evt("streams").json()] == ["account-02", "account-1", "account-10", "account-2"]


def test_cells_stay_one_line(evt, monkeypatch):
    from evt.cli.output import cell

    assert cell("boom\nline two\ttab\x1b[31m") == "boom\\nline two\\ttab\\x1b[31m"
    assert cell("2026-11-20T10:01:00.500000Z") == "2026-11-20T10:01:00Z"
    assert (cell(None), cell({"a": [1]}), cell(3)) == ("", '{"a":[1]}', "3")


def test_human_sizes():
    from evt.cli.output import human_size

    assert [human_size(n) for n in (0, 1023, 1024, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB",
    ]
