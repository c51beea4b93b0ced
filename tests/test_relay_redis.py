"""evt relay redis:// and evt ingest redis://, against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import json
import signal
import socket
import time
from datetime import datetime, timezone

from conftest import REDIS_URL
from relay_data import ENVELOPES, count_events, dead_letters, many, ndjson, positions, query, saved_position, spawn, wait_until


def load(evt, envelopes, db="events.db"):
    r = evt("append", "--ndjson", "-", "-q", "--db", db, input=ndjson(envelopes) if isinstance(envelopes, list) else envelopes)
    assert r.exit_code == 0, r


def summary(relay=None, published=0, already=0, position=0):
    return json.dumps({"relay": relay, "published": published, "alreadyPublished": already, "position": position}, separators=(",", ":")) + "\n"


def ingested(name, received=0, appended=0, duplicates=0, dead=0):
    return json.dumps(
        {"ingest": name, "received": received, "appended": appended, "duplicates": duplicates, "deadLettered": dead}, separators=(",", ":")
    ) + "\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_relay_publishes_each_event_once_with_its_position_as_id(evt, redis_broker):
    client, key = redis_broker
    load(evt, ENVELOPES)
    r = evt("relay", REDIS_URL, "--key", key)
    assert (r.exit_code, r.stdout, r.stderr) == (0, summary(f"{REDIS_URL}#{key}", published=4, position=4), "")
    entries = client.xrange(key)
    assert [e[0] for e in entries] == [b"1-0", b"2-0", b"3-0", b"4-0"]
    [stored] = evt("read", "--from", "1", "--to", "1").json()
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields == {
        "type": "order.placed",
        "stream": "order-ord_1",
        "id": "e-1",
        "position": "1",
        "timestamp": "2026-11-20T10:00:00.000001Z",
        "data": json.dumps(stored["data"], separators=(",", ":"), ensure_ascii=False),
        "envelope": json.dumps(stored, separators=(",", ":"), ensure_ascii=False),
    }
    again = evt("relay", REDIS_URL, "--key", key)
    assert again.stdout == summary(f"{REDIS_URL}#{key}", position=4)
    assert client.xlen(key) == 4


def test_a_relay_that_lost_its_position_is_refused_by_redis_not_duplicated(evt, redis_broker):
    client, key = redis_broker
    load(evt, ENVELOPES)
    evt("relay", REDIS_URL, "--key", key, "--batch", "3")
    load(evt, many(2))
    r = evt("relay", REDIS_URL, "--key", key, "--name", "fresh", "--batch", "4")
    assert r.stdout == summary("fresh", published=2, already=4, position=6)
    assert [e[0] for e in client.xrange(key)] == [f"{p}-0".encode() for p in range(1, 7)]
    assert positions("events.db") == [("fresh", "relay", 6), (f"{REDIS_URL}#{key}", "relay", 4)]


def test_a_key_another_store_relays_to_is_refused_not_skipped(evt, redis_broker):
    "Two stores relaying to one key: the second must not count the first's entries as its own."
    client, key = redis_broker
    load(evt, ENVELOPES, db="one.db")
    load(evt, many(6), db="two.db")
    assert evt("relay", REDIS_URL, "--key", key, "--db", "one.db").exit_code == 0
    r = evt("relay", REDIS_URL, "--key", key, "--db", "two.db")
    [first] = evt("read", "--db", "two.db", "--limit", "1").json()
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == (
        f"evt: Redis stream '{key}' is already past entry 1-0, which is not this store's event {first['id']}: "
        "another store or program writes to that key; relay each store to its own --key\n"
    )
    assert positions("two.db") == []
    assert client.xlen(key) == 4  # nothing of the second store's went into the first's stream
    other = f"{key}-foreign"
    client.xadd(other, {"from": "another program"})  # an id from the clock, far above 1-0
    r = evt("relay", REDIS_URL, "--key", other, "--db", "two.db")
    assert (r.exit_code, r.stderr.split(":")[0]) == (6, "evt")
    assert "another store or program writes to that key" in r.stderr


def test_entries_trimmed_or_deleted_since_they_were_published_count_as_published(evt, redis_broker):
    client, key = redis_broker
    load(evt, many(5))
    evt("relay", REDIS_URL, "--key", key, "--name", "first")
    client.xtrim(key, maxlen=2, approximate=False)
    client.xdel(key, "5-0")
    r = evt("relay", REDIS_URL, "--key", key, "--name", "again")
    assert (r.exit_code, r.stdout) == (0, summary("again", already=5, position=5))


def test_key_per_category_keeps_ids_increasing_in_each_key(evt, redis_broker):
    client, key = redis_broker
    load(evt, ENVELOPES)
    r = evt("relay", REDIS_URL, "--key", key, "--key-per-category")
    assert r.stdout == summary(f"{REDIS_URL}#{key}:*", published=4, position=4)
    assert [e[0] for e in client.xrange(f"{key}:order")] == [b"1-0", b"3-0", b"4-0"]
    assert [e[0] for e in client.xrange(f"{key}:account")] == [b"2-0"]
    assert not client.exists(key)


def test_maxlen_trims_the_stream(evt, redis_broker):
    client, key = redis_broker
    load(evt, many(1000))
    r = evt("relay", REDIS_URL, "--key", key, "--maxlen", "10")
    assert r.exit_code == 0, r
    assert client.xlen(key) < 200  # approximate trimming (MAXLEN ~), whole nodes at a time
    assert client.xinfo_stream(key)["last-generated-id"] == b"1000-0"


def test_round_trip_through_redis_keeps_every_field(evt, redis_broker):
    client, key = redis_broker
    load(evt, ENVELOPES, "a.db")
    evt("relay", REDIS_URL, "--key", key, "--db", "a.db")
    r = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert (r.exit_code, r.stdout, r.stderr) == (0, ingested(f"{REDIS_URL}#{key}/g", 4, 4), "")
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout
    assert client.xpending(key, "g")["pending"] == 0
    again = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert again.stdout == ingested(f"{REDIS_URL}#{key}/g")


def test_ingest_claims_entries_left_pending_by_a_consumer_that_died(evt, redis_broker):
    client, key = redis_broker
    load(evt, ENVELOPES, "a.db")
    evt("relay", REDIS_URL, "--key", key, "--db", "a.db")
    load(evt, ENVELOPES[:1], "b.db")  # committed, but the dead consumer never acknowledged it
    client.xgroup_create(key, "g", id="0")
    client.xreadgroup("g", "died", {key: ">"}, count=2)
    r = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert r.stdout == ingested(f"{REDIS_URL}#{key}/g", received=4, appended=3, duplicates=1)
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout
    assert client.xpending(key, "g")["pending"] == 0


def test_bad_messages_become_dead_letters_and_are_acknowledged(evt, redis_broker):
    client, key = redis_broker
    load(evt, ENVELOPES[:1], "b.db")
    conflicting = dict(ENVELOPES[0], data={"other": True})
    client.xadd(key, {"envelope": "not json"})
    client.xadd(key, {"type": "x"})
    client.xadd(key, {"envelope": json.dumps({"stream": "s", "data": {}})})
    client.xadd(key, {"envelope": json.dumps(conflicting)})
    client.xadd(key, {"envelope": json.dumps(ENVELOPES[1])})
    r = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert (r.exit_code, r.stdout) == (0, ingested(f"{REDIS_URL}#{key}/g", received=5, appended=1, dead=4))
    rows = dead_letters("b.db")
    name = f"{REDIS_URL}#{key}/g"
    assert [(c, p, a) for c, p, _, a in rows] == [
        (name, "not json", 1),
        (name, '{"type":"x"}', 1),
        (name, json.dumps({"stream": "s", "data": {}}), 1),
        (name, json.dumps(conflicting), 1),
    ]
    assert [e for _, _, e, _ in rows] == [
        "not JSON: Expecting value: line 1 column 1 (char 0)",
        "the entry has no 'envelope' field",
        "not an evt envelope: missing field 'type'",
        "event id 'e-1' is already stored (position 1, stream 'order-ord_1', type 'order.placed') with other content",
    ]
    assert [e["id"] for e in evt("read", "--db", "b.db").json()] == ["e-1", "e-2"]
    assert client.xpending(key, "g")["pending"] == 0


def test_a_broker_that_is_down_is_exit_6_after_the_retries(evt):
    evt("append", "order-1", "order.placed", "-q")
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    r = evt("relay", url, "--retries", "1", "--backoff", "0.01")
    error = f"Redis at {url} is unavailable: nothing is listening on 127.0.0.1:{port} (connection refused)"
    assert r.exit_code == 6
    assert r.stderr == (
        f"evt: {error}; retrying in 0.01s (retry 1 of 1)\n"
        f"evt: {error} (gave up after 2 attempts; is the broker running?)\n"
    )
    assert r.stdout == ""
    assert positions("events.db") == []
    r = evt("ingest", url, "--group", "g", "--retries", "0")
    assert (r.exit_code, r.stderr) == (6, f"evt: {error} (gave up after 1 attempt; is the broker running?)\n")


def test_usage_errors(evt):
    r = evt("relay", "kafka://127.0.0.1:9092")
    assert (r.exit_code, r.stderr) == (
        2,
        "evt: unsupported broker URL 'kafka://127.0.0.1:9092': expected redis://HOST:PORT/DB, amqp://USER:PASS@HOST:PORT/VHOST or nats://HOST:PORT\n",
    )
    r = evt("ingest", REDIS_URL)
    assert (r.exit_code, r.stderr) == (2, "evt: ingest from Redis needs --group NAME (the consumer group)\n")
    r = evt("relay", REDIS_URL, "--exchange", "x")
    assert (r.exit_code, r.stderr) == (2, "evt: --exchange applies to amqp:// targets\n")


def test_relay_follow_publishes_events_appended_later(evt, redis_broker, tmp_path):
    client, key = redis_broker
    load(evt, ENVELOPES)
    proc = spawn(tmp_path, "relay", REDIS_URL, "--key", key, "--follow")
    try:
        wait_until(lambda: client.exists(key) and client.xlen(key) == 4)
        load(evt, many(3))
        wait_until(lambda: client.xlen(key) == 7 and saved_position("events.db") == 7)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    assert [e[0] for e in client.xrange(key)][-1] == b"7-0"
    # Ctrl-C prints the summary of what it did, as the end of the log would have
    assert (proc.stdout.read().decode(), proc.stderr.read().decode()) == (summary(f"{REDIS_URL}#{key}", published=7, position=7), "")


def test_ingest_follow_prints_its_summary_when_interrupted(evt, redis_broker, tmp_path):
    client, key = redis_broker
    load(evt, many(5), "a.db")
    evt("relay", REDIS_URL, "--key", key, "--db", "a.db")
    proc = spawn(tmp_path, "ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--follow")
    try:
        wait_until(lambda: count_events("b.db") == 5 and client.xpending(key, "g")["pending"] == 0)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    assert (proc.stdout.read().decode(), proc.stderr.read().decode()) == (ingested(f"{REDIS_URL}#{key}/g", received=5, appended=5), "")


def test_relay_killed_mid_way_and_restarted_publishes_each_event_exactly_once(evt, redis_broker, tmp_path):
    client, key = redis_broker
    n = 30000
    load(evt, many(n))
    proc = spawn(tmp_path, "relay", REDIS_URL, "--key", key, "--batch", "100")
    wait_until(lambda: client.exists(key) and client.xlen(key) > 3000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert client.xlen(key) < n, "the relay finished before it was killed; make the test bigger"
    saved = saved_position("events.db")
    r = evt("relay", REDIS_URL, "--key", key, "--batch", "1000")
    result = json.loads(r.stdout)
    assert result["position"] == n and result["published"] + result["alreadyPublished"] == n - saved
    ids = [e[0] for e in client.xrange(key)]
    assert ids == [f"{p}-0".encode() for p in range(1, n + 1)]
    assert len({f[b"id"] for _, f in client.xrange(key)}) == n


def test_ingest_killed_mid_way_and_restarted_appends_each_event_exactly_once(evt, redis_broker, tmp_path):
    client, key = redis_broker
    n = 20000
    load(evt, many(n), "a.db")
    evt("relay", REDIS_URL, "--key", key, "--db", "a.db")
    proc = spawn(tmp_path, "ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--batch", "50")
    wait_until(lambda: count_events("b.db") > 2000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert count_events("b.db") < n, "the ingest finished before it was killed; make the test bigger"
    r = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert r.exit_code == 0, r
    assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(n, n)]
    assert query("b.db", "SELECT id FROM events ORDER BY position LIMIT 3") == [("id-0000000",), ("id-0000001",), ("id-0000002",)]
    assert client.xpending(key, "g")["pending"] == 0


def test_a_broker_that_goes_away_and_comes_back_is_retried_and_nothing_is_lost(evt, redis_broker, tmp_path):
    from relay_data import Proxy

    client, key = redis_broker
    proxy = Proxy(6379)
    url = f"redis://127.0.0.1:{proxy.port}/0"
    load(evt, many(3000))
    proc = spawn(tmp_path, "relay", url, "--key", key, "--follow", "--batch", "10", "--retries", "20", "--backoff", "0.05")
    try:
        wait_until(lambda: client.exists(key) and client.xlen(key) > 100)
        proxy.down()
        load(evt, many(100, start=3000))  # the relay tries to publish them while the broker is away
        time.sleep(0.3)
        proxy.up()
        wait_until(lambda: client.xlen(key) == 3100)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert "retrying in 0.05s (retry 1 of 20)" in proc.stderr.read().decode()
    assert [e[0] for e in client.xrange(key)] == [f"{p}-0".encode() for p in range(1, 3101)]
    proxy.down()


def test_a_relay_that_gives_up_keeps_the_position_the_broker_confirmed(evt, redis_broker, tmp_path):
    from relay_data import Proxy

    client, key = redis_broker
    proxy = Proxy(6379)
    load(evt, many(20000))
    proc = spawn(tmp_path, "relay", f"redis://127.0.0.1:{proxy.port}/0", "--key", key, "--batch", "10", "--retries", "1", "--backoff", "0.01")
    wait_until(lambda: client.exists(key) and client.xlen(key) > 100)
    proxy.down()
    assert proc.wait(10) == 6
    assert proc.stderr.read().decode().endswith("(gave up after 2 attempts; is the broker running?)\n")
    saved = saved_position("events.db")
    assert 0 < saved <= client.xlen(key) < 20000
    r = evt("relay", REDIS_URL, "--key", key, "--name", f"redis://127.0.0.1:{proxy.port}/0#{key}")
    assert json.loads(r.stdout)["position"] == 20000
    assert [e[0] for e in client.xrange(key)] == [f"{p}-0".encode() for p in range(1, 20001)]
    proxy.down()


def test_ingest_survives_the_broker_going_away(evt, redis_broker, tmp_path):
    from relay_data import Proxy

    client, key = redis_broker
    proxy = Proxy(6379)
    load(evt, many(5000), "a.db")
    evt("relay", REDIS_URL, "--key", key, "--db", "a.db")
    url = f"redis://127.0.0.1:{proxy.port}/0"
    proc = spawn(tmp_path, "ingest", url, "--key", key, "--group", "g", "--db", "b.db", "--batch", "20", "--retries", "20", "--backoff", "0.05")
    wait_until(lambda: count_events("b.db") > 200)
    proxy.down()
    time.sleep(0.3)
    proxy.up()
    assert proc.wait(30) == 0
    assert "retrying in 0.05s" in proc.stderr.read().decode()
    assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(5000, 5000)]
    assert client.xpending(key, "g")["pending"] == 0
    proxy.down()


def envelopes_strategy():
    from hypothesis import strategies as st

    name = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1, max_size=12).filter(
        lambda s: s.isprintable() and s.strip() == s
    )
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=8,
    )
    envelope = st.fixed_dictionaries(
        {"stream": name, "type": name, "data": st.dictionaries(st.text(max_size=8), json_value, max_size=4)},
        optional={
            "version": st.integers(1, 5),
            "source": st.none() | st.text(max_size=10),
            "correlationId": st.none() | st.text(max_size=10),
            "causationId": st.none() | st.text(max_size=10),
            "metadata": st.dictionaries(st.text(max_size=8), json_value, max_size=3),
            # years before 1000 are left out: the store writes them with fewer than four digits (reported)
            "timestamp": st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(timezone.utc)).map(lambda d: d.isoformat()),
        },
    )
    return st.lists(envelope, min_size=1, max_size=8)


def test_any_log_survives_the_round_trip_through_redis(redis_broker, tmp_path):
    """Relay from store A, ingest into an empty store B: both read the same."""
    import itertools

    from hypothesis import HealthCheck, given, settings

    from evt import NewEvent, Store
    from evt.relay import ingest, relay
    from evt.relay.redis import RedisSource, RedisTarget

    client, prefix = redis_broker
    counter = itertools.count()

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(envelopes_strategy())
    def check(envelopes):
        n = next(counter)
        key = f"{prefix}-{n}"
        with Store(tmp_path / f"a{n}.db") as a, Store(tmp_path / f"b{n}.db") as b:
            a.write([NewEvent.from_envelope(e) for e in envelopes])
            relay(a, RedisTarget(REDIS_URL, key=key))
            ingest(b, RedisSource(REDIS_URL, key=key, group="g", wait=0.01))
            assert list(b.read_json()) == list(a.read_json())

    check()


def test_an_envelope_without_an_id_takes_the_entry_id_so_a_redelivery_is_idempotent(evt, redis_broker):
    client, key = redis_broker
    entry = client.xadd(key, {"envelope": json.dumps({"stream": "s-1", "type": "t.x", "data": {"n": 1}})}).decode()
    r = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert r.stdout == ingested(f"{REDIS_URL}#{key}/g", received=1, appended=1)
    # the same entry delivered again (e.g. a crash between the commit and XACK): no second event
    client.xgroup_create(key, "g2", id="0")
    again = evt("ingest", REDIS_URL, "--key", key, "--group", "g2", "--db", "b.db", "--wait", "0.1")
    assert again.stdout == ingested(f"{REDIS_URL}#{key}/g2", received=1, duplicates=1)
    assert [e["id"] for e in evt("read", "--db", "b.db").json()] == [f"redis:{key}:{entry}"]
