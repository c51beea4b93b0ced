"""evt append: the envelope it stores and prints, expected revisions, idempotency, batches."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def count(db="events.db"):
    return sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]


def test_append_prints_the_stored_envelope_with_every_field_in_order(evt):
    result = evt(
        "append", "order-ord_1", "order.placed", '{"orderId": "ord_1", "total": 12.5}',
        "--id", "e1", "--schema-version", "2", "--source", "checkout",
        "--correlation-id", "req-1", "--causation-id", "cmd-1", "--meta", "user=ann",
    )
    assert result.exit_code == 0, result
    assert result.stderr == ""
    [line] = result.lines
    envelope = json.loads(line)
    assert list(envelope) == [
        "position", "stream", "revision", "id", "type", "version", "timestamp",
        "source", "correlationId", "causationId", "data", "metadata",
    ]
    timestamp = envelope.pop("timestamp")
    assert TIMESTAMP.match(timestamp)
    assert envelope == {
        "position": 1, "stream": "order-ord_1", "revision": 1, "id": "e1", "type": "order.placed",
        "version": 2, "source": "checkout", "correlationId": "req-1", "causationId": "cmd-1",
        "data": {"orderId": "ord_1", "total": 12.5}, "metadata": {"user": "ann"},
    }
    assert line == (
        '{"position":1,"stream":"order-ord_1","revision":1,"id":"e1","type":"order.placed","version":2,'
        f'"timestamp":"{timestamp}","source":"checkout","correlationId":"req-1","causationId":"cmd-1",'
        '"data":{"orderId":"ord_1","total":12.5},"metadata":{"user":"ann"}}'
    )


def test_defaults_empty_data_generated_time_ordered_ids_and_nulls(evt):
    first = evt("append", "s-1", "thing.happened").json()[0]
    second = evt("append", "s-1", "thing.happened").json()[0]
    assert first["data"] == {} and first["metadata"] == {} and first["version"] == 1
    assert first["source"] is None and first["correlationId"] is None and first["causationId"] is None
    assert UUID7.match(first["id"]) and UUID7.match(second["id"])
    assert first["id"] < second["id"]
    assert (second["position"], second["revision"]) == (2, 2)


def test_data_from_stdin_and_from_a_file(evt, tmp_path):
    (tmp_path / "payload.json").write_text('{"from": "file"}')
    assert evt("append", "s-1", "a.b", "-", input='{"from": "stdin"}').json()[0]["data"] == {"from": "stdin"}
    assert evt("append", "s-1", "a.b", "@payload.json").json()[0]["data"] == {"from": "file"}


def test_metadata_json_and_meta_entries_merge(evt):
    result = evt("append", "s-1", "a.b", "--metadata", '{"a": 1, "b": 2}', "--meta", "b=x", "--meta", "c=y=z")
    assert result.json()[0]["metadata"] == {"a": 1, "b": "x", "c": "y=z"}


def test_quiet_prints_nothing(evt):
    result = evt("append", "s-1", "a.b", "--quiet")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert count() == 1


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["s-1", "a.b", "{bad"], "evt: DATA is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)", 5),
        (["s-1", "a.b", "[1, 2]"], "evt: DATA must be a JSON object, not an array", 5),
        (["s-1", "a.b", '{"x": NaN}'], "evt: DATA is not valid JSON: NaN is not valid JSON", 5),
        (["s-1", "a.b", '{"x": 1e400}'], "evt: DATA is not valid JSON: number 1e400 is out of range", 5),
        (["s-1", "a.b", '{"x": "\\ud800"}'], "evt: \\ud800 is not valid Unicode text (a lone surrogate)", 5),
        (["s-1", "a.b", "--source", "\udcff"], "evt: \\udcff is not valid Unicode text (a lone surrogate)", 5),
        (["s-1", "a.b", "--schema-version", "0"], "evt: version must be an integer >= 1, not 0", 5),
        (["s-1", "a.b", "--schema-version", str(2**64)], f"evt: version {2**64} is too large (at most {2**63 - 1})", 5),
        (["s-1", "a.b", "--metadata", "[]"], "evt: --metadata must be a JSON object, not an array", 5),
        (["s-1", "a.b", "--meta", "novalue"], "evt: --meta takes KEY=VALUE, not 'novalue'", 2),
        (["s-1", "a.b", "--expect", "sometimes"], "evt: --expect: expected revision must be a number >= 0, 'any' or 'exists', not 'sometimes'", 2),
        (["s-1", "a.b", "@missing.json"], "evt: cannot read missing.json: No such file or directory", 2),
        (["s-1"], "evt: append needs STREAM and TYPE (or --ndjson FILE); see evt append --help", 2),
        (["s-1", "a.b", "--bogus"], "evt: No such option: --bogus (see 'evt append --help')", 2),
        ([" s-1", "a.b"], "evt: stream ' s-1' contains a space: stream names may not contain whitespace", 5),
        (["order 1", "a.b"], "evt: stream 'order 1' contains a space: stream names may not contain whitespace", 5),
        (["s-1", "a.b\t"], "evt: type 'a.b\\t' contains whitespace ('\\t'): type names may not contain whitespace", 5),
        (["s-1\x07", "a.b"], "evt: stream 's-1\\x07' contains the unprintable character '\\x07': stream names must be printable", 5),
        (["s-1", ""], "evt: type must not be empty", 5),
        (["s-1", "a.b", '{total:5}'], "evt: DATA is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) "
         """(quote the JSON in single quotes, so the shell keeps it whole with its double quotes: '{"total": 5}')""", 5),
    ],
)
def test_bad_input_is_one_line_an_exit_code_and_no_store(evt, tmp_path, args, message, code):
    result = evt("append", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", message + "\n")
    assert list(tmp_path.iterdir()) == [] or not (tmp_path / "events.db").exists()


def test_bad_input_writes_nothing_to_an_existing_store(evt):
    evt("append", "s-1", "a.b", "-q")
    assert evt("append", "s-1", "a.b", "{oops").exit_code == 5
    assert count() == 1


class TestExpectedRevision:
    def test_zero_means_the_stream_must_not_exist(self, evt):
        assert evt("append", "s-1", "a.b", "--expect", "0", "-q").exit_code == 0
        result = evt("append", "s-1", "a.b", "--expect", "0")
        assert (result.exit_code, result.stderr) == (3, "evt: stream 's-1' already exists, at revision 1 (expected it not to exist)\n")
        assert count() == 1

    def test_a_number_must_match_the_revision(self, evt):
        evt("append", "s-1", "a.b", "-q")
        assert evt("append", "s-1", "a.b", "--expect", "1").json()[0]["revision"] == 2
        assert evt("append", "s-1", "a.b", "--expect", "1").exit_code == 3
        assert count() == 2

    def test_a_revision_expected_of_a_missing_stream_says_it_does_not_exist(self, evt):
        result = evt("append", "s-1", "a.b", "--expect", "5")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "", "evt: stream 's-1' does not exist (expected it at revision 5)\n")
        evt("append", "s-1", "a.b", "-q")
        result = evt("append", "s-1", "a.b", "--expect", "5")
        assert (result.exit_code, result.stderr) == (3, "evt: stream 's-1' is at revision 1, expected 5\n")

    def test_exists(self, evt):
        result = evt("append", "s-1", "a.b", "--expect", "exists")
        assert (result.exit_code, result.stderr) == (3, "evt: stream 's-1' does not exist (expected it to exist)\n")
        evt("append", "s-1", "a.b", "-q")
        assert evt("append", "s-1", "a.b", "--expect", "exists").exit_code == 0


class TestIdempotency:
    def test_same_id_and_content_returns_the_stored_event_without_a_duplicate(self, evt):
        first = evt("append", "s-1", "a.b", '{"x": 1, "y": 2}', "--id", "k1")
        again = evt("append", "s-1", "a.b", '{"y": 2, "x": 1}', "--id", "k1", "--expect", "0")
        assert again.exit_code == 0
        assert again.stdout == first.stdout
        assert count() == 1

    def test_same_id_other_content_is_a_conflict(self, evt):
        evt("append", "s-1", "a.b", '{"x": 1}', "--id", "k1", "-q")
        result = evt("append", "s-1", "a.b", '{"x": 2}', "--id", "k1")
        assert result.exit_code == 3
        assert result.stderr == (
            "evt: event id 'k1' is already stored (position 1, stream 's-1', type 'a.b') with other content\n"
        )
        other_stream = evt("append", "s-2", "a.b", '{"x": 1}', "--id", "k1")
        assert other_stream.exit_code == 3
        assert count() == 1

    @pytest.mark.parametrize(
        "option",
        [
            ["--schema-version", "2"],
            ["--source", "billing"],
            ["--correlation-id", "req-2"],
            ["--causation-id", "cmd-2"],
            ["--meta", "user=bob"],
        ],
    )
    def test_every_field_the_writer_gives_is_content(self, evt, option):
        "The same id with another version, source, correlation, causation or metadata is another event: exit 3."
        given = ["--source", "shop", "--correlation-id", "req-1", "--causation-id", "cmd-1", "--meta", "user=ann"]
        evt("append", "s-1", "a.b", '{"x": 1}', "--id", "k1", "-q", *given)
        assert evt("append", "s-1", "a.b", '{"x": 1}', "--id", "k1", *given).exit_code == 0  # a re-run: the same event
        changed = dict(zip(given[::2], given[1::2])) | {option[0]: option[1]}
        result = evt("append", "s-1", "a.b", '{"x": 1}', "--id", "k1", *[x for kv in changed.items() for x in kv])
        assert (result.exit_code, result.stderr) == (
            3, "evt: event id 'k1' is already stored (position 1, stream 's-1', type 'a.b') with other content\n"
        )
        assert count() == 1

    def test_a_timestamp_is_content_only_when_it_is_given(self, evt):
        "A re-run stamped anew by the store is the same event; an import giving another time is not."
        line = '{"stream": "s-1", "type": "a.b", "id": "k1", "data": {}, "timestamp": "2026-01-01T00:00:00Z"}'
        evt("append", "--ndjson", "-", "-q", input=line)
        assert evt("append", "s-1", "a.b", "--id", "k1").exit_code == 0
        assert evt("append", "--ndjson", "-", "-q", input=line.replace("00:00:00Z", "00:00:00.000000+00:00")).exit_code == 0
        assert evt("append", "--ndjson", "-", "-q", input=line.replace("2026-01-01", "2026-01-02")).exit_code == 3
        assert count() == 1

    @pytest.mark.parametrize("other", ['{"x": true}', '{"x": [1]}', '{"x": 1, "y": null}', '{"x": "1"}'])
    def test_true_is_not_1(self, evt, other):
        evt("append", "s-1", "a.b", '{"x": 1}', "--id", "k1", "-q")
        assert evt("append", "s-1", "a.b", other, "--id", "k1").exit_code == 3
        assert evt("append", "s-1", "a.b", '{"x": 1.0}', "--id", "k1").exit_code == 0
        assert count() == 1

    def test_expect_takes_ascii_digits_only(self, evt):
        result = evt("append", "s-1", "a.b", "--expect", "\uff10")
        assert (result.exit_code, result.stderr) == (2, "evt: --expect: expected revision must be a number >= 0, 'any' or 'exists', not '\uff10'\n")


def envelope(stream, type="a.b", **fields):
    return json.dumps({"stream": stream, "type": type, "data": fields.pop("data", {}), **fields})


class TestNdjson:
    def test_null_optional_fields_are_as_if_left_out(self, evt):
        nulls = {f: None for f in ("id", "version", "source", "correlationId", "causationId", "metadata", "timestamp", "expectedRevision")}
        result = evt("append", "--ndjson", "-", input=envelope("s-1", **nulls))
        assert result.exit_code == 0, result.stderr
        stored = result.json()[0]
        assert (stored["version"], stored["metadata"], stored["source"]) == (1, {}, None)

    def test_a_line_without_data_means_an_empty_object_as_a_single_append_does(self, evt):
        lines = '{"stream": "s-1", "type": "a.b"}\n{"stream": "s-1", "type": "a.b", "data": null}\n'
        result = evt("append", "--ndjson", "-", input=lines)
        assert result.exit_code == 0, result.stderr
        single = evt("append", "s-1", "a.b")
        assert [e["data"] for e in result.json() + single.json()] == [{}, {}, {}]

    def test_a_batch_is_stored_in_order_and_printed(self, evt, tmp_path):
        lines = [envelope("s-1", data={"n": 1}), "", envelope("s-2", data={"n": 2}), envelope("s-1", data={"n": 3})]
        (tmp_path / "batch.ndjson").write_text("\n".join(lines) + "\n")
        result = evt("append", "--ndjson", "batch.ndjson")
        assert result.exit_code == 0, result
        printed = result.json()
        assert [(e["position"], e["stream"], e["revision"], e["data"]["n"]) for e in printed] == [
            (1, "s-1", 1, 1), (2, "s-2", 1, 2), (3, "s-1", 2, 3),
        ]
        assert len({e["timestamp"] for e in printed}) == 1  # one append, one time

    def test_every_writable_field_and_imported_timestamps(self, evt):
        line = envelope(
            "s-1", id="e-9", version=3, source="svc", correlationId="c", causationId="d",
            metadata={"k": "v"}, timestamp="2026-01-02T03:04:05+02:00", data={"a": [1, "ü"]},
        )
        stored = evt("append", "--ndjson", "-", input=line).json()[0]
        assert stored == {
            "position": 1, "stream": "s-1", "revision": 1, "id": "e-9", "type": "a.b", "version": 3,
            "timestamp": "2026-01-02T01:04:05.000000Z", "source": "svc", "correlationId": "c",
            "causationId": "d", "data": {"a": [1, "ü"]}, "metadata": {"k": "v"},
        }

    @pytest.mark.parametrize(
        "bad, message",
        [
            ("{not json", "evt: line 2: invalid JSON at column 2: Expecting property name enclosed in double quotes"),
            ('{"stream": "s-1", "data": {}}', "evt: line 2: missing field 'type'"),
            ('{"stream": "s 1", "type": "a.b"}', "evt: line 2: stream 's 1' contains a space: stream names may not contain whitespace"),
            ('{"stream": "s-1", "type": "a.b", "data": 5}', "evt: line 2: data must be a JSON object, not a number"),
            ('{"stream": "s-1", "type": "a.b", "data": {}, "correlation_id": "x"}', "evt: line 2: unknown field 'correlation_id' (allowed: causationId, correlationId, data, expectedRevision, id, metadata, position, revision, source, stream, timestamp, type, version)"),
            ('{"stream": "s-1", "type": "a.b", "data": {}, "timestamp": "yesterday"}', "evt: line 2: timestamp 'yesterday' is not RFC 3339"),
            ('{"stream": "s-1", "type": "a.b", "data": {}, "expectedRevision": 5}', "evt: line 2: stream 's-1' is at revision 1, expected 5"),
            ("[]", "evt: line 2: expected a JSON object"),
        ],
    )
    def test_a_bad_line_is_named_and_nothing_is_written(self, evt, bad, message):
        evt("append", "s-0", "a.b", "-q")
        batch = "\n".join([envelope("s-1"), bad, envelope("s-1")])
        result = evt("append", "--ndjson", "-", input=batch)
        assert (result.stdout, result.stderr) == ("", message + "\n")
        assert result.exit_code == (3 if "expected 5" in message else 5)
        assert count() == 1

    def test_expected_revision_counts_earlier_lines_of_the_batch(self, evt):
        batch = "\n".join([
            envelope("s-1", expectedRevision=0), envelope("s-1", expectedRevision=1),
            envelope("s-1", expectedRevision="exists"), envelope("s-2", expectedRevision="any"),
        ])
        assert [e["revision"] for e in evt("append", "--ndjson", "-", input=batch).json()] == [1, 2, 3, 1]

    def test_reimporting_a_file_is_idempotent(self, evt, tmp_path):
        batch = "\n".join(envelope("s-1", id=f"e{i}", data={"i": i}) for i in range(5))
        first = evt("append", "--ndjson", "-", input=batch)
        again = evt("append", "--ndjson", "-", input=batch)
        assert again.exit_code == 0 and again.stdout == first.stdout
        assert count() == 5

    def test_duplicate_ids_inside_one_batch(self, evt):
        same = "\n".join([envelope("s-1", id="x"), envelope("s-1", id="x")])
        assert [e["position"] for e in evt("append", "--ndjson", "-", input=same).json()] == [1, 1]
        clash = "\n".join([envelope("s-2", id="y"), envelope("s-2", id="y", data={"other": 1})])
        result = evt("append", "--ndjson", "-", input=clash)
        assert result.exit_code == 3
        # y is not stored: the message says where it was given first
        assert result.stderr == "evt: line 2: event id 'y' is given twice in this batch with other content (first on line 1)\n"
        assert count() == 1

    def test_read_output_is_valid_input_and_copies_a_log(self, evt):
        for i in range(3):
            evt("append", f"s-{i % 2}", "a.b", json.dumps({"i": i}), "--correlation-id", "c", "-q")
        original = evt("read").stdout
        assert evt("append", "--ndjson", "-", "--db", "copy.db", "-q", input=original).exit_code == 0
        assert evt("read", "--db", "copy.db").stdout == original

    def test_ndjson_rejects_single_event_options(self, evt):
        result = evt("append", "s-1", "--ndjson", "-", input=envelope("s-1"))
        assert result.exit_code == 2
        assert result.stderr == "evt: --ndjson takes every field from its lines; drop STREAM, TYPE, DATA and the envelope options\n"

    def test_a_large_batch_crosses_chunk_boundaries(self, evt):
        batch = "\n".join(envelope(f"s-{i % 7}", id=f"id-{i}", data={"i": i}) for i in range(2500))
        result = evt("append", "--ndjson", "-", "-q", input=batch)
        assert result.exit_code == 0
        again = evt("append", "--ndjson", "-", input=batch)
        assert len(again.lines) == 2500 and count() == 2500
        assert [e["data"]["i"] for e in again.json()] == list(range(2500))


def test_big_integers_and_out_of_range_numbers_in_a_batch(evt):
    big = '{"stream": "s-1", "type": "a.b", "data": {"n": 123456789012345678901234567890, "m": -18446744073709551617}}\n'
    assert evt("append", "--ndjson", "-", input=big).json()[0]["data"] == {
        "n": 123456789012345678901234567890,
        "m": -18446744073709551617,
    }
    lines = "".join(f'{{"stream": "s-2", "type": "a.b", "data": {{"i": {i}}}}}\n' for i in range(600))
    result = evt("append", "--ndjson", "-", input=lines + '{"stream": "s-2", "type": "a.b", "data": {"f": 1e999}}\n')
    assert (result.exit_code, result.stdout, result.stderr) == (5, "", "evt: line 601: invalid JSON: number 1e999 is out of range\n")
    result = evt("append", "--ndjson", "-", input='{"stream": "s-2", "type": "a.b", "data": {}}\n{"stream": "s-2", "type": "a.b", "data": {"s": "\\udc00"}}\n')
    assert (result.exit_code, result.stderr) == (5, "evt: line 2: \\udc00 is not valid Unicode text (a lone surrogate)\n")
    assert count() == 1


@pytest.mark.parametrize(
    "timestamp, stored",
    [
        ("2026-01-01 10:00:00+01:00", "2026-01-01T09:00:00.000000Z"),  # RFC 3339 allows a space
        ("0001-01-01T00:00:00+01:00", "evt: line 1: timestamp '0001-01-01T00:00:00+01:00' is out of range in UTC"),
        ("9999-12-31T23:00:00-05:00", "evt: line 1: timestamp '9999-12-31T23:00:00-05:00' is out of range in UTC"),
    ],
)
def test_imported_timestamps_at_the_edges(evt, timestamp, stored):
    result = evt("append", "--ndjson", "-", input=json.dumps({"stream": "s-1", "type": "a.b", "data": {}, "timestamp": timestamp}))
    if stored.startswith("evt:"):
        assert (result.exit_code, result.stdout, result.stderr) == (5, "", stored + "\n")
    else:
        assert (result.exit_code, result.json()[0]["timestamp"]) == (0, stored)


def test_a_time_bound_out_of_range_is_a_usage_error(evt):
    evt("append", "s-1", "a.b", "-q")
    result = evt("read", "--since", "0001-01-01T00:00:00+01:00")
    assert (result.exit_code, result.stderr) == (2, "evt: --since '0001-01-01T00:00:00+01:00' is out of range in UTC\n")
