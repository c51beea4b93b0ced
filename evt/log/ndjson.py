"""NDJSON batches: one envelope per line, as ``evt read`` prints and ``evt append --ndjson`` takes.

A line may also be a structured CloudEvent (it has ``specversion``), as
``evt read --format cloudevents`` prints.
"""

from __future__ import annotations

import json
from typing import IO, Any, Iterator

from ..errors import EvtError, InvalidInput, LineError
from .cloudevents import new_event
from .envelope import MAX_DEPTH, NewEvent, has_long_number, parse_json


def parse_line(line: bytes) -> Any:
    "One line of JSON: orjson for speed, the standard library where orjson is not exact or refuses."
    import orjson

    if not has_long_number(line):  # orjson would read an integer beyond 64 bits as a float: those lines go to the standard library
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    try:
        return parse_json(line)
    except UnicodeDecodeError as e:
        raise InvalidInput(f"not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except RecursionError:
        raise InvalidInput(f"the line nests objects and arrays more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as e:  # the line is named by the caller: say only the column
        raise InvalidInput(f"invalid JSON at column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise InvalidInput(f"invalid JSON: {e}") from None


def read_events(lines: IO[bytes] | Iterator[bytes]) -> Iterator[NewEvent]:
    """The events of an NDJSON batch, each carrying its line number; blank lines are skipped.

    A line is an evt envelope or a structured CloudEvent; one that is neither raises
    LineError naming it.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = new_event(parse_line(line))
        except EvtError as e:
            raise LineError(number, e) from None
        event.line = number
        yield event
