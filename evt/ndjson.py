"""NDJSON batches: one envelope per line, as ``evt read`` prints and ``evt append --ndjson`` takes."""

from __future__ import annotations

from typing import IO, Any, Iterator

from .envelope import NewEvent, loads
from .errors import EvtError, InvalidInput, LineError


def parse_line(line: bytes) -> Any:
    "One line of JSON: orjson for speed, the standard library for what orjson refuses (big integers)."
    import orjson

    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        return loads(line)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"invalid JSON: {e}") from None


def read_events(lines: IO[bytes] | Iterator[bytes]) -> Iterator[NewEvent]:
    """The events of an NDJSON batch, each carrying its line number; blank lines are skipped.

    A line that is not a valid envelope raises LineError naming it.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = NewEvent.from_envelope(parse_line(line))
        except EvtError as e:
            raise LineError(number, e) from None
        event.line = number
        yield event
