"""CloudEvents 1.0 out (evt read/tail --format cloudevents) and in (evt append --ndjson),
checked with the official CloudEvents Python SDK."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from relay_data import ENVELOPES, ndjson
from test_relay_redis import envelopes_strategy, load

from evt.log.cloudevents import DEFAULT_SOURCE


def sdk_read(line: str):
    "A structured CloudEvent as the official SDK parses (and validates) it."
    from cloudevents.core.formats.json import JSONFormat

    return JSONFormat().read(None, line)


def test_read_prints_structured_cloudevents_the_sdk_reads(evt):
    load(evt, ENVELOPES)
    r = evt("read", "--format", "cloudevents")
    assert r.exit_code == 0, r
    first = sdk_read(r.lines[0])
    assert first.get_attributes() == {
        "specversion": "1.0",
        "id": "e-1",
        "source": "checkout",
        "type": "order.placed",
        "subject": "order-ord_1",
        "time": datetime(2026, 11, 20, 10, 0, 0, 1, tzinfo=timezone.utc),
        "datacontenttype": "application/json",
        "sequence": "0000000000000000001",
        "evtrevision": 1,
        "evtversion": 2,
        "evtcorrelationid": "req-1",
        "evtmetadata": '{"user":"ann","ünï":"cödé"}',
    }
    assert first.get_data() == ENVELOPES[0]["data"]
    second = sdk_read(r.lines[1])
    assert (second.get_extension("evtcausationid"), second.get_extension("sequence")) == ("e-1", "0000000000000000002")
    third = sdk_read(r.lines[2])  # no source, no correlation: the default source, and no null attributes
    assert third.get_source() == DEFAULT_SOURCE
    assert "evtcorrelationid" not in third.get_attributes() and "evtmetadata" not in third.get_attributes()
    # the sequences sort as text, as the Sequence extension asks
    assert [json.loads(line)["sequence"] for line in r.lines] == sorted(json.loads(line)["sequence"] for line in r.lines)


def test_cloudevents_json_is_one_array_the_batch_format(evt):
    load(evt, ENVELOPES)
    r = evt("read", "--format", "cloudevents-json", "--limit", "2")
    batch = json.loads(r.stdout)
    assert [sdk_read(json.dumps(e)).get_id() for e in batch] == ["e-1", "e-2"]
    assert batch == [json.loads(line) for line in evt("read", "--format", "cloudevents", "--limit", "2").lines]
    assert evt("read", "--type", "nothing.*", "--format", "cloudevents-json").stdout == "[]\n"


def test_tail_prints_cloudevents_too(evt, evt_proc):
    load(evt, ENVELOPES)
    r = evt("tail", "-n", "2", "--format", "cloudevents")
    assert [sdk_read(line).get_id() for line in r.lines] == ["e-3", "e-4"]
    assert r.lines == evt("read", "--format", "cloudevents").lines[2:]


def test_tail_follow_prints_cloudevents_as_they_are_appended(evt, tmp_path):
    import signal

    from relay_data import spawn, wait_until

    load(evt, ENVELOPES)
    proc = spawn(tmp_path, "tail", "-f", "-n", "1", "--format", "cloudevents")
    try:
        first = proc.stdout.readline().decode()
        assert sdk_read(first).get_id() == "e-4"
        evt("append", "order-ord_2", "order.shipped", '{"orderId": "ord_2"}', "--id", "e-5", "-q")
        follow = proc.stdout.readline().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert follow == evt("read", "--format", "cloudevents", "--from", "5").stdout
    wait_until(lambda: proc.returncode is not None)


def test_formats_for_events_only(evt):
    load(evt, ENVELOPES)
    r = evt("streams", "--format", "cloudevents")
    assert (r.exit_code, r.stderr) == (2, "evt: unknown format 'cloudevents' (choose from table, json, ndjson)\n")
    r = evt("read", "--format", "cloud")
    assert r.exit_code == 2
    assert r.stderr == "evt: unknown format 'cloud' (choose from table, json, ndjson, cloudevents, cloudevents-json)\n"


def test_a_round_trip_through_cloudevents_is_lossless(evt):
    odd = [
        {"stream": "s-1", "type": "t.x", "id": "empty-source", "source": "", "correlationId": "", "data": {}},
        {"stream": "s-1", "type": "t.x", "id": "default-source", "source": DEFAULT_SOURCE, "data": {"n": 123456789012345678901234567890}},
        {"stream": "s-1", "type": "t.x", "id": "meta", "metadata": {"nested": {"a": [1, 2.5, None]}}, "version": 7, "data": {"x": "\u2028"}},
    ]
    load(evt, ENVELOPES + odd, "a.db")
    lines = evt("read", "--db", "a.db", "--format", "cloudevents").stdout
    r = evt("append", "--ndjson", "-", "--db", "b.db", "-q", input=lines)
    assert (r.exit_code, r.stderr) == (0, "")
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout
    assert evt("read", "--db", "b.db", "--format", "cloudevents").stdout == lines
    # the same events again: idempotent by id
    assert evt("append", "--ndjson", "-", "--db", "b.db", "-q", input=lines).exit_code == 0
    assert evt("stats", "--db", "b.db").json()[0]["events"] == 7


def test_an_envelope_and_a_cloudevent_may_share_a_batch(evt):
    cloudevent = {"specversion": "1.0", "id": "ce-1", "source": "https://shop.example/checkout", "type": "order.paid", "subject": "order-ord_1",
                  "time": "2026-11-20T11:00:00+01:00", "traceparent": "00-abc-def-01", "dataschema": "https://shop.example/paid.json",
                  "data": {"orderId": "ord_1"}}  # fmt: skip
    r = evt("append", "--ndjson", "-", input=ndjson([ENVELOPES[0], cloudevent]))
    assert r.exit_code == 0, r
    stored = r.json()[1]
    assert {k: stored[k] for k in ("stream", "revision", "id", "type", "version", "timestamp", "source", "correlationId", "data", "metadata")} == {
        "stream": "order-ord_1",
        "revision": 2,
        "id": "ce-1",
        "type": "order.paid",
        "version": 1,
        "timestamp": "2026-11-20T10:00:00.000000Z",
        "source": "https://shop.example/checkout",
        "correlationId": None,
        "data": {"orderId": "ord_1"},
        "metadata": {"traceparent": "00-abc-def-01", "dataschema": "https://shop.example/paid.json"},
    }
    minimal = {"specversion": "1.0", "id": "ce-2", "source": "/x", "type": "t.x", "subject": "s-1"}
    [event] = evt("append", "--ndjson", "-", input=json.dumps(minimal)).json()
    assert (event["data"], event["metadata"], event["source"]) == ({}, {}, "/x")


BAD = [
    ({"specversion": "0.3", "id": "a", "source": "/s", "type": "t", "subject": "s-1"}, "unsupported CloudEvents specversion '0.3' (evt reads '1.0')"),
    ({"specversion": 1.0, "id": "a", "source": "/s", "type": "t", "subject": "s-1"}, "unsupported CloudEvents specversion 1.0 (evt reads '1.0')"),
    ({"specversion": "1.0", "id": "a", "type": "t", "subject": "s-1"}, "CloudEvent is missing the required attribute 'source'"),
    ({"specversion": "1.0", "source": "/s", "type": "t", "subject": "s-1"}, "CloudEvent is missing the required attribute 'id'"),
    ({"specversion": "1.0", "id": "a", "source": "", "type": "t", "subject": "s-1"}, "CloudEvent attribute 'source' must be a non-empty string, not ''"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t"}, "CloudEvent has no 'subject': evt stores an event in the stream its subject names"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": " s"},
     "CloudEvent subject ' s' contains a space: stream names may not contain whitespace"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "data": [1]}, "CloudEvent data must be a JSON object, not an array"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "data_base64": "AAA="},
     "CloudEvent carries binary data (data_base64): evt stores JSON objects"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "datacontenttype": "text/xml", "data": {}},
     "CloudEvent datacontenttype 'text/xml' is not JSON: evt stores JSON objects"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "Bad_Name": 1},
     "invalid CloudEvents attribute name 'Bad_Name' (lower-case letters and digits only)"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "time": "yesterday"}, "CloudEvent time 'yesterday' is not RFC 3339"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "evtmetadata": "{nope"},
     "CloudEvent attribute 'evtmetadata' is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1", "evtversion": 0}, "CloudEvent evtversion must be an integer >= 1, not 0"),
]


@pytest.mark.parametrize("cloudevent, error", BAD, ids=[e for _, e in BAD])
def test_an_invalid_cloudevent_is_exit_5_naming_the_line_and_nothing_is_written(evt, cloudevent, error):
    r = evt("append", "--ndjson", "-", input=ndjson([ENVELOPES[0], cloudevent]))
    assert (r.exit_code, r.stdout, r.stderr) == (5, "", f"evt: line 2: {error}\n")
    assert evt("read").exit_code == 6  # no store was created


def test_upcast_events_come_out_as_cloudevents_at_their_latest_version(evt, tmp_path):
    (tmp_path / "model.py").write_text(
        "from evt import Model\n"
        "model = Model()\n"
        "@model.upcaster('order.placed', 2)\n"
        "def v2(data):\n"
        "    return {**data, 'currency': 'EUR'}\n"
    )
    load(evt, ENVELOPES)
    lines = evt("read", "--model", "model.py", "--format", "cloudevents").lines
    first = sdk_read(lines[0])
    assert (first.get_extension("evtversion"), first.get_data()["currency"]) == (3, "EUR")
    assert json.loads(lines[3])["evtversion"] == 1  # no upcaster from v1: as stored
    raw = evt("read", "--model", "model.py", "--format", "cloudevents", "--raw").lines
    assert json.loads(raw[0])["evtversion"] == 2


def test_a_dead_letter_holding_a_cloudevent_is_listed_and_retried(evt):
    from evt import Store
    from evt.relay.state import record_bad_message

    cloudevent = json.dumps({"specversion": "1.0", "id": "ce-9", "source": "/s", "type": "t.x", "subject": "s-9", "data": {"n": 9}})
    evt("append", "s-1", "t.x", "-q")
    with Store("events.db") as store:
        record_bad_message(store, "nats://127.0.0.1:4222#events/d", cloudevent, "conflict")
    [entry] = evt("dlq", "list").json()
    assert (entry["eventId"], entry["type"]) == ("ce-9", "t.x")
    assert evt("dlq", "retry", str(entry["id"])).exit_code == 0
    assert [e["id"] for e in evt("read", "s-9").json()] == ["ce-9"]


def test_appending_a_cloudevent_does_not_import_the_cli_libraries(tmp_path):
    import subprocess
    import sys

    (tmp_path / "ce.ndjson").write_text(json.dumps({"specversion": "1.0", "id": "a", "source": "/s", "type": "t", "subject": "s-1"}) + "\n")
    code = (
        "import sys; from evt.__main__ import main; main(['append', '--ndjson', 'ce.ndjson', '-q']); "
        "print(sorted(m for m in ('typer', 'rich', 'pydantic', 'sqlite_utils', 'click', 'nats', 'cloudevents') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout == "[]\n", proc.stderr


def test_any_log_survives_the_round_trip_through_cloudevents(tmp_path):
    """For any events: the CloudEvents SQLite builds equal the ones Python builds, the SDK
    reads every one, and appending them to an empty store gives the same log."""
    import itertools

    from hypothesis import HealthCheck, given, settings

    from evt import NewEvent, Store
    from evt.log import cloudevents
    from evt.log.ndjson import read_events

    counter = itertools.count()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(envelopes_strategy())
    def check(envelopes):
        n = next(counter)
        with Store(tmp_path / f"a{n}.db") as a, Store(tmp_path / f"b{n}.db") as b:
            a.write([NewEvent.from_envelope(e) for e in envelopes])
            lines = list(a.read_json(cloudevents=True))
            assert [json.loads(line) for line in lines] == [json.loads(cloudevents.to_json(e)) for e in a.read()]
            for line, event in zip(lines, a.read()):
                parsed = sdk_read(line)
                assert (parsed.get_id(), parsed.get_subject(), parsed.get_type(), parsed.get_data()) == (event.id, event.stream, event.type, event.data)
            b.write(read_events(line.encode() for line in lines))
            assert list(b.read_json()) == list(a.read_json())

    check()


def test_binary_attributes_of_typed_amqp_headers_become_json(tmp_path):
    "AMQP headers may hold bytes, timestamps and decimals: they arrive as JSON values, the time as evt's timestamp."
    from decimal import Decimal

    from evt.log.cloudevents import binary_attributes, from_binary

    headers = {
        "cloudEvents_specversion": b"1.0", "cloudEvents:id": "x-1", "cloudEvents:source": "/s", "cloudEvents:type": "t.x",
        "cloudEvents:subject": "s-1", "cloudEvents:time": datetime(2026, 1, 2, 3, 4, 5), "cloudEvents:amount": Decimal("1.5"),
        "cloudEvents:due": datetime(2026, 2, 1), "cloudEvents:evtversion": "3", "stream": "not an attribute",
    }  # fmt: skip
    attributes = binary_attributes(headers, ("cloudEvents:", "cloudEvents_"), "application/json; charset=utf-8")
    event = from_binary(attributes, b'{"n": 1}')
    assert (event.id, event.stream, event.type, event.version, event.timestamp, event.data) == ("x-1", "s-1", "t.x", 3, "2026-01-02T03:04:05.000000Z", {"n": 1})
    assert event.metadata == {"amount": "1.5", "due": "2026-02-01T00:00:00Z"}
    assert binary_attributes({"stream": "s"}, ("cloudEvents:",)) is None  # not a CloudEvent: an envelope message
    with pytest.raises(Exception, match="CloudEvent data is not valid JSON"):
        from_binary(attributes, b"{nope")
