"""The relay loop itself, whatever the broker: what it does when a connection is lost."""

from __future__ import annotations

import threading

import pytest

from evt import NewEvent, Store
from evt.errors import BrokerUnavailable
from evt.relay import relay


class Stop(Exception):
    "Ends a relay that follows the log (as Ctrl-C would)"


class LosesItsConnectionWhileIdle:
    """A target whose connection is lost once while the relay waits for new events.

    Every call is logged; using a connection after it was lost fails the test, as the
    real clients fail (pika raised a ValueError out of its closed timer loop, an internal
    error that ended ``evt relay --follow``).
    """

    kind = "test"
    name = "test"

    def __init__(self, lost: threading.Event):
        self.lost = lost
        self.calls: list[str] = []
        self.open = False
        self.published: list[str] = []

    def connect(self) -> None:
        self.calls.append("connect")
        self.open = True

    def publish(self, rows):
        assert self.open, "published on a lost connection"
        self.calls.append("publish")
        self.published += [row[2] for row in rows]
        if len(self.published) == 2:
            raise Stop
        return len(rows), 0

    def idle(self) -> None:
        assert self.open, "used a lost connection to wait"
        self.calls.append("idle")
        if not self.lost.is_set():
            self.open = False
            self.lost.set()
            raise BrokerUnavailable("the broker went away")

    def close(self) -> None:
        self.calls.append("close")
        self.open = False


def test_a_connection_lost_while_waiting_for_events_is_dropped_and_the_next_batch_reconnects(tmp_path):
    path = tmp_path / "a.db"
    with Store(path) as store:
        store.append(NewEvent("s-1", "t.x", {}, id="e-1"))
    lost = threading.Event()
    target = LosesItsConnectionWhileIdle(lost)

    def append_once_the_connection_is_lost():
        lost.wait(10)
        with Store(path) as other:  # another process appending, later
            other.append(NewEvent("s-1", "t.x", {}, id="e-2"))

    appender = threading.Thread(target=append_once_the_connection_is_lost)
    appender.start()
    try:
        with Store(path) as store, pytest.raises(Stop):
            relay(store, target, follow=True, poll_interval=0.01)
    finally:
        lost.set()
        appender.join()
    assert target.published == ["e-1", "e-2"]
    # the lost connection closed, never used again; the next batch on a new one; closed at the end
    assert target.calls == ["connect", "publish", "idle", "close", "connect", "publish", "close"]


def test_ctrl_c_during_a_commit_is_held_back_until_the_summary_counts_it():
    import os
    import signal

    import pytest

    from evt.relay.engine import interrupts_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once: the handler only notes it
            done.append("committed and counted")
    assert done == ["committed and counted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class PressesCtrlC:
    """A source that presses Ctrl-C (SIGINT to this process) in the middle of its own calls
    — as a user's Ctrl-C lands while a broker client imports its modules or runs its event
    loop — and then finishes them. ``times`` presses at once: a second one stops at once."""

    name = "test"

    def __init__(self, during: str, times: int = 1):
        self.during = during
        self.times = times
        self.calls: list[str] = []
        self.delivered = 0

    def _press(self, call: str) -> None:
        import os
        import signal

        self.calls.append(f"{call} began")
        if call == self.during:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)  # delivered at once, to this (the main) thread
        self.calls.append(f"{call} ended")

    def connect(self) -> None:
        self._press("connect")

    def fetch(self, count: int):
        from evt.relay.engine import Message

        self._press("fetch")
        self.delivered += 1
        return [Message(ref=self.delivered, body=f'{{"stream": "s-1", "type": "t.x", "id": "m-{self.delivered}"}}'.encode())]

    def ack(self, messages) -> None:
        self.calls.append("ack")

    def close(self) -> None:
        self.calls.append("close")


@pytest.mark.parametrize("during", ["connect", "fetch"])
def test_ctrl_c_ends_an_ingest_between_batches_never_inside_a_broker_call(tmp_path, during):
    """Ctrl-C is a request to stop, taken at the loop's next safe point: the call it landed
    in finishes, what was fetched is stored and acknowledged, and the summary counts it.
    Raised wherever it landed, it broke a NATS client mid-import (an internal error) and
    left its event loop's tasks pending (asyncio's complaints on stderr at exit)."""
    import signal

    from evt.relay import Interrupted, ingest

    source = PressesCtrlC(during)
    with Store(tmp_path / "b.db") as store, pytest.raises(Interrupted) as stopped:
        ingest(store, source, follow=True)
    stored = 1 if during == "fetch" else 0
    assert stopped.value.result.to_dict() == {"ingest": "test", "received": stored, "appended": stored, "duplicates": 0, "deadLettered": 0}
    assert source.calls == (
        ["connect began", "connect ended", "close"]
        if during == "connect"
        else ["connect began", "connect ended", "fetch began", "fetch ended", "ack", "close"]
    )
    with Store(tmp_path / "b.db") as store:
        assert [e.id for e in store.read()] == ["m-1"][:stored]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_stops_at_once():
    import signal

    from evt.relay import Interrupted, ingest

    source = PressesCtrlC("connect", times=2)
    with Store(":memory:") as store, pytest.raises(Interrupted):
        ingest(store, source, follow=True)
    assert source.calls == ["connect began", "close"]  # the connect did not finish
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
