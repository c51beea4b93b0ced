"""Work and memory that must not grow with the log: `evt tail -n N` reads the last N through
the index and streams them, `tail -f --type` looks at each new event once, `consume --type`
filters in the query and saves its position once for what it skips."""

from __future__ import annotations

import re
import sqlite3

import pytest

from evt import Filter, NewEvent, Store

TYPES = ("order.placed", "order.shipped", "account.opened", "account.credited")


def fill(store: Store, n: int, start: int = 0) -> None:
    "n events over 50 streams of two categories, four types, ten correlation ids."
    store.write(
        NewEvent(f"{TYPES[i % 4].split('.')[0]}-{i % 50}", TYPES[i % 4], {"i": i}, id=f"id-{i}", correlation_id=f"c{i % 10}")
        for i in range(start, start + n)
    )


def plans(conn: sqlite3.Connection, statements: list[str]) -> list[str]:
    "The query plan of each SELECT run, as one text each."
    return [
        " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        for sql in statements
        if sql.lstrip().upper().startswith("SELECT")
    ]


FILTERS = [
    Filter(),
    Filter(stream="order-4"),
    Filter(category="account"),
    Filter(types=["order.placed"]),
    Filter(category="order", types=["order.s*"]),
    Filter(correlation_id="c3"),
]


@pytest.mark.parametrize("filter", FILTERS, ids=lambda f: f"{f.stream}-{f.category}-{f.types}-{f.correlation_id}")
def test_tail_is_a_backwards_query_then_a_forward_range_with_no_sort(tmp_path, filter):
    """The last N are found by one backwards query through the filter's index, then read
    forwards as a range: no step sorts (or otherwise holds) the events, whatever N."""
    with Store(tmp_path / "events.db") as store:
        fill(store, 3000)
        statements: list[str] = []
        for n in (0, 1, 7, 2999, 10**6):
            expected = list(store.read_json(filter))[-n:] if n else []
            statements.clear()
            store.conn.set_trace_callback(statements.append)
            window, head = store.last(filter, n)
            lines = list(store.read_json(window))
            store.conn.set_trace_callback(None)
            assert lines == expected, n
            assert head == 3000
            steps = plans(store.conn, statements)
            assert steps and not any("TEMP B-TREE" in step for step in steps), steps
            if n:  # the forward read is a range of positions (revisions in a stream)
                assert re.search(r"(rowid|position|revision)>\? AND (rowid|position|revision)<\?", steps[-1]), steps[-1]


def test_tail_holds_no_more_in_memory_for_a_large_n(tmp_path):
    "Reading the last 20,000 of 20,000 events holds a few of them at a time, not all."
    import tracemalloc

    with Store(tmp_path / "events.db") as store:
        fill(store, 20000)
        for as_json in (False, True):
            read = store.read_json if as_json else store.read
            tracemalloc.start()
            try:
                window, _ = store.last(Filter(), 20000)
                count = sum(1 for _ in read(window))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert count == 20000
            assert peak < 2 * 1024 * 1024, peak  # holding them all takes well over 10 MiB


def test_tail_command_prints_the_last_n_of_what_read_prints(evt):
    evt("append", "--ndjson", "-", "-q", input="".join(
        f'{{"stream": "{t.split(".")[0]}-{i % 3}", "type": "{t}", "data": {{"i": {i}}}, "correlationId": "c{i % 2}"}}\n'
        for i, t in enumerate(TYPES * 5)
    ))  # fmt: skip
    for args in ([], ["order-1"], ["--category", "account"], ["--type", "order.*"], ["--correlation-id", "c1", "--type", "*.credited"]):
        every = evt("read", *args, "--format", "ndjson").lines
        for n in (0, 1, 3, 100):
            r = evt("tail", *args, "-n", str(n), "--format", "ndjson")
            assert (r.exit_code, r.lines) == (0, every[-n:] if n else []), (args, n)
    r = evt("tail", "order-9")
    assert (r.exit_code, r.stderr) == (4, "evt: stream 'order-9' not found\n")


# -- following ---------------------------------------------------------------------------------


class Stop(Exception):
    pass


def follow_rounds(path, filter: Filter, batches: list[list[NewEvent]], *, after: int = 0) -> tuple[list, list[str]]:
    """Follow with a filter while, round after round, another connection appends a batch of
    events; return what was yielded and the statements the follower ran."""
    statements: list[str] = []
    pending = list(batches)
    writer = Store(path)

    def idle():
        if not pending:
            raise Stop()
        writer.append(pending.pop(0))

    follower = Store(path)
    follower.conn.set_trace_callback(statements.append)
    got = []
    try:
        for event in follower.follow(filter, after=after, idle=idle, poll_interval=0):
            got.append(event)
    except Stop:
        pass
    finally:
        follower.close()
        writer.close()
    return got, statements


def events(n: int, start: int) -> list[NewEvent]:
    return [NewEvent(f"{TYPES[i % 4].split('.')[0]}-{i % 50}", TYPES[i % 4], {"i": i}, id=f"id-{i}") for i in range(start, start + n)]


def test_follow_with_a_type_filter_looks_at_each_new_event_once(tmp_path):
    """No index serves --type: each round reads the positions between what it has looked at
    and the head, never again from its last match."""
    path = tmp_path / "events.db"
    with Store(path) as store:
        fill(store, 1000)
    batches = [events(1, 1000), events(499, 1001), events(1000, 1500), events(1500, 2500), events(1000, 4000)]
    got, statements = follow_rounds(path, Filter(types=["order.placed"]), batches, after=3)
    windows = [tuple(map(int, m)) for s in statements for m in re.findall(r"position >= (\d+) AND position <= (\d+)", s)]
    assert windows == [(4, 1000), (1001, 1001), (1002, 1500), (1501, 2500), (2501, 4000), (4001, 5000)]
    with Store(path) as store:
        assert [e.id for e in got] == [e.id for e in store.read(Filter(types=["order.placed"], start=4))]


def test_follow_of_a_stream_reads_it_by_revision(tmp_path):
    "A stream is followed through its own index, by revision: the rest of the log is not looked at."
    path = tmp_path / "events.db"
    with Store(path) as store:
        store.append([NewEvent("s-1" if i % 3 == 0 else "t-1", "x.happened", {"i": i}) for i in range(12)])  # s-1 at 1, 4, 7, 10
    batches = [
        [NewEvent("t-1", "x.happened", {})] * 5,
        [NewEvent("s-1", "x.happened", {}), NewEvent("t-1", "x.happened", {}), NewEvent("s-1", "x.happened", {})],
    ]
    got, statements = follow_rounds(path, Filter(stream="s-1"), batches, after=4)
    windows = [tuple(map(int, m)) for s in statements for m in re.findall(r"revision >= (\d+) AND revision <= (\d+)", s)]
    assert windows == [(3, 4), (5, 6)]  # none for the round that brought only t-1
    assert [(e.revision, e.position) for e in got] == [(3, 7), (4, 10), (5, 18), (6, 20)]


# -- consuming -------------------------------------------------------------------------------


def test_consume_with_a_type_filter_skips_in_the_query_and_saves_its_position_once(tmp_path):
    """2,000 events it does not take and 3 it does: it runs the command 3 times, commits
    once per event it ran and once for the rest, and ends at the head (a restart does not
    go through the log again)."""
    from evt.processing.consumers import ExecConsumer, consume

    path = tmp_path / "events.db"
    seen = tmp_path / "seen"
    with Store(path) as store:
        fill(store, 1000)
        store.append([NewEvent("audit-1", "audit.flagged", {"n": n}, id=f"a-{n}") for n in range(3)])
        fill(store, 1000, start=1000)
        consumer = ExecConsumer("auditor", f"cat >> '{seen}'", types=["audit.*"])
        statements: list[str] = []
        store.conn.set_trace_callback(statements.append)
        summary = consume(store, consumer)
        store.conn.set_trace_callback(None)
        assert summary.checkpoint == store.head() == 2003
        checkpoint = store.conn.execute("SELECT position FROM evt_checkpoints WHERE name = 'auditor'").fetchone()[0]
        assert checkpoint == 2003
        assert [line.split('"id":"')[1].split('"')[0] for line in seen.read_text().splitlines()] == ["a-0", "a-1", "a-2"]
        commits = [s for s in statements if s.strip().upper() == "COMMIT"]
        assert len(commits) <= 5, len(commits)  # the start, one per event run, the end
        fetched = [s for s in statements if "FROM events" in s and "type GLOB" in s]
        assert fetched, "the type is matched in the query"
        statements.clear()
        store.conn.set_trace_callback(statements.append)
        again = consume(store, consumer)
        store.conn.set_trace_callback(None)
        assert (again.events, again.checkpoint) == (0, 2003)
        assert not [s for s in statements if "INSERT INTO evt_checkpoints" in s and "2003" not in s]


@pytest.mark.parametrize("glob", ["order.placed", "order.*", "*.credited", "order.[ps]*", "[ao]*.[^p]*", "account.?pened"])
def test_consume_type_matches_as_read_type_does(evt, tmp_path, glob):
    evt("append", "--ndjson", "-", "-q", input="".join(
        f'{{"stream": "{t.split(".")[0]}-{i}", "type": "{t}", "data": {{}}, "id": "e-{i}"}}\n' for i, t in enumerate(TYPES * 3)
    ))  # fmt: skip
    (tmp_path / "handle.sh").write_text('#!/bin/sh\necho "$EVT_EVENT_ID" >> handled\n')
    (tmp_path / "handle.sh").chmod(0o755)
    r = evt("consume", "c", "--exec", "./handle.sh", "--type", glob)
    assert r.exit_code == 0, r
    handled = (tmp_path / "handled").read_text().split() if (tmp_path / "handled").exists() else []
    assert handled == [e["id"] for e in evt("read", "--type", glob).json()]
