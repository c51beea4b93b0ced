"""Many writers at once: threads sharing one Store, processes queueing, writers killed in the queue.

What every test counts: what was acknowledged against what is stored — equal, with
positions 1..N and each stream's revisions 1..n gapless — and that a write that failed
left nothing behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt import Conflict, EvtError, Filter, NewEvent, Store, WrongExpectedRevision
from evt.errors import StoreLocked


def stored(path) -> list[tuple]:
    "(position, stream, revision, id) of every stored event, read with plain sqlite3."
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT position, stream, revision, id FROM events ORDER BY position").fetchall()
    finally:
        conn.close()


def assert_gapless(rows: list[tuple]) -> None:
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    revisions: dict[str, list[int]] = {}
    for _, stream, revision, _ in rows:
        revisions.setdefault(stream, []).append(revision)
    for stream, revs in revisions.items():
        assert revs == list(range(1, len(revs) + 1)), stream


def run_threads(count: int, work) -> list:
    "Run ``work(i)`` in ``count`` threads started together; the exceptions they raised."
    start = threading.Barrier(count)
    errors: list = []

    def body(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# -- threads sharing one Store ------------------------------------------------------------


def test_threads_sharing_a_store_lose_nothing_and_are_never_refused(tmp_path):
    "The report's case: 8 threads, 200 single appends each, expected=0 on new streams, a 1 s busy timeout."
    path = tmp_path / "events.db"
    store = Store(path, busy_timeout=1.0)
    acknowledged: list[list[str]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        for n in range(200):
            [position] = store.write([NewEvent(f"t{i}-{n}", "t.x", {"n": n}, id=f"{i}-{n}", expected=0)])
            acknowledged[i].append((position, f"{i}-{n}"))

    assert run_threads(8, work) == []
    store.close()
    rows = stored(path)
    assert_gapless(rows)
    assert sorted((p, i) for p, _, _, i in rows) == sorted(a for acks in acknowledged for a in acks)
    assert len(rows) == 1600


def test_threads_read_their_own_writes_and_close_leaves_no_wal(tmp_path):
    """Small writes of all threads go through one writer connection; each thread reads
    what it wrote at once (its own connection), and ``close`` closes every connection —
    the writer's too: the last one out checkpoints and removes ``-wal``."""
    path = tmp_path / "events.db"
    store = Store(path)

    def work(i: int) -> None:
        for n in range(30):
            [position] = store.write([NewEvent(f"r{i}-{n}", "t.x", {"n": n})])
            [event] = store.events_at([position])
            assert (event.stream, event.data) == (f"r{i}-{n}", {"n": n})

    assert run_threads(4, work) == []
    assert os.path.exists(f"{path}-wal")
    store.close()
    assert not os.path.exists(f"{path}-wal")
    assert len(stored(path)) == 120


def test_threads_appending_to_the_same_streams_keep_revisions_gapless(tmp_path):
    "Expected revisions under contention: every acknowledged append is stored, every refused one is not."
    path = tmp_path / "events.db"
    store = Store(path)
    ok: list[str] = []
    refused: list[str] = []

    def work(i: int) -> None:
        for n in range(60):
            stream = f"shared-{n % 3}"
            event_id = f"{i}-{n}"
            head = store.stream_revision(stream)
            try:
                store.write([NewEvent(stream, "t.x", {"by": i}, id=event_id, expected=head)])
                ok.append(event_id)
            except WrongExpectedRevision:
                refused.append(event_id)

    assert run_threads(6, work) == []
    store.close()
    rows = stored(path)
    assert_gapless(rows)
    assert sorted(r[3] for r in rows) == sorted(ok)
    assert len(ok) + len(refused) == 360 and ok


REFUSED_AMONG_GROUPED = {
    # refused before it changes anything: the group goes on in one pass
    "expected revision": (
        NewEvent("taken-1", "t.x", expected=0),
        None,
        "stream 'taken-1' already exists, at revision 1 (expected it not to exist)",
    ),
    # refused after its event was inserted: the group is carried out again, each write in a savepoint
    "checkpoint behind": (
        NewEvent("s-b", "t.x"),
        ("pm", 1),
        "checkpoint 'pm' is at position 5; it cannot move back to 1",
    ),
}


@pytest.mark.parametrize("refusal", sorted(REFUSED_AMONG_GROUPED))
def test_a_refused_write_among_grouped_writes_is_undone_alone(tmp_path, refusal):
    """Writes queued behind the writer holding the turn are carried out by it in one transaction;
    one that fails (its expected revision; its checkpoint, after its event was placed) leaves the
    others alone, its writer gets its own error, and nothing of it is stored."""
    path = tmp_path / "events.db"
    store = Store(path)
    store.write([NewEvent("taken-1", "t.x")], checkpoint=("pm", 5))
    refused_event, refused_checkpoint, message = REFUSED_AMONG_GROUPED[refusal]
    results: dict[str, object] = {}
    holding = threading.Event()
    let_go = threading.Event()

    def holder() -> None:
        with store.transaction():
            holding.set()
            let_go.wait(10)

    def writer(name: str, event: NewEvent, checkpoint) -> None:
        try:
            results[name] = store.write([event], checkpoint=checkpoint)
        except EvtError as e:
            results[name] = e

    first = threading.Thread(target=holder)
    first.start()
    holding.wait(10)
    plan = [
        ("a", NewEvent("s-a", "t.x", expected=0), None),
        ("b", refused_event, refused_checkpoint),
        ("c", NewEvent("s-c", "t.x", expected=0), ("other", 1)),
    ]
    threads = []
    for name, event, checkpoint in plan:  # queued one after the other, in this order
        waiting = len(store.queue._threads._waiters)
        t = threading.Thread(target=writer, args=(name, event, checkpoint))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 10
        while len(store.queue._threads._waiters) == waiting and time.monotonic() < deadline:
            time.sleep(0.001)
    let_go.set()
    for t in [first, *threads]:
        t.join(10)
    assert results["a"] == [2] and results["c"] == [3]
    assert isinstance(results["b"], Conflict)
    assert str(results["b"]) == message
    assert store.checkpoint("pm") == 5 and store.checkpoint("other") == 1
    store.close()
    assert [r[1] for r in stored(path)] == ["taken-1", "s-a", "s-c"]


def test_reads_and_follows_from_many_threads_while_others_write(tmp_path):
    path = tmp_path / "events.db"
    store = Store(path)
    total = 300
    seen: dict[int, list[int]] = {}

    def follower(i: int) -> None:
        positions = seen.setdefault(i, [])
        for event in store.follow(Filter(category="c"), poll_interval=0.005):
            positions.append(event.position)
            if len(positions) == total:
                return

    def writer(i: int) -> None:
        for n in range(total // 3):
            store.write([NewEvent(f"c-{i}", "t.x", {"n": n})])
            assert [e.revision for e in store.read(Filter(stream=f"c-{i}", backwards=True, limit=1))] == [n + 1]

    def work(i: int) -> None:
        (follower if i < 3 else writer)(i - 3 if i >= 3 else i)

    assert run_threads(6, work) == []
    store.close()
    assert all(positions == list(range(1, total + 1)) for positions in seen.values())


@st.composite
def plans(draw):
    "Per thread, a list of writes: (stream, number of events, expectation, id reuse)."
    streams = ["s-1", "s-2", "s-3", "s-4"]
    write = st.tuples(
        st.sampled_from(streams),
        st.integers(1, 4),
        st.sampled_from(["any", "exists", "head", "zero", "stale"]),
        st.booleans(),
    )
    return draw(st.lists(st.lists(write, min_size=1, max_size=6), min_size=2, max_size=5))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans())
def test_any_interleaving_of_threads_stores_exactly_what_was_acknowledged(tmp_path_factory, plan):
    """Hypothesis draws what each thread writes (expected revisions that may fail, ids given
    twice); whatever the interleaving, each write is all or nothing and only acknowledged
    writes are stored, at the positions they were acknowledged with."""
    path = tmp_path_factory.mktemp("interleave") / "events.db"
    store = Store(path, busy_timeout=5)
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        for n, (stream, size, expectation, reuse) in enumerate(plan[i]):
            head = store.stream_revision(stream)
            expected = {"any": "any", "exists": "exists", "head": head, "zero": 0, "stale": max(head - 1, 0)}[expectation]
            events = [
                NewEvent(stream, "t.x", {"i": i, "n": n, "k": k}, id=f"{i}-{n}-{k}", expected=expected if k == 0 else "any")
                for k in range(size)
            ]
            if reuse:  # the first event again, as a retry would: idempotent
                events.append(NewEvent(stream, "t.x", {"i": i, "n": n, "k": 0}, id=f"{i}-{n}-0"))
            try:
                positions = store.write(events)
            except Conflict:
                continue
            with lock:
                for event, position in zip(events, positions):
                    assert acknowledged.setdefault(event.id, position) == position

    assert run_threads(len(plan), work) == []
    store.close()
    rows = stored(path)
    assert_gapless(rows)
    assert {r[3]: r[0] for r in rows} == acknowledged


# -- processes ------------------------------------------------------------------------------

WRITER = r"""
import json, sys, time
from evt import NewEvent, Store
from evt.errors import StoreLocked
path, name, batches, size, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
store = Store(path, busy_timeout=timeout)
print("ready", flush=True)
sys.stdin.readline()
acked, refused = [], 0
for b in range(batches):
    events = [NewEvent(f"{name}-{b}", "t.x", {"k": k}, id=f"{name}-{b}-{k}", expected=0 if k == 0 else "any") for k in range(size)]
    try:
        acked += store.write(events)
    except StoreLocked:
        refused += 1
print(json.dumps({"acked": acked, "refused": refused}), flush=True)
"""


def start_writers(path, count: int, batches: int, size: int, timeout: float) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{i}", str(batches), str(size), str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for i in range(count)
    ]
    for p in procs:
        assert p.stdout.readline() == "ready\n"
    return procs


def test_processes_with_a_short_busy_timeout_all_get_their_turn(tmp_path):
    "The report's case: 8 processes appending 20-event batches with a 1 s busy timeout: none refused."
    import json

    path = tmp_path / "events.db"
    Store(path).close()
    procs = start_writers(path, 8, 15, 20, 1.0)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [r["refused"] for r in results] == [0] * 8
    rows = stored(path)
    assert_gapless(rows)
    assert sorted(p for r in results for p in r["acked"]) == [r[0] for r in rows] and len(rows) == 8 * 15 * 20


HOLDER = r"""
import sys, time
from evt import NewEvent, Store
store = Store(sys.argv[1])
with store.transaction():
    store.write_in_transaction([NewEvent("holder-1", "t.x")])
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_while_holding_the_turn_blocks_no_one(tmp_path):
    path = tmp_path / "events.db"
    Store(path).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "holding\n"
    waiters = start_writers(path, 3, 2, 5, 30.0)
    for p in waiters:
        p.stdin.write("go\n")
        p.stdin.flush()
    time.sleep(0.2)  # they are queued behind the holder now (nothing to wait for: it never lets go)
    assert all(p.poll() is None for p in waiters)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    import json

    results = [json.loads(p.communicate(timeout=60)[0]) for p in waiters]
    assert [r["refused"] for r in results] == [0, 0, 0]
    rows = stored(path)
    assert_gapless(rows)
    assert "holder-1" not in {r[1] for r in rows} and len(rows) == 30  # its transaction died with it
    assert sorted(os.listdir(tmp_path)) == ["events.db", "events.db-lock"]  # nothing to clean by hand


def test_a_writer_killed_while_waiting_in_the_queue_blocks_no_one(tmp_path):
    path = tmp_path / "events.db"
    store = Store(path)
    with store.transaction():  # this process holds the turn while the others queue
        waiters = start_writers(path, 3, 1, 5, 30.0)
        for p in waiters:
            p.stdin.write("go\n")
            p.stdin.flush()
        time.sleep(0.2)
        waiters[1].send_signal(signal.SIGKILL)
        waiters[1].wait()
    import json

    results = [json.loads(p.communicate(timeout=60)[0]) for p in (waiters[0], waiters[2])]
    assert [r["refused"] for r in results] == [0, 0]
    store.close()
    assert len(stored(path)) == 10


def test_the_busy_timeout_still_bounds_the_wait(tmp_path):
    "A writer whose turn does not come within the busy timeout is refused (exit 6's error), having written nothing."
    path = tmp_path / "events.db"
    holder = Store(path)
    with holder.transaction():
        waiter = Store(path, busy_timeout=0.3)
        errors = run_threads(1, lambda i: waiter.write([NewEvent("late-1", "t.x")]))
    holder.close()
    assert len(errors) == 1 and isinstance(errors[0], StoreLocked) and errors[0].exit_code == 6
    assert str(errors[0]) == f"{path} is locked by another process (waited past the busy timeout); try again, or raise EVT_BUSY_TIMEOUT"
    assert waiter.write([NewEvent("late-1", "t.x")]) == [1]  # the queue is usable again
    waiter.close()


def hold_sqlite_lock(path, seconds: float | None) -> sqlite3.Connection:
    """A writer that does not queue (the sqlite3 shell, an older evt): SQLite's lock held
    on a plain connection, let go after ``seconds`` (None: by the caller)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT OR REPLACE INTO evt_sequences VALUES ('foreign', 1)")
    if seconds is not None:
        threading.Timer(seconds, lambda: other.execute("COMMIT")).start()
    return other


@pytest.mark.parametrize("size", [1, 600], ids=["a small write", "a write of several chunks"])
def test_a_writer_that_does_not_queue_is_waited_for_within_the_busy_timeout(tmp_path, size):
    """evt's writers queue among themselves, then wait for SQLite's lock: one held by a
    writer outside the queue is waited for (not refused at once), and the write goes in."""
    path = tmp_path / "events.db"
    store = Store(path, busy_timeout=10)
    store.write([NewEvent("s-1", "t.x")])
    other = hold_sqlite_lock(path, 0.4)
    began = time.monotonic()
    store.write([NewEvent("s-2", "t.x") for _ in range(size)])
    assert time.monotonic() - began >= 0.35
    other.close()
    again = hold_sqlite_lock(path, 0.3)  # and again, on the same connection (its wait was put back)
    store.write([NewEvent("s-3", "t.x")])
    again.close()
    store.close()
    rows = stored(path)
    assert_gapless(rows)
    assert [r[1] for r in rows] == ["s-1"] + ["s-2"] * size + ["s-3"]


@pytest.mark.parametrize("queued", [False, True], ids=["first in line", "after queueing behind a thread"])
def test_a_writer_that_does_not_queue_is_waited_for_no_longer_than_the_busy_timeout(tmp_path, queued):
    """The busy timeout bounds the whole wait, in the queue and for SQLite's lock held
    outside it: refused (StoreLocked) about when it runs out, never at once, nothing written."""
    path = tmp_path / "events.db"
    store = Store(path, busy_timeout=1.0)
    store.write([NewEvent("s-1", "t.x")])
    other = hold_sqlite_lock(path, None)
    errors: list = []
    if queued:  # another thread's write holds the turn (waiting for SQLite's lock) first
        first = threading.Thread(target=lambda: errors.extend(run_threads(1, lambda i: store.write([NewEvent("s-0", "t.x")]))))
        first.start()
        time.sleep(0.3)
    began = time.monotonic()
    with pytest.raises(StoreLocked):
        store.write([NewEvent("s-2", "t.x")])
    waited = time.monotonic() - began
    if queued:
        first.join()
        assert len(errors) == 1 and isinstance(errors[0], StoreLocked)
    other.execute("ROLLBACK")
    other.close()
    # 1 s in all: in line behind the first for 0.7 s, then what is left for SQLite's lock (not 1 s again)
    assert 0.8 <= waited < 1.5
    assert [r[1] for r in stored(path)] == ["s-1"]
    assert store.write([NewEvent("s-3", "t.x")]) == [2]
    store.close()


def test_the_cli_waits_in_the_queue_too(tmp_path, evt_proc):
    "A shell loop's `evt append` queues behind a writer holding the turn, then goes through."
    holder = Store(tmp_path / "events.db")
    with holder.transaction():
        proc = subprocess.Popen([sys.executable, "-m", "evt", "append", "s-1", "t.x", "-q"], cwd=tmp_path, stderr=subprocess.PIPE)
        time.sleep(0.3)
        assert proc.poll() is None  # waiting for its turn
    assert proc.wait(30) == 0
    holder.close()
    assert [r[1] for r in stored(tmp_path / "events.db")] == ["s-1"]


@pytest.mark.parametrize("timeout", ["0.2"])
def test_the_cli_refused_past_the_busy_timeout_is_exit_6(tmp_path, evt_proc, timeout):
    holder = Store(tmp_path / "events.db")
    with holder.transaction():
        result = evt_proc("append", "s-1", "t.x", env={"EVT_BUSY_TIMEOUT": timeout})
    holder.close()
    assert result.exit_code == 6
    assert result.stderr == "evt: events.db is locked by another process (waited past the busy timeout); try again, or raise EVT_BUSY_TIMEOUT\n"
    assert stored(tmp_path / "events.db") == []


def test_a_store_in_memory_is_shared_by_threads_too():
    store = Store(":memory:")

    def work(i: int) -> None:
        for n in range(50):
            store.write([NewEvent(f"m-{i}", "t.x", {"n": n}, expected=n)])

    assert run_threads(4, work) == []
    assert store.head() == 200 and {s["revision"] for s in store.streams()} == {50}
    store.close()


def _nested(depth: int) -> dict:
    "An object nesting ``depth`` levels of objects and arrays, built without recursion."
    value: dict | list = {}
    for level in range(depth - 1):
        value = [value] if level % 2 else {"o": value}
    return value if isinstance(value, dict) else {"o": value}


def _holding_itself() -> dict:
    value: dict = {"n": 1}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    "data, message",
    [
        ({"x": float("nan")}, "data is not JSON: Out of range float values are not JSON compliant"),
        ({"x": {1, 2}}, "data is not JSON: Object of type set is not JSON serializable"),
        (_nested(101), "data nests objects and arrays more than 100 levels deep"),
        (_nested(5000), "data nests objects and arrays more than 100 levels deep"),  # deeper than Python recurses
        (_holding_itself(), "data nests objects and arrays more than 100 levels deep"),
        ({"text": "[" * 300, "inner": _nested(50)}, None),  # brackets in strings do not count: stored
    ],
)
def test_data_that_is_not_json_is_invalid_input_and_nothing_is_written(tmp_path, data, message):
    from evt import InvalidInput

    with Store(tmp_path / "events.db") as store:
        if message is None:
            store.write([NewEvent("s-1", "t.x", {"ok": 1}), NewEvent("s-1", "t.x", data)])
            assert [e.data for e in store.read()][1] == data
            return
        with pytest.raises(InvalidInput) as refused:
            store.write([NewEvent("s-1", "t.x", {"ok": 1}), NewEvent("s-1", "t.x", data)])
        assert str(refused.value) == message
        assert store.head() == 0
        with pytest.raises(InvalidInput) as refused:  # as metadata too
            store.write([NewEvent("s-1", "t.x", metadata=data)])
        assert str(refused.value) == message.replace("data", "metadata", 1)
        assert store.head() == 0


def test_generated_ids_are_never_the_same_in_threads_or_a_forked_child(monkeypatch):
    """Each thread keeps an id factory for its next write, and a forked child makes new
    ones: a copy of the parent's would count on from the same last id in both processes.
    The clock is stopped, so every id comes from one millisecond's counter."""
    from evt.log import envelope

    monkeypatch.setattr(envelope.time, "time_ns", lambda: 1_800_000_000_000_000_000)
    parent = [envelope.thread_ids()() for _ in range(3)]
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(writer, " ".join(envelope.thread_ids()() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    child = os.read(reader, 4096).decode().split()
    os.waitpid(pid, 0)
    os.close(reader)
    parent += [envelope.thread_ids()() for _ in range(3)]
    threads: list[str] = []
    run_threads(4, lambda i: threads.extend(envelope.thread_ids()() for _ in range(3)))
    every = parent + child + threads
    assert len(child) == 3 and len(threads) == 12
    assert len(set(every)) == len(every)


def test_waits_in_the_kernel_reuse_a_helper_thread_and_a_forked_child_makes_its_own():
    "A writer queued behind another process waits on a helper thread; one kept idle, not one started per wait."
    from evt.log import writers

    def ran_on() -> int:
        done, where = threading.Event(), []
        writers.run_on_helper(lambda: (where.append(threading.get_ident()), done.set()))
        assert done.wait(5)
        deadline = time.monotonic() + 5
        while not writers._IDLE_HELPERS:  # the helper goes back to the idle ones just after its job
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return where[0]

    assert len({ran_on() for _ in range(20)}) == 1
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the parent's helper threads do not exist here
        try:
            os.write(writer, b"%d" % ran_on())
        finally:
            os._exit(0)
    os.close(writer)
    got = os.read(reader, 64)
    os.waitpid(pid, 0)
    os.close(reader)
    assert got.isdigit()


def test_a_store_opened_before_fork_works_in_parent_and_children(tmp_path):
    """Forked children start with connections and a place in line of their own (SQLite
    connections must not cross a fork); the parent's are untouched, and all of them write at once."""
    path = tmp_path / "events.db"
    store = Store(path)
    store.write([NewEvent("before-1", "t.x")])
    children = []
    for k in range(3):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i in range(50):
                    store.write([NewEvent(f"child{k}-{i}", "t.x")])
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    for i in range(50):
        store.write([NewEvent(f"parent-{i}", "t.x")])
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0, 0, 0]
    store.write([NewEvent("after-1", "t.x")])
    store.close()
    rows = stored(path)
    assert_gapless(rows)
    assert len(rows) == 202 and rows[-1][1] == "after-1"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_ctrl_c_just_as_the_turn_comes_gives_it_back(tmp_path, monkeypatch):
    """A writer queued behind another process, interrupted in the instant its turn came
    (the helper thread holds the lock file), lets the lock go: other processes do not
    wait for this one to write again or exit."""
    import fcntl

    from evt.log import writers

    path = str(tmp_path / "events.db")
    queue = writers.WriterQueue(path)
    other = os.open(path + writers.LOCK_SUFFIX, os.O_RDWR | os.O_CREAT)  # another process's descriptor
    fcntl.flock(other, fcntl.LOCK_EX)  # ... and its turn

    class TurnThenCtrlC:
        "The baton the writer waits on: the wait ends with Ctrl-C just after the helper handed the turn over."

        def __init__(self):
            self.lock, self.waits = threading.Lock(), 0

        def acquire(self, blocking=True, timeout=-1):
            self.waits += 1
            if self.waits == 1:  # taken by the writer before it queues
                return self.lock.acquire()
            fcntl.flock(other, fcntl.LOCK_UN)  # the other process is done: the helper gets the turn
            self.lock.acquire()  # ... and hands it over
            raise KeyboardInterrupt

        def release(self):
            self.lock.release()

    monkeypatch.setattr(writers, "_new_baton", TurnThenCtrlC)
    with pytest.raises(KeyboardInterrupt):
        queue.acquire(10)
    monkeypatch.undo()
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: another process takes the turn at once
    fcntl.flock(other, fcntl.LOCK_UN)
    assert queue.acquire(1) == 0.0  # and this process's line is free too
    queue.release()
    os.close(other)
    queue.close()
