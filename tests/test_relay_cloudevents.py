"""evt relay --cloudevents structured|binary to Redis, RabbitMQ and NATS, read back by the
official CloudEvents SDK's bindings, and by evt ingest."""

from __future__ import annotations

import json

import pytest
from conftest import AMQP_URL, NATS_URL, REDIS_URL
from relay_data import ENVELOPES
from test_relay_redis import ingested, load

from evt.log.cloudevents import DEFAULT_SOURCE


def expected_attributes(stored: dict) -> dict:
    "What the SDK should read for a stored envelope, attribute by attribute (time as text)."
    attributes = {
        "specversion": "1.0",
        "id": stored["id"],
        "source": stored["source"] or DEFAULT_SOURCE,
        "type": stored["type"],
        "subject": stored["stream"],
        "time": stored["timestamp"],
        "datacontenttype": "application/json",
        "sequence": f"{stored['position']:019d}",
        "evtrevision": stored["revision"],
        "evtversion": stored["version"],
    }
    if stored["correlationId"] is not None:
        attributes["evtcorrelationid"] = stored["correlationId"]
    if stored["causationId"] is not None:
        attributes["evtcausationid"] = stored["causationId"]
    if stored["metadata"]:
        attributes["evtmetadata"] = json.dumps(stored["metadata"], separators=(",", ":"), ensure_ascii=False)
    return attributes


def as_text(attributes: dict) -> dict:
    "Attributes as binary mode carries them: every value as text, time in RFC 3339."
    out = {}
    for name, value in attributes.items():
        if name == "time" and not isinstance(value, str):
            value = value.isoformat().replace("+00:00", "Z")
            value = value if "." in value else value.replace("Z", ".000000Z")
        out[name] = value if isinstance(value, str) else str(value)
    return out


def check_sdk_event(event, stored: dict, binary: bool) -> None:
    expected = expected_attributes(stored)
    got = event.get_attributes()
    if binary:
        assert as_text(got) == as_text(expected)
    else:
        got = dict(got, time=as_text({"time": got["time"]})["time"])
        assert got == expected
    assert event.get_data() == stored["data"]


# -- RabbitMQ ----------------------------------------------------------------------------


def amqp_messages(amqp_broker, evt, mode):
    channel = amqp_broker.channel
    queue = amqp_broker.queue("ce")
    channel.exchange_declare(amqp_broker.exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, amqp_broker.exchange, routing_key="#")
    r = evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--cloudevents", mode)
    assert r.exit_code == 0, r
    return [channel.basic_get(queue, auto_ack=True) for _ in range(len(ENVELOPES))]


def test_rabbitmq_binary_mode_puts_the_attributes_in_cloudevents_application_properties(evt, amqp_broker):
    from cloudevents.core.bindings import amqp
    from cloudevents.core.formats.json import JSONFormat

    load(evt, ENVELOPES)
    stored = evt("read").json()
    for (method, properties, body), event in zip(amqp_messages(amqp_broker, evt, "binary"), stored):
        assert (properties.content_type, properties.message_id, properties.delivery_mode, method.routing_key) == (
            "application/json", event["id"], 2, event["type"],
        )  # fmt: skip
        assert all(name.startswith("cloudEvents:") for name in properties.headers)
        message = amqp.AMQPMessage(properties={"content-type": properties.content_type}, application_properties=properties.headers, application_data=body)
        check_sdk_event(amqp.from_binary(message, JSONFormat()), event, binary=True)


def test_rabbitmq_structured_mode_sends_the_event_as_cloudevents_json(evt, amqp_broker):
    from cloudevents.core.bindings import amqp
    from cloudevents.core.formats.json import JSONFormat

    load(evt, ENVELOPES)
    stored = evt("read").json()
    for (_, properties, body), event in zip(amqp_messages(amqp_broker, evt, "structured"), stored):
        assert properties.content_type == "application/cloudevents+json"
        message = amqp.AMQPMessage(properties={"content-type": properties.content_type}, application_properties={}, application_data=body)
        check_sdk_event(amqp.from_structured(message, JSONFormat()), event, binary=False)


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_rabbitmq_ingest_reads_either_mode_back(evt, amqp_broker, mode):
    queue = amqp_broker.queue()
    args = ("--exchange", amqp_broker.exchange, "--queue", queue, "--db", "b.db", "--wait", "0.3")
    evt("ingest", AMQP_URL, *args)  # declares the queue
    load(evt, ENVELOPES, "a.db")
    evt("relay", AMQP_URL, "--exchange", amqp_broker.exchange, "--cloudevents", mode, "--db", "a.db")
    r = evt("ingest", AMQP_URL, *args)
    assert r.stdout == ingested(f"{AMQP_URL.replace('guest:guest@', 'guest:***@')}#{queue}", 4, 4)
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout


def test_rabbitmq_ingest_takes_binary_events_of_other_producers(evt, amqp_broker):
    "The SDK's own AMQP binding, as another service would publish (cloudEvents_ prefix, native types)."
    import pika
    from cloudevents.core.bindings import amqp
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    queue = amqp_broker.queue()
    args = ("--exchange", amqp_broker.exchange, "--queue", queue, "--db", "b.db", "--wait", "0.3")
    evt("ingest", AMQP_URL, *args)
    event = CloudEvent(attributes={"id": "x-1", "source": "/billing", "type": "invoice.sent", "subject": "invoice-1"}, data={"total": 3})
    message = amqp.to_binary(event, JSONFormat())
    properties = pika.BasicProperties(content_type=message.properties.get("content-type"), headers=message.application_properties)
    amqp_broker.channel.basic_publish(amqp_broker.exchange, "invoice.sent", message.application_data, properties)
    r = evt("ingest", AMQP_URL, *args)
    assert json.loads(r.stdout)["appended"] == 1, r
    [stored] = evt("read", "--db", "b.db").json()
    assert (stored["id"], stored["stream"], stored["type"], stored["source"], stored["data"]) == ("x-1", "invoice-1", "invoice.sent", "/billing", {"total": 3})


# -- Redis ---------------------------------------------------------------------------------


def test_redis_binary_mode_has_one_field_per_attribute_and_structured_one_field(evt, redis_broker):
    from cloudevents.core.v1.event import CloudEvent
    from dateutil.parser import isoparse

    client, key = redis_broker
    load(evt, ENVELOPES)
    stored = evt("read").json()
    assert evt("relay", REDIS_URL, "--key", f"{key}-b", "--cloudevents", "binary").exit_code == 0
    assert evt("relay", REDIS_URL, "--key", f"{key}-s", "--cloudevents", "structured").exit_code == 0
    for (entry_id, fields), event in zip(client.xrange(f"{key}-b"), stored):
        assert entry_id == f"{event['position']}-0".encode()
        fields = {k.decode(): v.decode() for k, v in fields.items()}
        data = json.loads(fields.pop("data"))
        check_sdk_event(CloudEvent(attributes=dict(fields, time=isoparse(fields["time"])), data=data), event, binary=True)
    for (_, fields), event in zip(client.xrange(f"{key}-s"), stored):
        assert sorted(fields) == [b"cloudevent", b"id", b"position", b"type"]
        check_sdk_event(sdk_json(fields[b"cloudevent"]), event, binary=False)


def sdk_json(body):
    from cloudevents.core.formats.json import JSONFormat

    return JSONFormat().read(None, body)


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_redis_ingest_reads_either_mode_back(evt, redis_broker, mode):
    _, key = redis_broker
    load(evt, ENVELOPES, "a.db")
    evt("relay", REDIS_URL, "--key", key, "--cloudevents", mode, "--db", "a.db")
    r = evt("ingest", REDIS_URL, "--key", key, "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert r.stdout == ingested(f"{REDIS_URL}#{key}/g", 4, 4)
    assert evt("read", "--db", "b.db").stdout == evt("read", "--db", "a.db").stdout
    # a restarted relay in that mode is still checked against what the stream holds
    again = evt("relay", REDIS_URL, "--key", key, "--cloudevents", mode, "--db", "a.db", "--name", "again")
    assert json.loads(again.stdout)["alreadyPublished"] == 4


# -- NATS ----------------------------------------------------------------------------------


def test_nats_binary_mode_puts_the_attributes_in_ce_headers(evt, nats_broker):
    "Percent-encoded as the HTTP binding does, so the SDK's HTTP binding reads them."
    from cloudevents.core.bindings import http
    from cloudevents.core.formats.json import JSONFormat

    load(evt, ENVELOPES)
    stored = evt("read").json()
    assert evt("relay", NATS_URL, "--stream", nats_broker.stream, "--subject", nats_broker.subject, "--cloudevents", "binary").exit_code == 0
    for message, event in zip(nats_broker.messages(), stored):
        assert message.headers["Nats-Msg-Id"] == event["id"] and message.headers["Content-Type"] == "application/json"
        assert json.loads(message.data) == event["data"]
        check_sdk_event(http.from_binary(http.HTTPMessage(headers=message.headers, body=message.data), JSONFormat()), event, binary=True)
    assert "%C3%BCn%C3%AF" in nats_broker.messages()[0].headers["ce-evtmetadata"]  # text headers: non-ASCII escaped


def test_nats_structured_mode_sends_the_event_as_cloudevents_json(evt, nats_broker):
    load(evt, ENVELOPES)
    stored = evt("read").json()
    evt("relay", NATS_URL, "--stream", nats_broker.stream, "--subject", nats_broker.subject, "--cloudevents", "structured")
    for message, event in zip(nats_broker.messages(), stored):
        assert message.headers["Content-Type"] == "application/cloudevents+json"
        check_sdk_event(sdk_json(message.data), event, binary=False)
