"""Invariants for all inputs: NDJSON round trips are lossless; bad input never writes."""

from __future__ import annotations

import json
import sqlite3

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evt import NewEvent, Store
from evt.errors import EvtError
from evt.log.ndjson import read_events

names = st.text(alphabet=st.characters(categories=("L", "N"), include_characters="-_.:"), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
timestamps = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: d.isoformat(timespec="microseconds").replace("+00:00", "Z")
)
envelopes = st.fixed_dictionaries(
    {"stream": names, "type": names, "data": objects},
    optional={
        "id": names,
        "version": st.integers(1, 5),
        "source": st.none() | names,
        "correlationId": st.none() | names,
        "causationId": st.none() | names,
        "metadata": objects,
        "timestamp": timestamps,
    },
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def unique_ids(batch):
    seen, out = set(), []
    for e in batch:
        if e.get("id") in seen:
            e = {k: v for k, v in e.items() if k != "id"}
        seen.add(e.get("id"))
        out.append(e)
    return out


@SETTINGS
@given(st.lists(envelopes, min_size=1, max_size=20).map(unique_ids))
def test_ndjson_round_trip_is_lossless(tmp_path_factory, batch):
    folder = tmp_path_factory.mktemp("rt")
    lines = [json.dumps(e, ensure_ascii=False).encode() for e in batch]
    with Store(folder / "a.db") as a:
        a.write(read_events(lines))
        exported = list(a.read_json())
    for original, line in zip(batch, exported):
        stored = json.loads(line)
        for key, value in original.items():
            assert stored[key] == value
    with Store(folder / "b.db") as b:
        b.write(read_events(line.encode() for line in exported))
        assert list(b.read_json()) == exported


wide_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
wide_objects = st.dictionaries(
    st.text(max_size=8),
    st.recursive(wide_scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12),
    max_size=5,
)


@SETTINGS
@given(st.lists(st.tuples(wide_objects, wide_objects), min_size=1, max_size=10))
def test_store_read_gives_back_exactly_what_was_written(tmp_path_factory, payloads):
    "Data and metadata read through the API are the values written: integers beyond 64 bits stay exact, floats are the same floats."
    folder = tmp_path_factory.mktemp("api")
    with Store(folder / "a.db") as store:
        store.write([NewEvent("api-1", "t", data, metadata=metadata) for data, metadata in payloads])
        read = [(e.data, e.metadata) for e in store.read()]
    assert json.dumps(read) == json.dumps([list(p) for p in payloads])


garbage_lines = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["[]", "1", "null", '{"stream": "s-1"}', '{"stream": "", "type": "t", "data": {}}',
                     '{"stream": "s-1", "type": "t", "data": []}', '{"stream": "s-1", "type": "t", "data": {}, "version": 0}',
                     '{"stream": "s-1", "type": "t", "data": {}, "extra": 1}']),
)


@SETTINGS
@given(st.lists(envelopes, max_size=5).map(unique_ids), garbage_lines, st.lists(envelopes, max_size=5).map(unique_ids))
def test_a_bad_line_anywhere_writes_nothing(tmp_path_factory, before, bad, after):
    try:
        NewEvent.from_envelope(json.loads(bad))
        return  # the "garbage" happens to be a valid envelope
    except (ValueError, EvtError, AttributeError, TypeError):
        pass
    if not bad.strip():
        return  # blank lines are skipped
    folder = tmp_path_factory.mktemp("bad")
    path = folder / "events.db"
    with Store(path) as store:
        store.append(NewEvent("seed-1", "t.x", {"x": 1}))
        lines = [json.dumps(e).encode() for e in before] + [bad.encode()] + [json.dumps(e).encode() for e in after]
        try:
            store.write(read_events(lines))
        except EvtError as e:
            assert getattr(e, "line", None) == len(before) + 1
        else:
            raise AssertionError("a bad line was accepted")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)


@SETTINGS
@given(st.text(max_size=40).filter(lambda s: not s.startswith(("-", "@"))))  # "-…" is an option, "@…" a file
@example(" null ")  # every run: null is no data (test_hostile_input), so not a refusal
@example("[]")
def test_bad_data_from_the_cli_never_writes(evt, data):
    try:
        value = json.loads(data)
        if value is None or isinstance(value, dict):  # an object, or null: no data (test_hostile_input)
            return
    except ValueError:
        pass
    result = evt("append", "s-1", "t.x", data)
    assert result.exit_code == 5
    assert result.stdout == "" and result.stderr.startswith("evt: DATA ") and result.stderr.count("\n") == 1
