"""CloudEvents 1.0: evt's envelope as a CloudEvent, and back, without losing anything.

The one place that knows the mapping; ``evt read --format cloudevents``, ``evt append
--ndjson``, ``evt relay --cloudevents`` and ``evt ingest`` all use it.

===================  ===========================================================
CloudEvents          evt
===================  ===========================================================
``specversion``      ``"1.0"``
``id``               ``id``
``source``           ``source``; ``DEFAULT_SOURCE`` when the event has none
``type``             ``type``
``subject``          ``stream``
``time``             ``timestamp``
``datacontenttype``  ``"application/json"``
``data``             ``data``
``sequence``         ``position``, zero-padded to 19 digits (the Sequence
                     extension is a string that must sort lexicographically)
``evtrevision``      ``revision``
``evtversion``       ``version``
``evtcorrelationid`` ``correlationId`` (left out when null)
``evtcausationid``   ``causationId`` (left out when null)
``evtmetadata``      ``metadata`` as JSON text (left out when ``{}``: an extension
                     attribute cannot hold an object)
``evtsource``        ``source``, only when ``source`` cannot carry it: an empty
                     source, or one equal to ``DEFAULT_SOURCE``
===================  ===========================================================

Reading a CloudEvent back, ``sequence`` and ``evtrevision`` are ignored (the store
assigns positions and revisions, as for an envelope); ``source`` equal to
``DEFAULT_SOURCE`` with no ``evtsource`` is a null source. A CloudEvent from another
producer needs ``subject`` (the stream); its other attributes (``dataschema``, other
extensions) are kept in ``metadata`` under their names.

Binary content mode puts every attribute but ``data`` in the message's headers (or
fields), as text, and ``data`` in the body. Nothing here imports more than the
standard library: ``evt append`` reads NDJSON through this module.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from ..errors import EvtError, InvalidInput
from .envelope import Event, NewEvent, dumps, json_kind, parse_json
from .timestamps import format_timestamp

SPECVERSION = "1.0"
DEFAULT_SOURCE = "urn:evt:store"
DATA_CONTENT_TYPE = "application/json"
CONTENT_TYPE = "application/cloudevents+json"  # a structured event
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"  # a JSON array of them
SEQUENCE_DIGITS = 19  # every position (at most 2**63 - 1) sorts as text
MAX_CE_INTEGER = 2**31 - 1  # a CloudEvents Integer is 32 bits; beyond, a string

REQUIRED = ("id", "source", "type")
# Attributes the mapping reads; everything else goes to metadata.
KNOWN = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "sequence",
     "evtrevision", "evtversion", "evtcorrelationid", "evtcausationid", "evtmetadata", "evtsource"}
)  # fmt: skip
_NAME = re.compile(r"[a-z0-9]+")
_JSON_TYPE = re.compile(r"(application|text)/([a-zA-Z0-9\-.]+\+)?json(;.*)?", re.IGNORECASE)


def _integer(value: int) -> str:
    return str(value) if value <= MAX_CE_INTEGER else f'"{value}"'


# The structured event as one line of JSON, built by SQLite (as store.JSON_LINE is):
# the same text as ``to_json`` gives for an event read from the same row.
SQL_LINE = (
    """'{"specversion":"1.0","id":'||json_quote(id)"""
    f"""||',"source":'||CASE WHEN source IS NULL OR source = '' OR source = '{DEFAULT_SOURCE}' THEN '"{DEFAULT_SOURCE}"' ELSE json_quote(source) END"""
    """||',"type":'||json_quote(type)||',"subject":'||json_quote(stream)||',"time":'||json_quote(timestamp)"""
    f"""||',"datacontenttype":"{DATA_CONTENT_TYPE}","sequence":"'||printf('%0{SEQUENCE_DIGITS}d', position)||'"'"""
    f"""||',"evtrevision":'||CASE WHEN revision <= {MAX_CE_INTEGER} THEN revision ELSE '"'||revision||'"' END"""
    f"""||',"evtversion":'||CASE WHEN version <= {MAX_CE_INTEGER} THEN version ELSE '"'||version||'"' END"""
    """||CASE WHEN correlation_id IS NULL THEN '' ELSE ',"evtcorrelationid":'||json_quote(correlation_id) END"""
    """||CASE WHEN causation_id IS NULL THEN '' ELSE ',"evtcausationid":'||json_quote(causation_id) END"""
    """||CASE WHEN metadata = '{}' THEN '' ELSE ',"evtmetadata":'||json_quote(metadata) END"""
    f"""||CASE WHEN source = '' OR source = '{DEFAULT_SOURCE}' THEN ',"evtsource":'||json_quote(source) ELSE '' END"""
    """||',"data":'||data||'}'"""
)


def sequence(position: int) -> str:
    "The Sequence extension's value for a position: zero-padded, so it sorts as text."
    return f"{position:0{SEQUENCE_DIGITS}d}"


def to_dict(event: Event) -> dict:
    "The structured CloudEvent of a stored event, attributes in the documented order."
    source = event.source
    ce: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": source if source and source != DEFAULT_SOURCE else DEFAULT_SOURCE,
        "type": event.type,
        "subject": event.stream,
        "time": event.timestamp,
        "datacontenttype": DATA_CONTENT_TYPE,
        "sequence": sequence(event.position),
        "evtrevision": event.revision if event.revision <= MAX_CE_INTEGER else str(event.revision),
        "evtversion": event.version if event.version <= MAX_CE_INTEGER else str(event.version),
    }
    if event.correlation_id is not None:
        ce["evtcorrelationid"] = event.correlation_id
    if event.causation_id is not None:
        ce["evtcausationid"] = event.causation_id
    if event.metadata:
        ce["evtmetadata"] = dumps(event.metadata)
    if source is not None and (not source or source == DEFAULT_SOURCE):
        ce["evtsource"] = source
    ce["data"] = event.data
    return ce


def to_json(event: Event) -> str:
    "The structured CloudEvent of a stored event, as one line of JSON."
    return dumps(to_dict(event))


def is_cloudevent(value: Any) -> bool:
    "Whether a parsed JSON value is a structured CloudEvent (it has ``specversion``)."
    return isinstance(value, dict) and "specversion" in value


def new_event(value: Any) -> NewEvent:
    "The event to append for a parsed JSON value: an evt envelope or a structured CloudEvent."
    if isinstance(value, dict) and "specversion" in value:
        return from_dict(value)
    return NewEvent.from_envelope(value)


def from_dict(ce: Mapping[str, Any]) -> NewEvent:
    "The event a structured CloudEvent carries; InvalidInput naming what is wrong."
    specversion = ce.get("specversion")
    if specversion != SPECVERSION:
        raise InvalidInput(f"unsupported CloudEvents specversion {specversion!r} (evt reads {SPECVERSION!r})")
    for name in ce:
        if name not in ("data", "data_base64") and not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise InvalidInput(f"invalid CloudEvents attribute name {name!r} (lower-case letters and digits only)")
    for name in REQUIRED:
        value = ce.get(name)
        if value is None:
            raise InvalidInput(f"CloudEvent is missing the required attribute {name!r}")
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"CloudEvent attribute {name!r} must be a non-empty string, not {value!r}")
    if "subject" not in ce:
        raise InvalidInput("CloudEvent has no 'subject': evt stores an event in the stream its subject names")
    if "data_base64" in ce:
        raise InvalidInput("CloudEvent carries binary data (data_base64): evt stores JSON objects")
    content_type = ce.get("datacontenttype")
    if content_type is not None and not (isinstance(content_type, str) and _JSON_TYPE.fullmatch(content_type)):
        raise InvalidInput(f"CloudEvent datacontenttype {content_type!r} is not JSON: evt stores JSON objects")
    source = ce["source"]
    if "evtsource" in ce:
        source = _string(ce, "evtsource")
    elif source == DEFAULT_SOURCE:
        source = None
    metadata = _metadata(ce)
    for name, value in ce.items():
        if name not in KNOWN:
            metadata.setdefault(name, value)
    data = ce.get("data")
    try:
        return NewEvent(
            ce["subject"],
            ce["type"],
            {} if data is None else data,
            id=ce["id"],
            version=_version(ce.get("evtversion")),
            source=source,
            correlation_id=_string(ce, "evtcorrelationid"),
            causation_id=_string(ce, "evtcausationid"),
            metadata=metadata,
            timestamp=ce.get("time"),
        )
    except EvtError as e:
        raise InvalidInput(f"CloudEvent {_in_cloudevents_terms(str(e))}") from None


_ATTRIBUTE_OF = {"stream": "subject", "timestamp": "time", "version": "evtversion", "source": "evtsource",
                 "correlationId": "evtcorrelationid", "causationId": "evtcausationid", "metadata": "evtmetadata"}  # fmt: skip


def _in_cloudevents_terms(message: str) -> str:
    "An envelope error, naming the CloudEvents attribute instead of evt's field."
    field, space, rest = message.partition(" ")
    return f"{_ATTRIBUTE_OF.get(field, field)}{space}{rest}"


def _string(ce: Mapping[str, Any], name: str) -> str | None:
    value = ce.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"CloudEvent attribute {name!r} must be a string, not {value!r}")
    return value


def _version(value: Any) -> int:
    "``evtversion``: an Integer, or its text (binary mode, or beyond 32 bits)."
    if value is None:
        return 1
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value  # NewEvent checks it


def _metadata(ce: Mapping[str, Any]) -> dict:
    text = ce.get("evtmetadata")
    if text is None:
        return {}
    if not isinstance(text, str):
        raise InvalidInput(f"CloudEvent attribute 'evtmetadata' must be a JSON object as text, not {text!r}")
    try:
        value = parse_json(text)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"CloudEvent attribute 'evtmetadata' is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"CloudEvent attribute 'evtmetadata' must be a JSON object, not {json_kind(value)}")
    return value


# -- binary content mode ---------------------------------------------------------------


def attributes_of(structured: Mapping[str, Any]) -> dict[str, str]:
    "Every attribute of a structured CloudEvent but ``data``, as text (binary content mode)."
    return {name: value if isinstance(value, str) else dumps(value) for name, value in structured.items() if name != "data"}


def binary_attributes(headers: Mapping[Any, Any] | None, prefixes: tuple[str, ...], content_type: Any = None) -> dict[str, Any] | None:
    """The CloudEvents attributes of a binary-mode message's headers (names after one of
    ``prefixes``, compared without case), with its content type as ``datacontenttype``;
    None when the headers carry no ``specversion``."""
    if not headers:
        return None
    found: dict[str, Any] = {}
    lowered = tuple(p.lower() for p in prefixes)
    for key, value in headers.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        low = name.lower()
        for prefix in lowered:
            if low.startswith(prefix):
                attribute = low[len(prefix) :]
                found[attribute] = value if attribute == "time" and isinstance(value, datetime) else _plain(value)
                break
    if "specversion" not in found:
        return None
    if content_type is not None and "datacontenttype" not in found:
        found["datacontenttype"] = content_type.decode() if isinstance(content_type, bytes) else content_type
    return found


def _plain(value: Any) -> Any:
    "A header value as JSON can hold it (AMQP headers may be bytes, timestamps, decimals, tables)."
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo else f"{value.isoformat()}Z"  # AMQP timestamps are UTC
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def from_binary(attributes: Mapping[str, Any], body: bytes | str | None) -> NewEvent:
    "The event of a binary-mode message: attributes from its headers, ``data`` its body."
    ce = dict(attributes)
    time = ce.get("time")
    if isinstance(time, int) and not isinstance(time, bool):  # an AMQP timestamp: milliseconds since the epoch
        try:
            ce["time"] = format_timestamp(time * 1000)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(f"CloudEvent time {time} (milliseconds since 1970) is out of range") from None
    elif isinstance(time, datetime):
        ce["time"] = time.isoformat() if time.tzinfo else f"{time.isoformat()}Z"  # AMQP timestamps are UTC
    if body:
        try:
            ce["data"] = parse_json(body)
        except (ValueError, RecursionError, UnicodeDecodeError) as e:
            raise InvalidInput(f"CloudEvent data is not valid JSON: {e}") from None
    return from_dict(ce)


def binary_payload(attributes: Mapping[str, Any], body: bytes | str | None) -> str:
    "A binary-mode message as one structured JSON text (how a dead letter keeps it)."
    ce: dict[str, Any] = {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in attributes.items()}
    if body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            ce["data"] = parse_json(text)
        except (ValueError, RecursionError):
            ce["data"] = text
    return dumps(ce)


# Header values in text protocols (NATS): percent-encoded as the HTTP binding does.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def percent_encode(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe=_SAFE)


def percent_decode(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def binary_attributes_of(structured_json: str) -> dict[str, str]:
    "The attributes of a structured CloudEvent's JSON text, as text for headers (binary mode)."
    try:
        import orjson

        value = orjson.loads(structured_json)
    except (ValueError, TypeError):  # integers beyond 64 bits, which the standard library reads
        value = parse_json(structured_json)
    return attributes_of(value)
