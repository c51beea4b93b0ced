"""``evt append``: its options, a typer-free parser for its hot path, and the command.

``evt append`` is called once per event from shell loops, so start-up time counts:
``parse_fast`` reads the documented options without importing typer (or rich, or
pydantic unless a model is configured). It returns None for anything it does not
recognise (``--help``, an unknown option, a malformed value) and the typer command
then parses and reports it; both build the same ``AppendRequest``.
"""

from __future__ import annotations

import sys

from ..errors import InvalidInput, UsageError

VALUE_OPTIONS = {
    "--id": "id",
    "--schema-version": "schema_version",
    "--source": "source",
    "--correlation-id": "correlation_id",
    "--causation-id": "causation_id",
    "--meta": "meta",
    "--metadata": "metadata",
    "--expect": "expect",
    "--ndjson": "ndjson",
    "--db": "db",
    "--config": "config",
    "--model": "model",
    "--format": "format",
}
FLAG_OPTIONS = {"--quiet": "quiet", "-q": "quiet", "--no-validate": "no_validate"}
FORMATS = ("table", "json", "ndjson")


class AppendRequest:
    "What one ``evt append`` call asks for."

    def __init__(
        self,
        stream: str | None = None,
        type: str | None = None,
        data: str | None = None,
        *,
        ndjson: str | None = None,
        id: str | None = None,
        schema_version: int = 1,
        source: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        meta: list[str] | tuple[str, ...] = (),
        metadata: str | None = None,
        expect: str = "any",
        quiet: bool = False,
        no_validate: bool = False,
        format: str | None = None,
        db: str | None = None,
        config: str | None = None,
        model: str | None = None,
        keys: str | None = None,
    ):
        self.stream = stream
        self.type = type
        self.data = data
        self.ndjson = ndjson
        self.id = id
        self.schema_version = schema_version
        self.source = source
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.meta = list(meta)
        self.metadata = metadata
        self.expect = expect
        self.quiet = quiet
        self.no_validate = no_validate
        self.format = format
        self.db = db
        self.config = config
        self.model = model
        self.keys = keys

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AppendRequest) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"AppendRequest({vars(self)!r})"


def parse_fast(args: list[str]) -> AppendRequest | None:
    "The request for well-formed ``evt append`` arguments; None to let typer handle them."
    values: dict = {"meta": []}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, inline = arg.partition("=")
        if name in FLAG_OPTIONS and not eq:
            values[FLAG_OPTIONS[name]] = True
            continue
        if name not in VALUE_OPTIONS:
            return None
        if eq:
            value = inline
        elif i < len(args):
            value = args[i]
            i += 1
        else:
            return None
        key = VALUE_OPTIONS[name]
        if key == "meta":
            values["meta"].append(value)
        else:
            values[key] = value
    if len(positional) > 3 or values.get("format", "ndjson") not in FORMATS:
        return None
    version = values.pop("schema_version", "1")
    if not is_digits(version):
        return None  # typer's path reports it
    return AppendRequest(*positional, schema_version=int(version), **values)


def is_digits(text: str) -> bool:
    "ASCII digits only: no sign, space, underscore, decimal point or other scripts' digits."
    return text.isascii() and text.isdigit()


def schema_version(text: str) -> int:
    "``--schema-version`` as given: a whole number in ASCII digits (its range is the envelope's to check)."
    if not is_digits(text):
        raise UsageError(f"--schema-version takes a whole number >= 1 (ASCII digits), not {text!r}")
    return int(text)


def read_argument(text: str) -> bytes:
    """DATA as given: ``-`` is stdin, ``@path`` a file, anything else the text itself.

    An argument's bytes come back as they were given (Python decodes arguments that are
    not UTF-8 with surrogate escapes), so bad UTF-8 is found where the JSON is parsed.
    """
    if text == "-":
        return sys.stdin.buffer.read()
    if text.startswith("@"):
        try:
            with open(text[1:], "rb") as f:
                return f.read()
        except OSError as e:
            raise UsageError(f"cannot read {text[1:]}: {e.strerror}") from None
    return text.encode("utf-8", "surrogateescape")


QUOTE_HINT = """quote the JSON in single quotes, so the shell keeps it whole with its double quotes: '{"total": 5}'"""


def parse_object(text: str | bytes, what: str, typed: bool = False) -> dict:
    "A JSON object given by the user; ``typed``: on the command line, where the shell may have eaten its quotes."
    from ..log.envelope import MAX_DEPTH, json_kind, parse_json

    if isinstance(text, str):  # an argument: its bytes as given (not UTF-8 is found below)
        text = text.encode("utf-8", "surrogateescape")
    try:
        value = parse_json(text)
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{what} is not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except RecursionError:
        raise InvalidInput(f"{what} nests objects and arrays more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:
        hint = f" ({QUOTE_HINT})" if typed and _quotes_eaten(text) else ""
        raise InvalidInput(f"{what} is not valid JSON: {e}{hint}") from None
    if value is None:  # null is no data, as leaving it out is (and as "data": null in a batch)
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, not {json_kind(value)}")
    return value


def _quotes_eaten(text: str | bytes) -> bool:
    "{total: 5} or {total:5}: what the shell leaves of unquoted JSON."
    body = text.decode(errors="replace") if isinstance(text, bytes) else text
    body = body.strip()
    return body.startswith("{") and ":" in body and '"' not in body


def single_event(req: AppendRequest):
    from ..log.envelope import NewEvent

    if req.stream is None or req.type is None:
        raise UsageError("append needs STREAM and TYPE (or --ndjson FILE); see evt append --help")
    typed = req.data not in (None, "-") and not req.data.startswith("@")
    data = parse_object(read_argument(req.data), "DATA", typed) if req.data is not None else {}
    metadata = parse_object(req.metadata, "--metadata", typed=True) if req.metadata is not None else {}
    for item in req.meta:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--meta takes KEY=VALUE, not {item!r}")
        metadata[key] = value
    return NewEvent(
        req.stream,
        req.type,
        data,
        id=req.id,
        version=req.schema_version,
        source=req.source,
        correlation_id=req.correlation_id,
        causation_id=req.causation_id,
        metadata=metadata,
        expected=req.expect,
    )


BATCH_CONFLICTS = ("stream", "type", "data", "id", "source", "correlation_id", "causation_id", "metadata")


def batch_events(req: AppendRequest):
    from ..log.ndjson import read_events

    given = [name for name in BATCH_CONFLICTS if getattr(req, name) is not None] + (["meta"] if req.meta else [])
    if given or req.expect != "any" or req.schema_version != 1:
        raise UsageError("--ndjson takes every field from its lines; drop STREAM, TYPE, DATA and the envelope options")
    if req.ndjson == "-":
        return read_events(sys.stdin.buffer)
    try:
        source = open(req.ndjson, "rb")
    except OSError as e:
        raise UsageError(f"cannot read {req.ndjson}: {e.strerror}") from None
    return read_events(source)


def run_append(req: AppendRequest) -> int:
    from ..log.envelope import parse_expected
    from .context import Context

    if req.format is not None and req.format not in FORMATS:
        raise UsageError(f"unknown format {req.format!r} (choose from {', '.join(FORMATS)})")
    try:
        parse_expected(req.expect)
    except InvalidInput as e:
        raise UsageError(f"--expect: {e}") from None
    events = batch_events(req) if req.ndjson is not None else [single_event(req)]
    ctx = Context(req.db, req.config, req.model, req.keys)
    store, positions = ctx.write_creating(events, validate=not req.no_validate)
    if not req.quiet:
        print_events(store, positions, req.format)
    store.close()
    return 0


def print_events(store, positions: list[int], requested: str | None) -> None:
    from .output import (
        choose_format,
        envelope_layout,
        envelope_row,
        print_table,
        write_json_lines,
    )

    fmt = choose_format(requested)
    if fmt == "table":
        print_table((envelope_row(e) for e in store.events_at(positions, raw=True)), envelope_layout(max(positions, default=0)))
    else:
        write_json_lines(store.json_at(positions, raw=True), fmt)
