"""The errors evt raises, each carrying the exit code the CLI maps it to.

The library raises these; only the CLI boundary (``evt.cli.main``) turns them into
one ``evt: …`` line on stderr and an exit code.
"""

from __future__ import annotations


class EvtError(Exception):
    "Base class of every error evt reports to a user"

    exit_code = 1


class UsageError(EvtError):
    "A command was called wrongly, or the configuration is broken"

    exit_code = 2


class ConfigError(UsageError):
    "evt.toml or the model module cannot be used"


class Conflict(EvtError):
    "The store's state does not match what the caller expected"

    exit_code = 3


class WrongExpectedRevision(Conflict):
    "A stream is not at the revision the append expected"


class DuplicateEventId(Conflict):
    "An event id is already stored with other content"


class NotFound(EvtError):
    "Something that was named does not exist"

    exit_code = 4


class StreamNotFound(NotFound):
    "The named stream has no events"


class InvalidInput(EvtError):
    "Input cannot be stored: malformed JSON, a bad envelope, a schema violation"

    exit_code = 5


class StoreUnavailable(EvtError):
    "The store cannot be opened or written"

    exit_code = 6


class StoreMissing(StoreUnavailable):
    "There is no store at the path"


class NotAStore(StoreUnavailable):
    "The file is not an evt store"


class StoreCorrupted(StoreUnavailable):
    "The store's file is damaged: SQLite found a malformed page, or a row that is not what evt stores"


class StoreTooNew(StoreUnavailable):
    "The store was written by a newer evt"


class StoreTooOld(StoreUnavailable):
    "The store's format is older than a read-only caller (which never migrates it) needs"


class StoreLocked(StoreUnavailable):
    "Another process held the store's write lock past the busy timeout"


class StoreReadOnly(StoreUnavailable):
    "The store cannot be written"


class BrokerError(EvtError):
    "A message broker (Redis, RabbitMQ) cannot be used; the closest code is the store's"

    exit_code = 6


class BrokerUnavailable(BrokerError):
    "A broker cannot be reached, or went away, past the retries"


class BrokerRefused(BrokerError):
    "A broker answered with an error that retrying will not fix"


class HandlerFailed(EvtError):
    "A handler failed and processing stopped"

    exit_code = 7


class VerificationFailed(EvtError):
    "The store failed verification: its hash chain, positions, revisions, append-only triggers or file"

    exit_code = 8


class OutputClosed(BrokenPipeError):
    """evt's stdout is a pipe nobody reads any more (``evt consume … | head -1`` ended):
    a command that fails then is not the event's fault, so evt stops before it, quietly"""


class LineError(InvalidInput):
    """An error on one line of an NDJSON batch.

    Wraps the underlying error so its exit code is kept and the message names the line.
    """

    def __init__(self, line: int, error: EvtError):
        super().__init__(f"line {line}: {error}")
        self.line = line
        self.error = error
        self.exit_code = error.exit_code


class UpcastFailed(InvalidInput):
    "An upcaster raised, or produced data its target schema rejects"

    def __init__(self, position: int | None, type: str, version: int, reason: str):
        where = f"at position {position} " if position is not None else ""
        super().__init__(f"cannot upcast the event {where}({type} v{version}): {reason}")
        self.position = position
        self.reason = reason


def join_lines(text: str, separator: str = " ") -> str:
    "A text on one line: its lines (any break: \\n, \\r, \\u2028 …), stripped, joined by ``separator``."
    lines = text.splitlines()
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return separator.join(line.strip() for line in lines if line.strip())


def one_line(error: BaseException) -> str:
    "An exception as one line: pydantic's errors as 'field: message; …'."
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            listed = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(data)'}: {err['msg']}" for err in errors())
        except Exception:
            listed = ""
        if listed:
            return listed
    return " ".join(str(error).split())
