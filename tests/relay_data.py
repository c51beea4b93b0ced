"""Data and process helpers shared by the relay tests."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

from conftest import evt_command

# Envelopes that exercise every field a round trip must keep.
ENVELOPES = [
    {"stream": "order-ord_1", "type": "order.placed", "version": 2, "id": "e-1", "timestamp": "2026-11-20T10:00:00.000001Z",
     "source": "checkout", "correlationId": "req-1", "data": {"orderId": "ord_1", "total": 12.5, "items": [{"productId": "p", "quantity": 1}]},
     "metadata": {"user": "ann", "ünï": "cödé"}},
    {"stream": "account-7", "type": "account.opened", "id": "e-2", "timestamp": "2026-11-20T10:00:01Z",
     "source": "bank", "correlationId": "req-1", "causationId": "e-1", "data": {"accountId": "7", "owner": "Alice Martin"}},
    {"stream": "order-ord_1", "type": "order.shipped", "id": "e-3", "timestamp": "2026-11-21T08:30:00.5Z",
     "data": {"orderId": "ord_1", "carrier": "dhl", "trackingNumber": "T1"}},
    {"stream": "order-ord_2", "type": "order.placed", "id": "e-4", "timestamp": "2026-11-22T00:00:00Z", "data": {"orderId": "ord_2", "total": 3}},
]


def ndjson(envelopes) -> str:
    return "".join(json.dumps(e) + "\n" for e in envelopes)


def many(n: int, start: int = 0) -> str:
    "n small events over a few streams and types, with unique ids."
    types = ("order.placed", "order.shipped", "account.credited")
    return "".join(
        json.dumps({"stream": f"{types[i % 3].split('.')[0]}-{i % 50}", "type": types[i % 3], "id": f"id-{i:07d}", "data": {"n": i}}) + "\n"
        for i in range(start, start + n)
    )


def query(db: str, sql: str, *params):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# Relays keep their positions among the store's checkpoints (kind 'relay') and ingest its
# bad messages in the dead-letter table (no position; the message as payload).
def positions(db: str) -> list[tuple]:
    "(name, kind, position) of every relay, by name."
    try:
        return query(db, "SELECT name, kind, position FROM evt_checkpoints WHERE kind = 'relay' ORDER BY name")
    except sqlite3.OperationalError:  # not created yet
        return []


def saved_position(db: str) -> int:
    "The position of the one relay that ran on this store (0 before it saved one)."
    rows = positions(db)
    return rows[0][2] if rows else 0


def dead_letters(db: str) -> list[tuple]:
    "(consumer, payload, error, attempts) of every dead letter, oldest first."
    return query(db, "SELECT consumer, payload, error, attempts FROM evt_dead_letters WHERE position IS NULL ORDER BY id")


def count_events(db: str) -> int:
    try:
        return query(db, "SELECT count(*) FROM events")[0][0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def spawn(cwd, *args: str) -> subprocess.Popen:
    return subprocess.Popen(evt_command() + [str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition, timeout: float = 30.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


class Proxy:
    """A TCP proxy on loopback in front of a broker, that can go down and come back.

    ``down()`` cuts every connection at both ends, so the broker sees each one close at
    once (as when a client's host goes away cleanly) and new connections are refused;
    ``up()`` listens again on the same port.

    A connection is cut with ``shutdown``, and its sockets are closed only once both of its
    directions are done. Closing a socket that another thread is blocked in ``recv`` on does
    not end the TCP connection on Linux (the blocked call holds it open, so the peer never
    sees a FIN): an earlier version did that when it raced with itself, and RabbitMQ then
    kept the cut connection, and the messages delivered on it unacknowledged, until its
    next heartbeat, up to a minute later.
    """

    def __init__(self, upstream_port: int):
        import socket
        import threading

        self.upstream = ("127.0.0.1", upstream_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.lock = threading.Lock()
        self.links: list[tuple] = []  # (client, server) of each open connection
        self.listener = self.accepting = None
        self.up()

    def up(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        with self.lock:
            self.listener = listener
        self.accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self.accepting.start()

    def down(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            links, self.links = self.links, []
        if listener is None:  # already down
            return
        _shutdown(listener)  # stops listening at once and wakes the accepting thread
        self.accepting.join()  # which closes the listener
        for link in links:
            for s in link:
                _shutdown(s)  # a FIN to both peers; the link's thread closes them

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                break
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                live = self.listener is listener  # not cut by a down() since accept()
                if live:
                    self.links.append((client, server))
            if not live:
                client.close()
                server.close()
                break
            threading.Thread(target=self._link, args=(client, server), daemon=True).start()
        listener.close()

    def _link(self, client, server) -> None:
        "Carry bytes both ways until either side ends; then end both, and close them."
        import threading

        back = threading.Thread(target=_pump, args=(server, client), daemon=True)
        back.start()
        _pump(client, server)
        back.join()
        with self.lock:
            if (client, server) in self.links:
                self.links.remove((client, server))
        client.close()
        server.close()


def _pump(source, sink) -> None:
    import socket

    try:
        while data := source.recv(65536):
            # MSG_NOSIGNAL: a peer that went away is an error here, never a SIGPIPE that
            # kills pytest (in-process evt calls set SIGPIPE back to its default).
            sink.sendall(data, socket.MSG_NOSIGNAL)
    except OSError:
        pass
    _shutdown(source)  # wakes the other direction's recv
    _shutdown(sink)


def _shutdown(s) -> None:
    import socket

    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected (any more)
        pass
