"""evt relay amqp:// and evt ingest amqp://, against the real RabbitMQ on 127.0.0.1:5672."""

from __future__ import annotations

import json
import signal
import time

import pytest
from conftest import AMQP_URL, require_broker
from relay_data import ENVELOPES, count_events, dead_letters, many, positions, query, saved_position, spawn, wait_until
from test_relay_redis import closed_port, ingested, load, summary

SHOWN = AMQP_URL.replace("guest:guest@", "guest:***@")


def ingest(evt, broker, queue, *args, db="b.db"):
    return evt("ingest", AMQP_URL, "--exchange", broker.exchange, "--queue", queue, "--db", db, "--wait", "0.3", *args)


def test_relay_publishes_persistent_confirmed_messages_routed_by_type(evt, amqp_broker):
    channel = amqp_broker.channel
    everything = amqp_broker.queue("all")
    channel.exchange_declare(amqp_broker.exchange, exchange_type="topic", durable=True)
    channel.queue_declare(everything, durable=True)
    channel.queue_bind(everything, amqp_broker.exchange, routing_key="#")
    load(evt, ENVELOPES)
    r = evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange)
    assert (r.exit_code, r.stdout, r.stderr) == (0, summary(f"{SHOWN}#{amqp_broker.exchange}", published=4, position=4), "")
    stored = evt("read").json()
    method, properties, body = channel.basic_get(everything, auto_ack=True)
    assert method.routing_key == "order.placed" and method.exchange == amqp_broker.exchange
    assert json.loads(body) == stored[0]
    assert (properties.content_type, properties.delivery_mode, properties.message_id, properties.type) == (
        "application/json", 2, "e-1", "order.placed",
    )  # fmt: skip
    assert properties.headers == {"stream": "order-ord_1", "position": 1, "timestamp": "2026-11-20T10:00:00.000001Z"}
    assert [json.loads(channel.basic_get(everything, auto_ack=True)[2])["id"] for _ in range(3)] == ["e-2", "e-3", "e-4"]
    again = evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange)
    assert again.stdout == summary(f"{SHOWN}#{amqp_broker.exchange}", position=4)
    assert channel.queue_declare(everything, passive=True).method.message_count == 0


def test_round_trip_through_a_bound_queue_keeps_every_field(evt, amqp_broker):
    orders = amqp_broker.queue("orders")
    load(evt, ENVELOPES, "a.db")
    first = ingest(evt, amqp_broker, orders, "--bind", "order.*")  # declares and binds the queue
    assert first.stdout == ingested(f"{SHOWN}#{orders}")
    evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--db", "a.db")
    r = ingest(evt, amqp_broker, orders, "--bind", "order.*")
    assert (r.exit_code, r.stdout, r.stderr) == (0, ingested(f"{SHOWN}#{orders}", 3, 3), "")
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db", "--type", "order.*").stdout.replace(
        '"position":3,', '"position":2,').replace('"position":4,', '"position":3,')  # fmt: skip


def test_bad_messages_become_dead_letters_and_are_acknowledged(evt, amqp_broker):
    channel, queue = amqp_broker.channel, amqp_broker.queue()
    ingest(evt, amqp_broker, queue)
    load(evt, ENVELOPES[:1], "b.db")
    for body in (b"\xff not utf-8", json.dumps(dict(ENVELOPES[0], type="other")).encode(), json.dumps(ENVELOPES[1]).encode()):
        channel.basic_publish(amqp_broker.exchange, "x", body)
    r = ingest(evt, amqp_broker, queue)
    assert r.stdout == ingested(f"{SHOWN}#{queue}", received=3, appended=1, dead=2)
    rows = [(payload, error) for _, payload, error, _ in dead_letters("b.db")]
    assert rows[0][0] == "\ufffd not utf-8" and rows[0][1].startswith("not JSON: ")
    assert rows[1][1] == "event id 'e-1' is already stored (position 1, stream 'order-ord_1', type 'order.placed') with other content"
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    channel.basic_publish(amqp_broker.exchange, "x", b"\xff not utf-8")
    ingest(evt, amqp_broker, queue)
    assert [attempts for *_, attempts in dead_letters("b.db")] == [2, 1]


def test_a_broker_that_is_down_is_exit_6_after_the_retries(evt):
    evt("append", "order-1", "order.placed", "-q")
    port = closed_port()
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    r = evt("relay", url, "--retries", "1", "--backoff", "0.01")
    error = f"RabbitMQ at {url.replace('guest@', '***@')} is unavailable: nothing is listening on 127.0.0.1:{port} (connection refused)"
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == (
        f"evt: {error}; retrying in 0.01s (retry 1 of 1)\n"
        f"evt: {error} (gave up after 2 attempts; is the broker running?)\n"
    )
    assert positions("events.db") == []
    r = evt("ingest", url, "--queue", "q", "--retries", "0")
    assert (r.exit_code, r.stderr) == (6, f"evt: {error} (gave up after 1 attempt; is the broker running?)\n")


def test_a_connection_lost_during_the_login_is_retried_not_taken_for_a_refused_login(evt):
    """RabbitMQ refuses a login with a Connection.Close (403); a connection that merely ends
    during the handshake (a broker restarting, a network cut) is retried. pika calls both
    a "probable authentication error"; this was exit 6 at once, without a retry."""
    import socket
    import threading

    import pika.frame
    import pika.spec

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def ends_each_connection_after_the_credentials():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(8)  # the protocol header
                conn.sendall(pika.frame.Method(0, pika.spec.Connection.Start(mechanisms="PLAIN", locales="en_US")).marshal())
                conn.recv(4096)  # Connection.Start-Ok, with the credentials

    server = threading.Thread(target=ends_each_connection_after_the_credentials, daemon=True)
    server.start()
    evt("append", "order-1", "order.placed", "-q")
    url = f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}/"
    try:
        r = evt("relay", url, "--retries", "1", "--backoff", "0.01")
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        server.join()
        listener.close()
    error = f"RabbitMQ at {url.replace('guest@', '***@')} is unavailable: the connection dropped while logging in"
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == (
        f"evt: {error}; retrying in 0.01s (retry 1 of 1)\n"
        f"evt: {error} (gave up after 2 attempts; is the broker running?)\n"
    )


def test_a_connection_dropped_before_pika_sets_up_its_transport_is_lost_not_an_internal_error():
    """pika checks the socket it connected (getpeername) before it sets up its transport;
    a connection cut in between raises a bare ValueError, which pika hands on unwrapped
    ("Expected connected socket, but getpeername() failed"). Seen as exit 1, "internal
    error", when a proxy cut connections under load; it is a lost connection, retried.
    A ValueError from anywhere but pika is still a bug, and stays one."""
    import socket

    from pika.adapters.utils.io_services_utils import _AsyncStreamConnector

    from evt.errors import BrokerUnavailable
    from evt.relay.amqp import translate_errors

    url = "amqp://guest:secret@127.0.0.1:5672/"
    with socket.socket() as cut:  # never connected: getpeername() fails, as on a connection already dropped
        with pytest.raises(BrokerUnavailable) as caught:
            with translate_errors(url):
                _AsyncStreamConnector(None, lambda: None, cut, None, None, lambda result: None)
    assert str(caught.value) == "RabbitMQ at amqp://guest:***@127.0.0.1:5672/ is unavailable: the connection dropped while connecting"
    with pytest.raises(ValueError, match="a bug"):
        with translate_errors(url):
            raise ValueError("a bug")


def test_wrong_credentials_are_refused_without_retrying(evt, amqp_broker):
    evt("append", "order-1", "order.placed", "-q")
    r = evt("relay", "amqp://guest:wrong@127.0.0.1:5672/", "--exchange", amqp_broker.exchange)
    assert r.exit_code == 6
    assert r.stderr.startswith("evt: RabbitMQ at amqp://guest:***@127.0.0.1:5672/ refused the login: ")
    assert r.stderr.count("\n") == 1


def test_relay_killed_mid_way_then_ingest_stores_each_event_exactly_once(evt, amqp_broker, tmp_path):
    queue = amqp_broker.queue()
    ingest(evt, amqp_broker, queue)
    n = 5000
    load(evt, many(n), "a.db")
    proc = spawn(tmp_path, "relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--db", "a.db", "--batch", "100")
    wait_until(lambda: saved_position("a.db") > 300)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = saved_position("a.db")
    assert saved < n, "the relay finished before it was killed; make the test bigger"
    r = evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--db", "a.db")
    assert json.loads(r.stdout)["published"] == n - saved
    queued = amqp_broker.channel.queue_declare(queue, passive=True).method.message_count
    assert n <= queued <= n + 100  # at least once: the unconfirmed batch may be published twice
    r = ingest(evt, amqp_broker, queue)
    assert json.loads(r.stdout)["appended"] == n
    assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(n, n)]


def test_ingest_killed_mid_way_and_restarted_appends_each_event_exactly_once(evt, amqp_broker, tmp_path):
    queue = amqp_broker.queue()
    ingest(evt, amqp_broker, queue)
    n = 5000
    load(evt, many(n), "a.db")
    evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--db", "a.db")
    proc = spawn(tmp_path, "ingest", AMQP_URL, "--exchange", amqp_broker.exchange, "--queue", queue, "--db", "b.db", "--batch", "20")
    wait_until(lambda: count_events("b.db") > 300)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert count_events("b.db") < n, "the ingest finished before it was killed; make the test bigger"
    r = ingest(evt, amqp_broker, queue)
    assert r.exit_code == 0, r
    assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(n, n)]
    assert amqp_broker.channel.queue_declare(queue, passive=True).method.message_count == 0


def test_a_missing_broker_skips_unless_brokers_are_required(monkeypatch):
    def refused():
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.delenv("EVT_REQUIRE_BROKERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^Nowhere is not reachable on 127.0.0.1 \(ConnectionRefusedError"):
        require_broker("Nowhere", refused)
    monkeypatch.setenv("EVT_REQUIRE_BROKERS", "1")
    with pytest.raises(pytest.fail.Exception, match="EVT_REQUIRE_BROKERS=1 requires it$"):
        require_broker("Nowhere", refused)


def test_relay_and_ingest_survive_the_broker_going_away(evt, amqp_broker, tmp_path):
    from relay_data import Proxy

    queue = amqp_broker.queue()
    ingest(evt, amqp_broker, queue)
    proxy = Proxy(5672)
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    n = 3000
    load(evt, many(n), "a.db")
    common = ("--exchange", amqp_broker.exchange, "--retries", "20", "--backoff", "0.05")
    relay = spawn(tmp_path, "relay", url, *common, "--db", "a.db", "--batch", "200")
    wait_until(lambda: saved_position("a.db") > 200)
    proxy.down()
    time.sleep(0.3)
    proxy.up()
    assert relay.wait(30) == 0
    assert "retrying in 0.05s" in relay.stderr.read().decode()
    assert amqp_broker.channel.queue_declare(queue, passive=True).method.message_count >= n
    consumer = spawn(tmp_path, "ingest", url, *common, "--queue", queue, "--db", "b.db", "--wait", "0.3", "--batch", "20")
    wait_until(lambda: count_events("b.db") > 200)
    proxy.down()
    time.sleep(0.3)
    proxy.up()
    assert consumer.wait(30) == 0
    assert "retrying in 0.05s" in consumer.stderr.read().decode()
    # The batch in flight when the connection dropped went back to the queue when RabbitMQ
    # closed that connection: once no consumer is left, nothing is held unacknowledged, and
    # whatever the reconnected ingest did not get (if it drained first) is ready again.
    wait_until(lambda: consumers_of(amqp_broker, queue) == 0)
    ingest(evt, amqp_broker, queue)
    assert query("b.db", "SELECT count(*), count(DISTINCT id) FROM events") == [(n, n)]
    assert amqp_broker.channel.queue_declare(queue, passive=True).method.message_count == 0
    proxy.down()


def test_connections_cut_again_and_again_lose_and_duplicate_nothing(evt, amqp_broker, tmp_path):
    """Relay and ingest follow the log at once through a proxy that cuts every connection
    at 20 moments spread over the run (connecting, logging in, publishing, consuming,
    between a commit and its acknowledgement), then a few times while both wait for
    more: every event arrives exactly once, and nothing is left in the queue."""
    import random

    from relay_data import Proxy

    queue = amqp_broker.queue()
    ingest(evt, amqp_broker, queue)  # the queue exists, bound with '#', before anything is published
    proxy = Proxy(5672)
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    n, cuts, later = 1000, 20, 10
    load(evt, many(n), "a.db")
    common = ("--exchange", amqp_broker.exchange, "--retries", "40", "--backoff", "0.01")
    consumer = spawn(tmp_path, "ingest", url, *common, "--queue", queue, "--db", "b.db", "--batch", "10", "--follow")
    relay = spawn(tmp_path, "relay", url, *common, "--db", "a.db", "--batch", "50", "--follow")
    running = lambda: relay.poll() is None and consumer.poll() is None  # noqa: E731
    rng = random.Random(17)
    for threshold in sorted(rng.sample(range(1, n - 100), cuts)):
        wait_until(lambda: count_events("b.db") >= threshold or not running(), timeout=60)
        time.sleep(rng.random() * 0.02)  # a different moment of the batch each time
        proxy.down()
        time.sleep(rng.random() * 0.05)
        proxy.up()
    wait_until(lambda: (count_events("b.db") >= n and saved_position("a.db") == n) or not running(), timeout=60)
    for _ in range(3):  # both idle: the relay waiting for appends, the ingest for messages
        proxy.down()
        wait_until(lambda: consumers_of(amqp_broker, queue) == 0)
        proxy.up()
        wait_until(lambda: consumers_of(amqp_broker, queue) == 1 or not running())
    load(evt, many(later, start=n), "a.db")
    wait_until(lambda: count_events("b.db") >= n + later or not running(), timeout=60)
    for proc in (relay, consumer):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, proc.stderr.read().decode()
    consumer_log = consumer.stderr.read().decode()
    assert consumer_log.count("retrying in") >= cuts // 2, consumer_log
    wait_until(lambda: consumers_of(amqp_broker, queue) == 0)  # nothing held by a cut connection
    leftover = ingest(evt, amqp_broker, queue)  # what the relay published twice, still queued
    assert json.loads(leftover.stdout)["appended"] == 0
    total = n + later
    assert query("b.db", "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events") == [
        (total, total, "id-0000000", f"id-{total - 1:07d}")
    ]
    assert dead_letters("b.db") == []
    assert amqp_broker.channel.queue_declare(queue, passive=True).method.message_count == 0
    proxy.down()


def consumers_of(broker, queue: str) -> int:
    "How many consumers RabbitMQ counts on the queue (a connection it still holds open counts)."
    return broker.channel.queue_declare(queue, passive=True).method.consumer_count


def test_an_existing_queue_keeps_its_bindings_when_no_bind_is_given(evt, amqp_broker):
    orders, everything = amqp_broker.queue("orders"), amqp_broker.queue("all")
    ingest(evt, amqp_broker, orders, "--bind", "order.*")
    ingest(evt, amqp_broker, orders)  # no --bind: must not add '#'
    ingest(evt, amqp_broker, everything, db="c.db")  # a new queue without --bind gets '#'
    load(evt, ENVELOPES, "a.db")
    evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--db", "a.db")
    assert json.loads(ingest(evt, amqp_broker, orders).stdout)["appended"] == 3
    assert json.loads(ingest(evt, amqp_broker, everything, db="c.db").stdout)["appended"] == 4


def test_an_envelope_without_an_id_takes_the_message_id_so_a_redelivery_is_idempotent(evt, amqp_broker):
    import pika

    channel, queue = amqp_broker.channel, amqp_broker.queue()
    ingest(evt, amqp_broker, queue)
    body = json.dumps({"stream": "s-1", "type": "t.x", "data": {"n": 1}}).encode()
    for _ in range(2):  # published twice, as a producer retrying after a lost confirm would
        channel.basic_publish(amqp_broker.exchange, "t.x", body, pika.BasicProperties(message_id="m-1"))
    r = ingest(evt, amqp_broker, queue)
    assert r.stdout == ingested(f"{SHOWN}#{queue}", received=2, appended=1, duplicates=1)
    assert [e["id"] for e in evt("read", "--db", "b.db").json()] == ["amqp:m-1"]
