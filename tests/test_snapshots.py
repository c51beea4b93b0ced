"""Snapshots: taken every N events and on demand, used only when the same code made them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_helpers import ACCOUNT_7, ndjson, write_model

from evt import NewEvent, Store, load_model
from evt.model import aggregates, snapshots


def snapshot_rows(path: str = "events.db") -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT aggregate, stream, revision, position, state FROM snapshots").fetchall()
    finally:
        conn.close()


def tamper(balance: float, path: str = "events.db") -> None:
    "Rewrite the stored snapshot's state, keeping its fingerprint: evt cannot tell."
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE snapshots SET state = json_set(state, '$.balance', ?)", (balance,))
    conn.close()


@pytest.fixture
def bank(evt):
    write_model(snapshot_every=2)
    Path("evt.toml").write_text('model = "model.py"\n')
    evt("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7))
    return evt


def test_a_snapshot_is_stored_every_n_events(bank):
    assert snapshot_rows() == []  # appending does not fold
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 30.0}]
    assert snapshot_rows() == [("account", "account-7", 5, 5, '{"owner":"Ann","balance":30.0}')]


def test_time_travel_does_not_store_snapshots(bank):
    bank("aggregate", "account", "account-7", "--at-revision", "4")
    bank("aggregate", "account", "account-7", "--history")
    assert snapshot_rows() == []


def test_a_snapshot_of_the_same_code_is_used(bank):
    bank("aggregate", "account", "account-7")
    tamper(1000)
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 1000}]
    assert bank("aggregate", "account", "account-7", "--no-snapshots").json() == [{"owner": "Ann", "balance": 30.0}]


def test_new_events_fold_on_top_of_the_snapshot(bank):
    bank("aggregate", "account", "account-7")
    tamper(1000)
    bank("append", "account-7", "account.credited", '{"amount": 1}', "-q")
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 1001.0}]


def test_a_snapshot_made_by_other_code_is_ignored(bank):
    bank("aggregate", "account", "account-7")
    tamper(1000)
    source = Path("model.py").read_text()
    Path("model.py").write_text(source.replace("self.balance -= event.data", "self.balance = self.balance - event.data"))
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 30.0}]
    assert snapshot_rows()[0][4] == '{"owner":"Ann","balance":30.0}'  # replaced by the new code's snapshot


def test_bumping_the_version_invalidates_snapshots(bank):
    bank("aggregate", "account", "account-7")
    tamper(1000)
    source = Path("model.py").read_text()
    Path("model.py").write_text(source.replace("snapshot_every=2)", "snapshot_every=2, version=2)"))
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 30.0}]


def test_an_added_upcaster_invalidates_snapshots(bank):
    bank("aggregate", "account", "account-7")
    tamper(1000)
    with open("model.py", "a") as f:
        f.write('\n@model.upcaster("account.closed", 1)\ndef closed_v2(data):\n    return data\n')
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 30.0}]


def test_a_changed_class_the_state_uses_invalidates_snapshots(evt):
    extra = """
        class Tag(BaseModel):
            label: str

        @model.aggregate("tagged", snapshot_every=1)
        class Tagged(BaseModel):
            tags: list[Tag] = []

            @on("account.*")
            def tag(self, event):
                self.tags.append(Tag(label=event.type))
    """
    write_model(extra=extra)
    Path("evt.toml").write_text('model = "model.py"\n')
    evt("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7[:2]))
    evt("aggregate", "tagged", "account-7")
    conn = sqlite3.connect("events.db")
    with conn:
        conn.execute("UPDATE snapshots SET state = '{\"tags\": []}'")
    conn.close()
    assert evt("aggregate", "tagged", "account-7").json() == [{"tags": []}]  # same code: the snapshot is used
    write_model(extra=extra.replace("label: str", "label: str\n            weight: int = 1"))
    assert evt("aggregate", "tagged", "account-7").json() == [
        {"tags": [{"label": "account.opened", "weight": 1}, {"label": "account.credited", "weight": 1}]}
    ]


def tamper_state(state: str, path: str = "events.db") -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE snapshots SET state = ?", (state,))
    conn.close()


def test_a_changed_inherited_handler_invalidates_snapshots(evt):
    extra = """
        class Counting(BaseModel):
            seen: int = 0

            @on("account.*")
            def count(self, event):
                self.seen += 1

        @model.aggregate("counted", snapshot_every=1)
        class Counted(Counting):
            last: str | None = None

            @on("account.opened")
            def opened(self, event):
                self.last = event.type
                self.seen += 1
    """
    write_model(extra=extra)
    Path("evt.toml").write_text('model = "model.py"\n')
    evt("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7[:3]))
    assert evt("aggregate", "counted", "account-7").json() == [{"seen": 3, "last": "account.opened"}]
    tamper_state('{"seen": 99, "last": null}')
    assert evt("aggregate", "counted", "account-7").json() == [{"seen": 99, "last": None}]  # same code: used
    write_model(extra=extra.replace("self.seen += 1\n\n", "self.seen += 10\n\n"))
    assert evt("aggregate", "counted", "account-7").json() == [{"seen": 21, "last": "account.opened"}]


def test_a_changed_initial_state_invalidates_snapshots(evt):
    extra = """
        START = {"events": 0}

        @model.aggregate("counter", initial=START, snapshot_every=1)
        def counter(state, event):
            state["events"] += 1
    """
    write_model(extra=extra)
    Path("evt.toml").write_text('model = "model.py"\n')
    evt("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7[:2]))
    assert evt("aggregate", "counter", "account-7").json() == [{"events": 2}]
    write_model(extra=extra.replace('START = {"events": 0}', 'START = {"events": 100}'))
    assert evt("aggregate", "counter", "account-7").json() == [{"events": 102}]


def test_a_failing_handler_is_one_line(evt):
    write_model(extra="""
        class Tag(BaseModel):
            label: str
            weight: int

        @model.aggregate("tagged")
        class Tagged(BaseModel):
            tags: list[Tag] = []

            @on("account.*")
            def tag(self, event):
                self.tags.append(Tag(label=event.type))
    """)
    evt("append", "--ndjson", "-", "-q", "--model", "model.py", input=ndjson(ACCOUNT_7[:1]))
    result = evt("aggregate", "tagged", "account-7", "--model", "model.py")
    line = next(n for n, text in enumerate(Path("model.py").read_text().splitlines(), 1) if "Tag(label=event.type)" in text)
    assert (result.exit_code, result.stderr) == (  # the line of the user's code, though pydantic raised
        7, f"evt: aggregate 'tagged' raised ValidationError: weight: Field required (model.py, line {line}) on account-7 revision 1 (account.opened)\n"
    )  # fmt: skip


def test_a_snapshot_this_code_cannot_read_is_ignored(bank):
    bank("aggregate", "account", "account-7")
    conn = sqlite3.connect("events.db")
    with conn:
        conn.execute("UPDATE snapshots SET state = '{\"balance\": \"not a number\"}'")
    conn.close()
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 30.0}]


def test_time_travel_before_the_snapshot_folds_from_the_start(bank):
    bank("aggregate", "account", "account-7")
    tamper(1000)
    assert bank("aggregate", "account", "account-7", "--at-revision", "4").json() == [{"owner": "Ann", "balance": -20.0}]
    assert bank("aggregate", "account", "account-7", "--at-revision", "5").json() == [{"owner": "Ann", "balance": 1000}]


def test_snapshot_on_demand(bank):
    source = Path("model.py").read_text()
    Path("model.py").write_text(source.replace("snapshot_every=2", "snapshot_every=None"))
    bank("aggregate", "account", "account-7")
    assert snapshot_rows() == []
    result = bank("aggregate", "account", "account-7", "--snapshot")
    assert (result.exit_code, result.stdout) == (0, '{"owner":"Ann","balance":30.0}\n')
    assert result.stderr == "snapshot of account account-7 at revision 5 stored\n"
    assert snapshot_rows() == [("account", "account-7", 5, 5, '{"owner":"Ann","balance":30.0}')]


def test_snapshot_cannot_be_combined_with_time_travel(bank):
    result = bank("aggregate", "account", "account-7", "--snapshot", "--at-revision", "2")
    assert result.exit_code == 2
    assert result.stderr == "evt: --snapshot stores the state at the stream's head; drop --at, --at-revision and --no-snapshots\n"


def test_a_snapshot_that_does_not_match_its_stream_is_ignored(bank):
    bank("aggregate", "account", "account-7")
    conn = sqlite3.connect("events.db")
    with conn:
        conn.execute("UPDATE snapshots SET position = 99, state = json_set(state, '$.balance', 1000)")
    conn.close()
    assert bank("aggregate", "account", "account-7").json() == [{"owner": "Ann", "balance": 30.0}]


def test_a_read_only_store_still_folds(bank, tmp_path):
    Path("events.db").chmod(0o444)
    tmp_path.chmod(0o555)  # no -wal/-shm files can be created either
    try:
        result = bank("aggregate", "account", "account-7")
    finally:
        tmp_path.chmod(0o755)
        Path("events.db").chmod(0o644)
    if result.exit_code == 6:
        pytest.skip("this SQLite cannot open a WAL store read-only without its -shm file")
    assert result.json() == [{"owner": "Ann", "balance": 30.0}]


def test_migration_is_recorded(bank):
    conn = sqlite3.connect("events.db")
    names = [row[0] for row in conn.execute("SELECT name FROM evt_migrations ORDER BY name")]
    conn.close()
    assert "0003_snapshots" in names


# -- invariants ---------------------------------------------------------------------

FOLD_MODEL = '''
from pydantic import BaseModel
from evt import Model, on

model = Model()


@model.aggregate("ledger", snapshot_every=EVERY)
class Ledger(BaseModel):
    balance: float = 0
    lowest: float = 0
    count: int = 0
    notes: list[str] = []
    flags: dict[str, bool] = {}

    @on("money.in")
    def money_in(self, event):
        self.balance += event.data["amount"]
        self.count += 1

    @on("money.out")
    def money_out(self, event):
        self.balance -= event.data["amount"]
        self.lowest = min(self.lowest, self.balance)
        self.count += 1

    @on("note.*")
    def note(self, event):
        self.notes.append(event.data["text"])
        self.flags[event.data["text"][:1] or "_"] = len(self.notes) % 2 == 0


@model.aggregate("tally", initial={"n": 0, "sum": 0}, snapshot_every=EVERY)
def tally(state, event):
    return {"n": state["n"] + 1, "sum": state["sum"] + event.data.get("amount", 0)}
'''

amounts = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 2)))
events = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["money.in", "money.out"]), amounts.map(lambda a: {"amount": a})),
        st.tuples(st.sampled_from(["note.added", "note.edited"]), st.text(max_size=5).map(lambda t: {"text": t})),
    ),
    min_size=1,
    max_size=40,
)


def fold_store(tmp_path, every: int, history: list[tuple]) -> tuple[Store, object]:
    folder = tmp_path / f"every{every}"
    folder.mkdir(exist_ok=True)
    (folder / "model.py").write_text(FOLD_MODEL.replace("EVERY", str(every)))
    model = load_model(str(folder / "model.py"))
    store = Store(":memory:", model=model)
    store.write([NewEvent("s-1", type_, data) for type_, data in history])
    return store, model


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=events, every=st.integers(1, 12), split=st.integers(0, 40))
def test_folding_from_a_snapshot_equals_folding_from_the_start(tmp_path, history, every, split):
    store, model = fold_store(tmp_path, every, history)
    for name in ("ledger", "tally"):
        agg = model.aggregates[name]
        # a snapshot at an arbitrary revision, then more loads that take their own
        split_at = min(split, len(history)) or 1
        snapshots.save(store, agg, aggregates.load(store, agg, "s-1", at_revision=split_at, use_snapshots=False), wait=True)
        from_snapshot = aggregates.load(store, agg, "s-1")
        assert from_snapshot.snapshot_revision == split_at
        again = aggregates.load(store, agg, "s-1")
        from_start = aggregates.load(store, agg, "s-1", use_snapshots=False)
        assert from_snapshot.state == from_start.state == again.state
        assert repr(from_snapshot.state) == repr(from_start.state)  # same JSON types too (8.0 vs 8)
        steps = list(aggregates.history(store, agg, "s-1"))
        assert steps[-1].state == from_start.state


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=events)
def test_folding_is_deterministic(tmp_path, history):
    store, model = fold_store(tmp_path, 5, history)
    other, _ = fold_store(tmp_path, 5, history)
    for name in ("ledger", "tally"):
        agg = model.aggregates[name]
        first = aggregates.load(store, agg, "s-1", use_snapshots=False).state
        assert aggregates.load(store, agg, "s-1", use_snapshots=False).state == first
        assert aggregates.load(other, agg, "s-1", use_snapshots=False).state == first
        assert agg.canonical(agg.fold(store.read())) == first


def test_the_benchmark_runs(capsys, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["bench_aggregate.py", "--events", "1000", "--repeat", "3"])
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_aggregate.py"
    with pytest.raises(SystemExit):
        runpy.run_path(str(bench), run_name="__main__")
    out = capsys.readouterr().out
    assert "ratio, worst case: " in out and "ratio, best case: " in out


def test_a_busy_store_skips_the_snapshot_without_waiting(bank, evt_proc):
    import time

    writer = sqlite3.connect("events.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing, for as long as it likes
    try:
        started = time.monotonic()
        result = evt_proc("aggregate", "account", "account-7")
        elapsed = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert (result.exit_code, result.stdout, result.stderr) == (0, '{"owner":"Ann","balance":30.0}\n', "")
    assert elapsed < 5  # the busy timeout is 10 s: the snapshot was given up after a moment
    assert snapshot_rows() == []
