"""A peer's own contract tests, run on evt: eventsourcing's ``ApplicationRecorderTestCase``.

    python benchmarks/peer_contract.py     # needs: pip install eventsourcing pycryptodome

The eventsourcing library (https://github.com/pyeventsourcing/eventsourcing) ships the
tests every one of its persistence modules must pass. This script runs them — insert and
select, notifications, conflicts, ``test_concurrent_no_conflicts``,
``test_concurrent_throughput``, ``test_performance`` — on an ``ApplicationRecorder``
written over evt's public API (below, about 60 lines), and then on eventsourcing's own
SQLite recorder, in the same run and on the same disk, so their printed rates and
durations can be read side by side. Both use WAL with ``synchronous=FULL``.

The mapping: an aggregate (``originator_id``) is a stream ``es-<id>``, its version the
event's position in the stream (a conflict — a version already stored — is evt's
expected revision failing); the event's ``topic`` is its type, its ``state`` bytes are
kept in ``data``; a notification id is evt's global position.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Notification, StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
    from eventsourcing.tests.persistence import ApplicationRecorderTestCase
except ImportError:
    sys.exit("peer_contract.py needs the peer and what its tests import: pip install eventsourcing pycryptodome")

from evt import Conflict, Filter, NewEvent, Store, StreamNotFound  # noqa: E402


class EvtApplicationRecorder(ApplicationRecorder):
    "eventsourcing's ApplicationRecorder over an evt.Store."

    def __init__(self, store: Store):
        self.store = store

    def insert_events(self, stored_events, **kwargs):
        events, streams = [], {}
        for s in stored_events:
            stream = streams.get(s.originator_id)
            expected = "any"
            if stream is None:  # the batch's first event of this aggregate: its version must be next
                stream = streams[s.originator_id] = f"es-{s.originator_id}"
                expected = self._revision_for(stream, s.originator_version)
            data = {"v": s.originator_version, "state": base64.b64encode(s.state).decode()}
            events.append(NewEvent(stream, s.topic, data, expected=expected))
        try:
            return self.store.write(events)
        except Conflict as e:
            raise IntegrityError(str(e)) from e

    def _revision_for(self, stream: str, version: int) -> int:
        "The stream's revision before an event of ``version``: versions count from the stream's first."
        first = next(self.store.read(Filter(stream=stream, limit=1), raw=True), None) if self.store.stream_revision(stream) else None
        return 0 if first is None else version - first.data["v"]

    def select_events(self, originator_id, *, gt=None, lte=None, desc=False, limit=None):
        stream = f"es-{originator_id}"
        try:
            found = [e for e in self.store.read(Filter(stream=stream, backwards=desc), raw=True)]
        except StreamNotFound:
            return []
        found = [e for e in found if (gt is None or e.data["v"] > gt) and (lte is None or e.data["v"] <= lte)]
        return [self._stored(e) for e in found[:limit]]

    def select_notifications(self, start, limit, stop=None, topics=(), *, inclusive_of_start=True):
        start = 1 if start is None else (start if inclusive_of_start else start + 1)
        found = self.store.read(Filter(exact_types=topics, start=start, end=stop, limit=limit), raw=True)
        return [self._stored(e, Notification, id=e.position) for e in found]

    def max_notification_id(self):
        return self.store.head() or None

    def subscribe(self, gt=None, topics=()):
        raise NotImplementedError("not part of the contract run here")

    @staticmethod
    def _stored(e, kind=StoredEvent, **more) -> StoredEvent:
        from uuid import UUID

        return kind(
            originator_id=UUID(e.stream[3:]), originator_version=e.data["v"], topic=e.type, state=base64.b64decode(e.data["state"]), **more
        )


FOLDER = Path(tempfile.mkdtemp(prefix="evt-peer-contract-"))
COUNT = iter(range(1_000_000))


class OnEvt(ApplicationRecorderTestCase):
    "eventsourcing's contract, on evt."

    def create_recorder(self):
        return EvtApplicationRecorder(Store(FOLDER / f"evt-{next(COUNT)}.db"))


class OnPeer(ApplicationRecorderTestCase):
    "The same contract on eventsourcing's own SQLite recorder, for comparison."

    def create_recorder(self):
        recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(FOLDER / f"peer-{next(COUNT)}.db")))
        recorder.create_table()
        return recorder


TESTS = ("test_insert_select", "test_concurrent_no_conflicts", "test_concurrent_throughput", "test_performance")


def main() -> int:
    import io
    import time

    timings: dict[tuple[str, str], float] = {}
    failed = False
    for name in TESTS:
        for case in (OnEvt, OnPeer):  # each test on evt, then on the peer: a busy moment hits both
            began = time.perf_counter()
            result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(case(name))
            timings[(name, case.__name__)] = time.perf_counter() - began
            if not result.wasSuccessful():
                failed = True
                for _, trace in result.failures + result.errors:
                    print(trace, file=sys.stderr)
    print(f"\n{'contract test':<32} {'on evt':>9} {'on peer':>9} {'evt/peer':>9}")
    for name in TESTS:
        evt_s, peer_s = timings[(name, "OnEvt")], timings[(name, "OnPeer")]
        print(f"{name:<32} {evt_s:>8.2f}s {peer_s:>8.2f}s {evt_s / peer_s:>9.2f}")
    print("\nall passed on both" if not failed else "\nFAILURES above")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
