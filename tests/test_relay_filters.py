"""evt relay with evt read's filters, and one relay per name at a time (a second one waits)."""

from __future__ import annotations

import json
import signal

import pytest

from conftest import REDIS_URL
from relay_data import many, positions, spawn, wait_until


def read_line(pipe, timeout: float = 30.0) -> str:
    "The next line from a process's pipe; an AssertionError if none comes in time."
    import os
    import select

    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([pipe], [], [], timeout)
        assert ready, f"no line within {timeout}s (so far: {data!r})"
        chunk = os.read(pipe.fileno(), 1)
        assert chunk, f"the pipe closed (so far: {data!r})"
        data += chunk
    return data.decode()


def load(evt, text: str) -> None:
    r = evt("append", "--ndjson", "-", "-q", input=text)
    assert r.exit_code == 0, r


def ids(client, key) -> list[int]:
    return [int(entry_id.split(b"-")[0]) for entry_id, _ in client.xrange(key)]


def stored(evt, *filters) -> list[int]:
    return [e["position"] for e in evt("read", *filters).json()]


@pytest.mark.parametrize(
    "filters, label",
    [
        (["--type", "order.*"], "--type order.*"),
        (["--category", "account"], "--category account"),
        (["order-7"], "order-7"),
        (["--exact-type", "order.shipped", "--type", "account.*"], "--type account.* --exact-type order.shipped"),
        (["--category", "order", "--type", "order.placed"], "--category order --type order.placed"),
    ],
)
def test_a_relay_publishes_what_the_filters_select_and_its_position_passes_the_rest(evt, redis_broker, filters, label):
    client, key = redis_broker
    load(evt, many(60))
    r = evt("relay", REDIS_URL, "--key", key, "--batch", "4", *filters)
    assert r.exit_code == 0, r.stderr
    wanted = stored(evt, *filters)
    name = f"{REDIS_URL}#{key} [{label}]"
    assert json.loads(r.stdout) == {"relay": name, "published": len(wanted), "alreadyPublished": 0, "position": 60}
    assert ids(client, key) == wanted
    assert positions("events.db") == [(name, "relay", 60)]
    [status] = [p for p in evt("projections").json() if p["kind"] == "relay"]
    assert (status["name"], status["lag"]) == (name, 0)
    load(evt, many(6, start=60))  # later: only what matches is published, from where it stopped
    r = evt("relay", REDIS_URL, "--key", key, "--batch", "4", *filters)
    assert json.loads(r.stdout)["position"] == 66
    assert ids(client, key) == stored(evt, *filters)


def test_events_the_filters_leave_out_move_the_position_too(evt, redis_broker):
    client, key = redis_broker
    load(evt, many(3))  # order.placed, order.shipped, account.credited
    assert json.loads(evt("relay", REDIS_URL, "--key", key, "--type", "order.placed").stdout)["position"] == 3
    load(evt, "".join(json.dumps({"stream": "account-1", "type": "account.credited", "data": {}}) + "\n" for _ in range(5)))
    r = evt("relay", REDIS_URL, "--key", key, "--type", "order.placed")
    assert json.loads(r.stdout) == {"relay": f"{REDIS_URL}#{key} [--type order.placed]", "published": 0, "alreadyPublished": 0, "position": 8}
    assert ids(client, key) == [1]


def test_a_filtered_relay_is_another_relay(evt, redis_broker):
    "Its default name holds its filters, so it never shares a position with the relay of the whole log."
    client, key = redis_broker
    load(evt, many(9))
    evt("relay", REDIS_URL, "--key", key, "--type", "order.placed")
    r = evt("relay", REDIS_URL, "--key", f"{key}-all")
    assert json.loads(r.stdout) == {"relay": f"{REDIS_URL}#{key}-all", "published": 9, "alreadyPublished": 0, "position": 9}
    assert positions("events.db") == [(f"{REDIS_URL}#{key} [--type order.placed]", "relay", 9), (f"{REDIS_URL}#{key}-all", "relay", 9)]
    # the whole log to the filtered relay's key would go below entries already there: refused, not interleaved
    r = evt("relay", REDIS_URL, "--key", key)
    assert r.exit_code == 6 and "is already past entry 2-0, which is not this store's event" in r.stderr


def test_a_second_relay_under_the_same_name_waits_for_the_first_and_takes_over(evt, redis_broker, tmp_path):
    client, key = redis_broker
    load(evt, many(5))
    first = spawn(tmp_path, "relay", REDIS_URL, "--key", key, "--follow")
    second = None
    try:
        wait_until(lambda: client.exists(key) and client.xlen(key) == 5)
        second = spawn(tmp_path, "relay", REDIS_URL, "--key", key, "--follow")
        line = read_line(second.stderr)
        assert line == f"evt: relay '{REDIS_URL}#{key}' is running in another process; waiting for it to end (Ctrl-C to give up)\n"
        load(evt, many(5, start=5))
        wait_until(lambda: client.xlen(key) == 10)  # the first publishes
        saved = []
        first.send_signal(signal.SIGKILL)
        first.wait()
        load(evt, many(5, start=10))
        wait_until(lambda: saved.append(positions("events.db")[0][2]) or client.xlen(key) == 15)  # the second took over
        wait_until(lambda: positions("events.db")[0][2] == 15)
        second.send_signal(signal.SIGINT)
        assert second.wait(10) == 130
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert ids(client, key) == list(range(1, 16))
    assert saved == sorted(saved)  # the position never went back


def test_a_catching_up_relay_waits_for_a_following_one_then_finds_nothing_left(evt, redis_broker, tmp_path):
    client, key = redis_broker
    load(evt, many(5))
    follower = spawn(tmp_path, "relay", REDIS_URL, "--key", key, "--follow")
    try:
        wait_until(lambda: client.exists(key) and client.xlen(key) == 5)
        waiting = spawn(tmp_path, "relay", REDIS_URL, "--key", key)
        assert read_line(waiting.stderr).endswith("waiting for it to end (Ctrl-C to give up)\n")
        assert waiting.poll() is None
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130
        out, _ = waiting.communicate(timeout=30)
    finally:
        follower.kill()
    assert waiting.returncode == 0
    assert json.loads(out) == {"relay": f"{REDIS_URL}#{key}", "published": 0, "alreadyPublished": 0, "position": 5}


def test_a_position_saved_ahead_by_something_else_is_a_conflict_not_a_move_back(evt, redis_broker, tmp_path, monkeypatch):
    "What no lock covers (another program writing the relay's checkpoint) the store still refuses: exit 3."
    import evt.relay.engine as engine

    client, key = redis_broker
    load(evt, many(5))
    name = f"{REDIS_URL}#{key}"
    read = engine.load_position

    def then_moved_ahead(store, relay_name):  # the relay reads 0; meanwhile something saves 4
        position = read(store, relay_name)
        with store.transaction() as conn:
            conn.execute("INSERT INTO evt_checkpoints (name, kind, position) VALUES (?, 'relay', 4)", (relay_name,))
        return position

    monkeypatch.setattr(engine, "load_position", then_moved_ahead)
    r = evt("relay", REDIS_URL, "--key", key, "--batch", "2")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "", f"evt: checkpoint '{name}' is at position 4; it cannot move back to 2\n")
    assert positions("events.db") == [(name, "relay", 4)]


def test_the_relay_lock_excludes_whoever_comes_while_it_is_handed_over(tmp_path):
    "The holder removes the lock file as it lets go; a waiter that wakes on the removed file queues again on the new one."
    import threading

    from evt.relay.state import RelayLock

    store = str(tmp_path / "events.db")
    holders, waiting = [], {"b": threading.Event(), "c": threading.Event()}
    release = {"b": threading.Event(), "c": threading.Event()}

    def hold(who):
        with RelayLock(store, "r", on_wait=lambda message: waiting[who].set()):
            holders.append(who)
            release[who].wait(10)
            holders.append(f"/{who}")  # still holding it: whoever comes next is noted after this

    a = RelayLock(store, "r").__enter__()
    lock_files = [p.name for p in tmp_path.iterdir()]
    b = threading.Thread(target=hold, args=("b",))
    b.start()
    assert waiting["b"].wait(10)
    a.__exit__(None, None, None)  # b wakes on the removed file, and takes the new one
    wait_until(lambda: holders == ["b"])
    c = threading.Thread(target=hold, args=("c",))
    c.start()
    assert waiting["c"].wait(10)  # c waits behind b
    assert holders == ["b"]
    release["b"].set()
    wait_until(lambda: holders == ["b", "/b", "c"])
    release["c"].set()
    b.join(10)
    c.join(10)
    assert holders == ["b", "/b", "c", "/c"]
    assert len(lock_files) == 1 and lock_files[0].startswith("events.db-relay-") and lock_files[0].endswith(".lock")
    assert list(tmp_path.iterdir()) == []  # removed by the last holder


def test_a_nats_relay_takes_no_filters(evt):
    "JetStream numbers each message by its position: a filtered relay would leave gaps it refuses."
    load(evt, many(3))
    r = evt("relay", "nats://127.0.0.1:4222", "--type", "order.*")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == (
        "evt: a nats relay publishes every event, as the message numbered by its position: it takes no filters "
        "(consumers can pick by subject, SUBJECT.TYPE or SUBJECT.CATEGORY)\n"
    )


def test_filters_with_cloudevents(evt, redis_broker):
    client, key = redis_broker
    load(evt, many(9))
    r = evt("relay", REDIS_URL, "--key", key, "--type", "order.shipped", "--cloudevents", "structured")
    assert r.exit_code == 0, r.stderr
    assert ids(client, key) == [2, 5, 8]
    documents = [json.loads(fields[b"cloudevent"]) for _, fields in client.xrange(key)]
    assert [(d["specversion"], d["type"], d["sequence"]) for d in documents] == [("1.0", "order.shipped", f"{p:019d}") for p in (2, 5, 8)]
