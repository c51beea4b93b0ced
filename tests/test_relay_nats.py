"""evt relay nats:// and evt ingest nats://, against the real NATS JetStream on 127.0.0.1:4222.

The server is looked at with the official nats-py client (``nats_broker.call``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time

import pytest
from conftest import NATS_URL
from relay_data import (
    ENVELOPES,
    Proxy,
    count_events,
    dead_letters,
    many,
    positions,
    query,
    saved_position,
    spawn,
    wait_until,
)
from test_relay_redis import closed_port, ingested, load, summary


def relay(evt, names, *args, db="events.db"):
    return evt("relay", NATS_URL, "--stream", names.stream, "--subject", names.subject, "--db", db, *args)


def ingest(evt, names, *args, durable="d", db="b.db"):
    return evt("ingest", NATS_URL, "--stream", names.stream, "--subject", names.subject, "--durable", durable, "--db", db, "--wait", "0.1", *args)


def consumer(names, durable="d"):
    async def info(js):
        return await js.consumer_info(names.stream, durable)

    return names.call(info)


def publish(names, subject, body: bytes, headers=None):
    async def send(js):
        return await js.publish(subject, body, headers=headers)

    return names.call(send)


def test_relay_publishes_each_event_as_the_message_numbered_by_its_position(evt, nats_broker):
    load(evt, ENVELOPES)
    r = relay(evt, nats_broker)
    assert (r.exit_code, r.stdout, r.stderr) == (0, summary(f"{NATS_URL}#{nats_broker.stream}", published=4, position=4), "")
    messages = nats_broker.messages()
    stored = evt("read").lines
    assert [(m.seq, m.subject, m.data.decode()) for m in messages] == [
        (1, f"{nats_broker.subject}.order.placed", stored[0]),
        (2, f"{nats_broker.subject}.account.opened", stored[1]),
        (3, f"{nats_broker.subject}.order.shipped", stored[2]),
        (4, f"{nats_broker.subject}.order.placed", stored[3]),
    ]
    assert messages[0].headers == {
        "Nats-Msg-Id": "e-1",
        "Nats-Expected-Last-Sequence": "0",
        "Nats-Expected-Stream": nats_broker.stream,
        "Content-Type": "application/json",
    }
    again = relay(evt, nats_broker)
    assert again.stdout == summary(f"{NATS_URL}#{nats_broker.stream}", position=4)
    assert nats_broker.state().messages == 4


def test_a_relay_that_lost_its_position_is_refused_by_jetstream_not_duplicated(evt, nats_broker):
    load(evt, ENVELOPES)
    relay(evt, nats_broker, "--batch", "3")
    load(evt, many(2))
    r = relay(evt, nats_broker, "--name", "fresh", "--batch", "4")
    assert (r.exit_code, r.stdout) == (0, summary("fresh", published=2, already=4, position=6))
    state = nats_broker.state()
    assert (state.messages, state.last_seq) == (6, 6)
    assert [m.headers["Nats-Msg-Id"] for m in nats_broker.messages()] == ["e-1", "e-2", "e-3", "e-4", "id-0000000", "id-0000001"]
    assert positions("events.db") == [("fresh", "relay", 6), (f"{NATS_URL}#{nats_broker.stream}", "relay", 4)]


def test_a_batch_published_again_is_answered_as_a_duplicate_or_refused_by_the_expected_sequence(nats_broker, tmp_path):
    """The library path a restarted relay takes when its batch is already in the stream:
    within the duplicate window JetStream answers 'duplicate'; after it, the expected last
    sequence refuses the message, and evt checks the id of the one JetStream has."""
    from evt import NewEvent, Store
    from evt.relay.engine import read_rows
    from evt.relay.nats import NatsTarget

    with Store(tmp_path / "a.db") as store:
        store.write([NewEvent(f"s-{i}", "t.x", {"n": i}, id=f"id-{i}") for i in range(5)])
        rows = read_rows(store, 0, 5)
    short = nats_broker.other("short")

    async def create(js):
        from nats.js.api import StreamConfig

        await js.add_stream(StreamConfig(name=short, subjects=[f"{short}.>"], duplicate_window=0.1))  # the least JetStream takes

    nats_broker.call(create)
    for stream in (nats_broker.stream, short):
        target = NatsTarget(NATS_URL, stream=stream, subject=stream)
        target.connect()
        try:
            assert target.publish(rows) == (5, 0)
            target.checked = True  # skip the first-batch check: publish as if the stream had moved since
            if stream == short:
                wait_until(lambda: forgotten(nats_broker, short, "id-4"), timeout=10)
            assert target.publish(rows[2:]) == (0, 3)  # a duplicate (window), or refused by the sequence (short)
            assert nats_broker.state(stream).messages == 5
        finally:
            target.close()


def forgotten(names, stream: str, msg_id: str) -> bool:
    "Whether JetStream no longer knows a message id: a probe with it is refused by its expected last sequence."
    import nats.js.errors as jse

    async def probe(js):
        try:
            await js.publish(f"{stream}.probe", b"", headers={"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Sequence": "0"})
        except jse.BadRequestError:
            return True
        return False  # answered as a duplicate

    return names.call(probe)


def test_a_stream_another_store_or_program_publishes_to_is_refused_not_skipped(evt, nats_broker):
    load(evt, ENVELOPES, db="one.db")
    load(evt, many(6), db="two.db")
    assert relay(evt, nats_broker, db="one.db").exit_code == 0
    r = relay(evt, nats_broker, db="two.db")
    [first] = evt("read", "--db", "two.db", "--limit", "1").json()
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == (
        f"evt: JetStream stream '{nats_broker.stream}' holds another message there at sequence 1, where this store's event "
        f"{first['id']} belongs: another store or program publishes to that stream; relay each store to its own --stream\n"
    )
    assert positions("two.db") == []
    assert nats_broker.state().messages == 4
    # a program publishing into the stream after the relay: the next event's place is taken
    publish(nats_broker, f"{nats_broker.subject}.other", b"{}")
    load(evt, many(1), db="one.db")
    r = relay(evt, nats_broker, db="one.db")
    assert (r.exit_code, r.stdout) == (6, "")
    assert "holds another message there at sequence 5, where this store's event id-0000000 belongs" in r.stderr
    assert saved_position("one.db") == 4


def test_a_stream_that_was_deleted_since_is_refused_until_the_relay_starts_over(evt, nats_broker):
    load(evt, ENVELOPES)
    relay(evt, nats_broker)

    async def delete(js):
        await js.delete_stream(nats_broker.stream)

    nats_broker.call(delete)
    load(evt, many(1))
    r = relay(evt, nats_broker)
    assert (r.exit_code, r.stderr) == (
        6,
        f"evt: JetStream stream '{nats_broker.stream}' ends at sequence 0, but this relay has published up to position 4: "
        "the stream was deleted or recreated since; relay from the start with a new --name, or to another --stream\n",
    )
    r = relay(evt, nats_broker, "--name", "again")
    assert r.stdout == summary("again", published=5, position=5)


def test_subjects_per_type_or_per_category_with_unsafe_characters_escaped(evt, nats_broker):
    events = [
        {"stream": "order-1", "type": "order.placed", "data": {}},
        {"stream": "odd.cat-1", "type": "a*c>d%", "data": {}},
        {"stream": "x-1", "type": "x..y.", "data": {}},
        {"stream": "ünï-1", "type": ".ünï", "data": {}},
    ]
    load(evt, events)
    relay(evt, nats_broker)
    subject = nats_broker.subject
    assert [m.subject for m in nats_broker.messages()] == [
        f"{subject}.order.placed",
        f"{subject}.a%2Ac%3Ed%25",
        f"{subject}.x%2E.y%2E",
        f"{subject}.%2E%C3%BCn%C3%AF",
    ]
    other = nats_broker.other("cat")
    r = evt("relay", NATS_URL, "--stream", other, "--subject", other, "--subject-per-category")
    assert r.exit_code == 0, r
    assert [m.subject for m in nats_broker.messages(other)] == [f"{other}.order", f"{other}.odd%2Ecat", f"{other}.x", f"{other}.%C3%BCn%C3%AF"]


@pytest.mark.parametrize("mode", [None, "structured", "binary"])
def test_round_trip_through_a_durable_consumer_keeps_every_field(evt, nats_broker, mode):
    load(evt, ENVELOPES, "a.db")
    relay(evt, nats_broker, *(["--cloudevents", mode] if mode else []), db="a.db")
    r = ingest(evt, nats_broker)
    name = f"{NATS_URL}#{nats_broker.stream}/d"
    assert (r.exit_code, r.stdout, r.stderr) == (0, ingested(name, 4, 4), "")
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout
    info = consumer(nats_broker)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    assert ingest(evt, nats_broker).stdout == ingested(name)
    # another durable delivers everything again: appending it again is a no-op
    again = ingest(evt, nats_broker, durable="d2")
    assert again.stdout == ingested(f"{NATS_URL}#{nats_broker.stream}/d2", received=4, duplicates=4)
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout


def test_bad_messages_become_dead_letters_and_are_acknowledged(evt, nats_broker):
    load(evt, ENVELOPES[:1], "b.db")
    assert ingest(evt, nats_broker).exit_code == 0  # creates the stream and the consumer
    subject = f"{nats_broker.subject}.x"
    conflicting = json.dumps(dict(ENVELOPES[0], data={"other": True}))
    publish(nats_broker, subject, b"not json")
    publish(nats_broker, subject, json.dumps({"stream": "s", "data": {}}).encode())
    publish(nats_broker, subject, conflicting.encode())
    publish(nats_broker, subject, json.dumps({"specversion": "0.3", "id": "c", "source": "/x", "type": "t"}).encode())
    publish(nats_broker, subject, b'{"n": 1}', headers={"ce-specversion": "1.0", "ce-id": "c-2", "ce-type": "t.x", "ce-subject": "s-1"})
    publish(nats_broker, subject, json.dumps(ENVELOPES[1]).encode())
    r = ingest(evt, nats_broker)
    assert (r.exit_code, r.stdout) == (0, ingested(f"{NATS_URL}#{nats_broker.stream}/d", received=6, appended=1, dead=5))
    name = f"{NATS_URL}#{nats_broker.stream}/d"
    assert [(c, p, e, a) for c, p, e, a in dead_letters("b.db")] == [
        (name, "not json", "not JSON: Expecting value: line 1 column 1 (char 0)", 1),
        (name, json.dumps({"stream": "s", "data": {}}), "not an evt envelope: missing field 'type'", 1),
        (name, json.dumps({"specversion": "0.3", "id": "c", "source": "/x", "type": "t"}), "unsupported CloudEvents specversion '0.3' (evt reads '1.0')", 1),
        (name, '{"specversion":"1.0","id":"c-2","type":"t.x","subject":"s-1","data":{"n":1}}', "CloudEvent is missing the required attribute 'source'", 1),
        (name, conflicting, "event id 'e-1' is already stored (position 1, stream 'order-ord_1', type 'order.placed') with other content", 1),
    ]
    assert [e["id"] for e in evt("read", "--db", "b.db").json()] == ["e-1", "e-2"]
    info = consumer(nats_broker)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


def test_an_envelope_without_an_id_takes_the_stream_sequence_so_a_redelivery_is_idempotent(evt, nats_broker):
    ingest(evt, nats_broker)
    publish(nats_broker, f"{nats_broker.subject}.t", json.dumps({"stream": "s-1", "type": "t.x", "data": {"n": 1}}).encode())
    assert ingest(evt, nats_broker).stdout == ingested(f"{NATS_URL}#{nats_broker.stream}/d", received=1, appended=1)
    again = ingest(evt, nats_broker, durable="d2")
    assert again.stdout == ingested(f"{NATS_URL}#{nats_broker.stream}/d2", received=1, duplicates=1)
    assert [e["id"] for e in evt("read", "--db", "b.db").json()] == [f"nats:{nats_broker.stream}:1"]


def test_a_server_that_is_down_is_exit_6_after_the_retries(evt):
    evt("append", "order-1", "order.placed", "-q")
    url = f"nats://127.0.0.1:{closed_port()}"
    r = evt("relay", url, "--retries", "1", "--backoff", "0.01")
    error = f"NATS at {url} is unavailable: Connection refused"
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == (
        f"evt: {error}; retrying in 0.01s (retry 1 of 1)\n"
        f"evt: {error} (gave up after 2 attempts; is the broker running?)\n"
    )
    assert positions("events.db") == []
    r = evt("ingest", url, "--durable", "d", "--retries", "0")
    assert (r.exit_code, r.stderr) == (6, f"evt: {error} (gave up after 1 attempt; is the broker running?)\n")


@contextlib.contextmanager
def own_nats_server(folder, *auth: str):
    "A nats-server of this test's own, with JetStream and the given auth options, on a free port."
    from conftest import require_broker

    def find():
        if shutil.which("nats-server") is None:
            raise FileNotFoundError("no nats-server on PATH")

    require_broker("nats-server (the binary)", find)
    port = closed_port()
    server = subprocess.Popen(
        [shutil.which("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder / "nats-store"), *auth],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _accepts(port), timeout=20)
        yield port
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def nats_with_login(tmp_path):
    "A user 'evt' with the password 'secret'."
    with own_nats_server(tmp_path, "--user", "evt", "--pass", "secret") as port:
        yield port


def _accepts(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_refused_credentials_are_exit_6_at_once(evt, nats_with_login):
    evt("append", "order-1", "order.placed", "-q")
    port = nats_with_login
    for password in ("wrong", None):
        url = f"nats://evt:{password}@127.0.0.1:{port}" if password else f"nats://127.0.0.1:{port}"
        shown = url.replace(":wrong@", ":***@")
        r = evt("relay", url, "--retries", "5", "--backoff", "10")  # a retry would take 10s
        assert (r.exit_code, r.stdout, r.stderr) == (6, "", f"evt: NATS at {shown} refused the login: Authorization Violation\n")
        r = evt("ingest", url, "--durable", "d", "--retries", "5", "--backoff", "10")
        assert (r.exit_code, r.stderr) == (6, f"evt: NATS at {shown} refused the login: Authorization Violation\n")
    r = evt("relay", f"nats://evt:secret@127.0.0.1:{port}")
    assert r.stdout == summary(f"nats://evt:***@127.0.0.1:{port}#events", published=1, position=1)


def test_a_token_in_the_url_is_never_shown(evt, tmp_path):
    evt("append", "order-1", "order.placed", "-q")
    with own_nats_server(tmp_path, "--auth", "s3cr3t-token") as port:
        r = evt("relay", f"nats://wrong-token@127.0.0.1:{port}", "--retries", "0")
        assert (r.exit_code, r.stderr) == (6, f"evt: NATS at nats://***@127.0.0.1:{port} refused the login: Authorization Violation\n")
        r = evt("relay", f"nats://s3cr3t-token@127.0.0.1:{port}")
        assert r.stdout == summary(f"nats://***@127.0.0.1:{port}#events", published=1, position=1)
        assert "s3cr3t" not in evt("projections").stdout


def test_ingest_follow_keeps_going_until_interrupted(evt, nats_broker, tmp_path):
    load(evt, ENVELOPES[:2], "a.db")
    relay(evt, nats_broker, db="a.db")
    proc = spawn(tmp_path, "ingest", NATS_URL, "--stream", nats_broker.stream, "--durable", "d", "--db", "b.db", "--follow", "--wait", "0.1")
    try:
        wait_until(lambda: count_events("b.db") == 2)
        load(evt, ENVELOPES[2:], "a.db")
        relay(evt, nats_broker, db="a.db")
        wait_until(lambda: count_events("b.db") == 4)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    assert proc.stderr.read() == b""
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout


def test_usage_errors(evt):
    cases = [
        (("ingest", NATS_URL), "evt: ingest from NATS needs --durable NAME (the durable consumer)\n"),
        (("relay", "redis://127.0.0.1:6379/0", "--stream", "s"), "evt: --stream, --subject and --subject-per-category apply to nats:// targets\n"),
        (("relay", NATS_URL, "--key", "k"), "evt: --key, --key-per-category and --maxlen apply to redis:// targets\n"),
        (("ingest", "redis://127.0.0.1:6379/0", "--group", "g", "--durable", "d"), "evt: --durable, --stream, --subject and --ack-wait apply to nats:// sources\n"),
        (("relay", NATS_URL, "--cloudevents", "json"), "evt: --cloudevents takes structured or binary, not 'json'\n"),
        (("relay", NATS_URL, "--stream", "a.b"), "evt: --stream 'a.b' is not a JetStream stream name (no spaces, '.', '*', '>', '/' or '\\')\n"),
        (("relay", NATS_URL, "--subject", "a.*"), "evt: --subject 'a.*' is not a NATS subject prefix (tokens of printable ASCII, no spaces, '*', '>' or '%')\n"),
    ]
    evt("append", "s-1", "t.x", "-q")
    for args, error in cases:
        r = evt(*args)
        assert (r.exit_code, r.stderr) == (2, error), args
    assert positions("events.db") == []


def test_relay_follow_publishes_events_appended_later(evt, nats_broker, tmp_path):
    load(evt, ENVELOPES)
    proc = spawn(tmp_path, "relay", NATS_URL, "--stream", nats_broker.stream, "--subject", nats_broker.subject, "--follow")
    try:
        wait_until(lambda: saved_position("events.db") == 4)
        load(evt, many(3))
        wait_until(lambda: saved_position("events.db") == 7)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    assert proc.stderr.read() == b""
    assert nats_broker.state().last_seq == 7


def sampled_ids(names, n: int) -> list[tuple[int, str]]:
    "(sequence, Nats-Msg-Id) of every 97th message and the last."
    async def get(js):
        return [(seq, (await js.get_msg(names.stream, seq)).headers["Nats-Msg-Id"]) for seq in [*range(1, n + 1, 97), n]]

    return names.call(get)


def test_relay_killed_mid_way_and_restarted_publishes_each_event_exactly_once(evt, nats_broker, tmp_path):
    n = 20000
    load(evt, many(n))
    proc = spawn(tmp_path, "relay", NATS_URL, "--stream", nats_broker.stream, "--subject", nats_broker.subject, "--batch", "100")
    wait_until(lambda: saved_position("events.db") > 2000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = saved_position("events.db")
    assert saved < n, "the relay finished before it was killed; make the test bigger"
    r = relay(evt, nats_broker, "--batch", "1000")
    result = json.loads(r.stdout)
    assert result["position"] == n and result["published"] + result["alreadyPublished"] == n - saved
    state = nats_broker.state()
    assert (state.messages, state.first_seq, state.last_seq) == (n, 1, n)
    assert sampled_ids(nats_broker, n) == [(seq, f"id-{seq - 1:07d}") for seq in [*range(1, n + 1, 97), n]]


def test_ingest_killed_mid_way_and_restarted_appends_each_event_exactly_once(evt, nats_broker, tmp_path):
    n = 10000
    load(evt, many(n), "a.db")
    relay(evt, nats_broker, db="a.db")
    args = ("ingest", NATS_URL, "--stream", nats_broker.stream, "--durable", "d", "--db", "b.db")
    proc = spawn(tmp_path, *args, "--batch", "50", "--ack-wait", "1")
    wait_until(lambda: count_events("b.db") > 1000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert count_events("b.db") < n, "the ingest finished before it was killed; make the test bigger"
    # the killed ingest's unacknowledged batch comes back after the consumer's ack wait (1s)
    r = evt(*args, "--wait", "0.2")
    assert r.exit_code == 0, r
    assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(n, n)]
    assert query("b.db", "SELECT id FROM events ORDER BY position LIMIT 3") == [("id-0000000",), ("id-0000001",), ("id-0000002",)]
    info = consumer(nats_broker)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


def test_relay_and_ingest_survive_the_server_going_away(evt, nats_broker, tmp_path):
    proxy = Proxy(4222)
    url = f"nats://127.0.0.1:{proxy.port}"
    try:
        load(evt, many(3000), "a.db")
        common = ("--stream", nats_broker.stream, "--retries", "20", "--backoff", "0.05")
        relay_proc = spawn(tmp_path, "relay", url, *common, "--subject", nats_broker.subject, "--db", "a.db", "--batch", "10", "--follow")
        wait_until(lambda: saved_position("a.db") > 100)
        proxy.down()
        load(evt, many(100, start=3000), "a.db")  # the relay tries to publish them while the server is away
        time.sleep(0.3)
        proxy.up()
        wait_until(lambda: saved_position("a.db") == 3100)
        relay_proc.send_signal(signal.SIGINT)
        assert relay_proc.wait(10) == 130
        assert "retrying in 0.05s (retry 1 of 20)" in relay_proc.stderr.read().decode()
        state = nats_broker.state()
        assert (state.messages, state.last_seq) == (3100, 3100)

        ingest_proc = spawn(tmp_path, "ingest", url, *common, "--durable", "d", "--db", "b.db", "--batch", "20", "--ack-wait", "1", "--wait", "0.3")
        wait_until(lambda: count_events("b.db") > 200)
        proxy.down()
        time.sleep(0.3)
        proxy.up()
        assert ingest_proc.wait(60) == 0
        assert "retrying in 0.05s" in ingest_proc.stderr.read().decode()
        assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(3100, 3100)]
        assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout
        info = consumer(nats_broker)
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
    finally:
        proxy.down()


def test_a_relay_that_gives_up_keeps_the_position_jetstream_acknowledged(evt, nats_broker, tmp_path):
    proxy = Proxy(4222)
    try:
        load(evt, many(20000))
        url = f"nats://127.0.0.1:{proxy.port}"
        proc = spawn(tmp_path, "relay", url, "--stream", nats_broker.stream, "--subject", nats_broker.subject, "--batch", "10", "--retries", "1", "--backoff", "0.01")
        wait_until(lambda: saved_position("events.db") > 100)
        proxy.down()
        assert proc.wait(10) == 6
        assert proc.stderr.read().decode().endswith("(gave up after 2 attempts; is the broker running?)\n")
        saved = saved_position("events.db")
        assert 0 < saved <= nats_broker.state().last_seq < 20000
        r = relay(evt, nats_broker, "--name", f"{url}#{nats_broker.stream}")
        assert json.loads(r.stdout)["position"] == 20000
        state = nats_broker.state()
        assert (state.messages, state.last_seq) == (20000, 20000)
    finally:
        proxy.down()


def test_any_log_survives_the_round_trip_through_jetstream_in_every_mode(nats_broker, tmp_path):
    """Relay from store A (as envelopes or CloudEvents), ingest into an empty store B: both read the same."""
    import itertools

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_relay_redis import envelopes_strategy

    from evt import NewEvent, Store
    from evt.relay import ingest, relay
    from evt.relay.nats import NatsSource, NatsTarget

    counter = itertools.count()

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(envelopes_strategy(), st.sampled_from([None, "structured", "binary"]))
    def check(envelopes, mode):
        n = next(counter)
        stream = nats_broker.other(str(n))
        with Store(tmp_path / f"a{n}.db") as a, Store(tmp_path / f"b{n}.db") as b:
            a.write([NewEvent.from_envelope(e) for e in envelopes])
            relay(a, NatsTarget(NATS_URL, stream=stream, subject=stream, cloudevents=mode))
            ingest(b, NatsSource(NATS_URL, stream=stream, durable="d", wait=0.05))
            assert list(b.read_json()) == list(a.read_json())

    check()

