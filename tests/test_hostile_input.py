"""Hostile input: every path ends in one `evt:` line and its documented exit code, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt.cli import append as append_cli
from evt.errors import join_lines as one_line
from evt.model.expressions import EvaluationProblem, Expression, InvalidExpression

BAD = "\udcff"  # how Python hands over the byte 0xff of an argument that is not UTF-8


def one_evt_line(result) -> bool:
    return result.stderr.startswith("evt: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# -- the fast append parser is inside the boundary --------------------------------------------


@pytest.mark.parametrize("version", ["²", "1.0", "1_000", " 3", "3 ", "-1", "+3", "３", "0x10", ""])
def test_schema_version_takes_ascii_digits_only(evt, version):
    result = evt("append", "s-1", "t.x", "{}", "--schema-version", version)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"evt: --schema-version takes a whole number >= 1 (ASCII digits), not {version!r}\n"
    assert not os.path.exists("events.db")


def test_schema_version_in_ascii_digits_is_taken_by_both_parsers(evt):
    assert append_cli.parse_fast(["s-1", "t.x", "--schema-version", "12"]).schema_version == 12
    assert append_cli.parse_fast(["s-1", "t.x", "--schema-version", "1_0"]) is None  # left to typer, which refuses it
    assert evt("append", "s-1", "t.x", "--schema-version", "12").json()[0]["version"] == 12


def test_a_raw_traceback_is_impossible_from_the_fast_path(tmp_path):
    "As a real process: the fast path's errors go through the boundary too."
    proc = subprocess.run(
        [sys.executable, "-m", "evt", "append", "s-1", "t", "{}", "--schema-version", "²"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, "", "evt: --schema-version takes a whole number >= 1 (ASCII digits), not '²'\n"
    )


SAFE_VALUES = {"--db": "h.db", "--config": "none.toml", "--model": "none.py", "--ndjson": "-"}
WORDS = st.one_of(
    st.sampled_from(list(append_cli.VALUE_OPTIONS) + list(append_cli.FLAG_OPTIONS) + ["--help", "--", "-"]),
    st.sampled_from(["s-1", "t.x", "{}", '{"a": 1}', "null", "[]", "1", "any", "0", "exists", "a=b", "json", "table"]),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)) | st.just(BAD), max_size=8),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(WORDS, max_size=7))
def test_any_append_arguments_end_in_a_documented_exit_code(evt, args):
    args = [a for a in args if not a.startswith("@")]  # no reading of arbitrary files
    args = [SAFE_VALUES.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    result = evt("append", *args)
    assert result.exit_code in (0, 2, 3, 5), result
    if result.exit_code:
        assert one_evt_line(result) and "internal error" not in result.stderr, result
    else:
        assert result.stderr == "", result


# -- invalid UTF-8 in arguments ------------------------------------------------------------


@pytest.fixture
def model(tmp_path):
    (tmp_path / "model.py").write_text(
        "from evt import Model\nmodel = Model()\n"
        "@model.aggregate('count', initial={'n': 0})\ndef count(state, event):\n    return {'n': state['n'] + 1}\n"
    )
    return "model.py"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["append", "s-1", "t.x", '{"a":"' + BAD + '"}'], 5, "DATA is not valid UTF-8 (byte 0xff at offset 6)"),
        (["append", "s-1", "t.x", "--metadata", '{"a":"' + BAD + '"}'], 5, "--metadata is not valid UTF-8 (byte 0xff at offset 6)"),
        (["read", "s" + BAD], 5, "stream 's\\xff' is not valid UTF-8 text"),
        (["read", "--type", BAD], 5, "type '\\xff' is not valid UTF-8 text"),
        (["read", "--category", BAD], 5, "category '\\xff' is not valid UTF-8 text"),
        (["read", "--correlation-id", BAD], 5, "correlation id '\\xff' is not valid UTF-8 text"),
        (["tail", BAD], 5, "stream '\\xff' is not valid UTF-8 text"),
        (["streams", "--category", BAD], 5, "category '\\xff' is not valid UTF-8 text"),
        (["dlq", "list", "--consumer", BAD], 5, "consumer '\\xff' is not valid UTF-8 text"),
        (["aggregate", "count", BAD, "--model", "model.py"], 5, "stream '\\xff' is not valid UTF-8 text"),
        (["aggregate", BAD, "s-1", "--model", "model.py"], 4, "no aggregate named '\\udcff' in the model (registered: count)"),
    ],
)
def test_arguments_that_are_not_utf8_are_invalid_input(evt, model, args, code, message):
    evt("append", "s-1", "t.x", "-q")
    result = evt(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", f"evt: {message}\n")
    assert len(evt("read").json()) == 1


# -- NDJSON nesting: one limit, on append ---------------------------------------------------


def nested(depth: int) -> dict:
    "data whose objects and arrays nest ``depth`` levels (data itself is level 1)."
    value: object = 1
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return {"d": value} if depth > 1 else {}


def test_data_nested_to_the_limit_is_stored_read_as_a_table_and_consumed(evt):
    line = json.dumps({"stream": "s-1", "type": "t.x", "data": nested(100), "metadata": nested(100)})
    assert evt("append", "--ndjson", "-", "-q", input=line + "\n").exit_code == 0
    assert evt("read", "--format", "table").exit_code == 0
    assert evt("read").json()[0]["data"] == nested(100)
    consumed = evt("consume", "c", "--exec", "cat > consumed.json")
    assert consumed.exit_code == 0, consumed
    assert json.loads(open("consumed.json").read())["data"] == nested(100)


@pytest.mark.parametrize("depth", [101, 500, 990, 1020, 3000])
def test_data_nested_past_the_limit_is_refused_naming_the_line(evt, depth):
    evt("append", "s-0", "t.x", "-q")
    lines = json.dumps({"stream": "s-1", "type": "t.x", "data": {}}) + "\n"
    deep = json.dumps({"stream": "s-1", "type": "t.x", "data": {}}).replace('"data": {}', '"data": ' + "[" * (depth - 1) + "{}" + "]" * (depth - 1))
    result = evt("append", "--ndjson", "-", input=lines + "{" + deep[1:] + "\n")
    assert result.exit_code == 5 and result.stdout == ""
    assert result.stderr in (
        "evt: line 2: data must be a JSON object, not an array\n",  # the outer value is an array here
        "evt: line 2: the line nests objects and arrays more than 100 levels deep\n",
    )
    obj = {"stream": "s-1", "type": "t.x", "data": nested(depth)}
    text = json.dumps(obj) if depth < 900 else _deep_text(depth)
    result = evt("append", "--ndjson", "-", input=lines + text + "\n")
    assert (result.exit_code, result.stdout) == (5, "")
    assert result.stderr in (
        "evt: line 2: data nests objects and arrays more than 100 levels deep\n",
        "evt: line 2: the line nests objects and arrays more than 100 levels deep\n",
    )
    single = evt("append", "s-1", "t.x", _deep_text(depth, envelope=False))
    assert (single.exit_code, single.stderr) in (
        (5, "evt: data nests objects and arrays more than 100 levels deep\n"),
        (5, "evt: DATA nests objects and arrays more than 100 levels deep\n"),
    )
    assert len(evt("read").json()) == 1


def _deep_text(depth: int, envelope: bool = True) -> str:
    "JSON text of data nested ``depth`` levels, built as text (json.dumps recurses)."
    data = '{"d":' * depth + "1" + "}" * depth
    return f'{{"stream": "s-1", "type": "t.x", "data": {data}}}' if envelope else data


# -- configuration and the environment -------------------------------------------------------


def test_invalid_utf8_in_evt_toml_is_a_configuration_error(evt, tmp_path):
    (tmp_path / "evt.toml").write_bytes(b'db = "events.db"\n# caf\xe9\n')
    result = evt("read")
    assert (result.exit_code, result.stderr) == (
        2, f"evt: {tmp_path / 'evt.toml'}, line 2: not valid UTF-8 (byte 0xe9); TOML files are UTF-8\n"
    )


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "2147484", "1e10", "abc", ""])
def test_busy_timeouts_sqlite_cannot_wait_are_refused(evt, monkeypatch, value):
    evt("append", "s-1", "t.x", "-q")
    monkeypatch.setenv("EVT_BUSY_TIMEOUT", value)
    result = evt("read")
    assert (result.exit_code, result.stderr) == (
        2, f"evt: EVT_BUSY_TIMEOUT must be a number of seconds from 0 to 2147483, not {value!r}\n"
    )


@pytest.mark.parametrize("value", ["0", "0.5", "2147483"])
def test_busy_timeouts_in_range_are_taken(evt, monkeypatch, value):
    monkeypatch.setenv("EVT_BUSY_TIMEOUT", value)
    assert evt("append", "s-1", "t.x", "-q").exit_code == 0


@pytest.mark.parametrize("value", ["true", "-1", "1e10"])
def test_busy_timeout_in_evt_toml_is_checked_alike(evt, tmp_path, value):
    (tmp_path / "evt.toml").write_text(f"busy_timeout = {value}\n")
    result = evt("append", "s-1", "t.x")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"evt: {tmp_path / 'evt.toml'}, line 1: busy_timeout must be ")


def test_a_deleted_current_folder_works_with_an_absolute_db_and_is_a_usage_error_without(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    db = tmp_path / "abs.db"
    script = (
        f"cd {gone} && rmdir {gone} && "
        f"{sys.executable} -m evt append s-1 t.x --db {db} -q; echo \"append $?\"; "
        f"{sys.executable} -m evt read --db {db} | wc -l; "
        f"{sys.executable} -m evt read; echo \"relative $?\""
    )
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert proc.stdout.split() == ["append", "0", "1", "relative", "2"]
    assert proc.stderr == (
        "evt: the current folder no longer exists, so 'events.db' names nothing; give --db an absolute path (or cd somewhere)\n"
    )


# -- a store on a read-only file system ---------------------------------------------------------


class ReadOnly:
    f_flag = os.ST_RDONLY


def test_creating_a_store_on_a_read_only_file_system_is_store_unavailable(evt, monkeypatch, tmp_path):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly() if os.path.realpath(p) == str(tmp_path) else real(p))
    result = evt("append", "s-1", "t.x")
    assert (result.exit_code, result.stderr) == (6, "evt: cannot create events.db: the file system is read-only\n")
    assert os.listdir(tmp_path) == []


def test_a_read_only_file_system_that_does_not_say_so_is_store_unavailable_too(evt, monkeypatch, tmp_path):
    "Where statvfs does not tell, SQLite cannot create the staging file, and removing what is not there fails with EROFS."
    import sqlite3

    from evt.log import store as store_module

    def refuse(path, **options):
        raise sqlite3.OperationalError("unable to open database file")

    def remove(path):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(store_module, "connect", refuse)
    monkeypatch.setattr(os, "remove", remove)
    result = evt("append", "s-1", "t.x")
    assert (result.exit_code, result.stderr) == (6, "evt: cannot open events.db: unable to open database file\n")


# -- the user's model misbehaving -----------------------------------------------------------


@pytest.mark.parametrize(
    "returned, reason",
    [
        ("{'x': float('nan')}", "Out of range float values are not JSON compliant"),
        ("{'x': float('inf')}", "Out of range float values are not JSON compliant"),
        ("{'x': {1, 2}}", "Object of type set is not JSON serializable"),
    ],
)
def test_an_upcaster_returning_what_is_not_json_is_invalid_input_on_read_and_in_a_migration(evt, tmp_path, returned, reason):
    (tmp_path / "model.py").write_text(
        f"from evt import Model\nmodel = Model()\n@model.upcaster('a', 1)\ndef a1(data):\n    return {returned}\n"
    )
    evt("append", "s-1", "a", "-q")
    message = f"evt: cannot upcast the event at position 1 (a v1): upcaster a v1 returned data that is not JSON: {reason}"
    for args in (["read"], ["read", "--format", "table"], ["tail"], ["upcast", "run", "--out", "new.db"]):
        result = evt(*args, "--model", "model.py")
        assert result.exit_code == 5 and result.stderr.startswith(message) and one_evt_line(result), (args, result)
    assert not os.path.exists("new.db")


def test_a_schema_validator_raising_type_error_is_invalid_input_naming_the_type(evt, tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent(
        """
        from pydantic import BaseModel, field_validator
        from evt import Model

        model = Model()


        @model.schema("order.placed")
        class Placed(BaseModel):
            total: object

            @field_validator("total")
            @classmethod
            def positive(cls, value):
                return value + 0  # TypeError for a string
        """
    ))
    result = evt("append", "order-1", "order.placed", '{"total": "x"}', "--model", "model.py")
    assert (result.exit_code, result.stdout) == (5, "")
    assert result.stderr == (
        'evt: order.placed v1 is invalid: its schema Placed raised TypeError: can only concatenate str (not "int") to str\n'
    )
    assert not os.path.exists("events.db")


def test_a_validator_message_with_line_breaks_is_one_line(evt, tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent(
        """
        from pydantic import BaseModel, field_validator
        from evt import Model

        model = Model()


        @model.schema("order.placed")
        class Placed(BaseModel):
            total: int

            @field_validator("total")
            @classmethod
            def positive(cls, value):
                if value < 0:
                    raise ValueError("must not be negative:\\n  got a refund?\\r\\n  use order.refunded")
                return value
        """
    ))
    result = evt("append", "order-1", "order.placed", '{"total": -1}', "--model", "model.py")
    assert (result.exit_code, result.stderr) == (
        5, "evt: order.placed v1 is invalid: total: Value error, must not be negative: got a refund? use order.refunded\n"
    )


def test_the_boundary_makes_any_message_one_line():
    assert one_line("a\nb\r\nc\u2028d") == "a b c d"
    assert one_line("plain") == "plain"
    assert one_line("") == ""


# -- --find expressions that would exhaust memory ---------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("'%999999999999d' % 1", "% and * work on numbers only"),
        ("'x' * 1000000000", "% and * work on numbers only"),
        ("-" * 100_000 + "1", "the expression is 100001 characters long (at most 1000)"),
        ("-" * 900 + "1", "nests more than 50 levels deep"),
        ("(" * 300 + "1" + ")" * 300, "not an expression"),
    ],
)
def test_expressions_that_would_exhaust_memory_are_usage_errors(evt, model, text, message):
    evt("append", "s-1", "t.x", "-q")
    result = evt("aggregate", "count", "s-1", "--find", text, "--model", "model.py")
    assert result.exit_code == 2 and message in result.stderr and one_evt_line(result)


@pytest.mark.parametrize(
    "text, state",
    [
        ("round(1, -1000000000) == 0", {}),
        ("round(1.5, 10 ** 9) == 0", {}),
        ("s % 5", {"s": "%999999999d"}),
        ("x * x * x * x * x * x * x * x * x * x * x * x * x * x * x * x > 0", {"x": 10**900}),
        ("s + s + s + s + s + s + s + s + s + s + s + s + s + s + s + s + s + s + s + s + s", {"s": "x" * 100_000}),
    ],
)
def test_evaluation_is_bounded_by_the_state_and_the_text(text, state):
    with pytest.raises(EvaluationProblem):
        Expression(text.replace("10 ** 9", "1000000000")).evaluate(state)


def test_an_expression_within_the_limits_still_works():
    assert Expression("round(balance, 2) < 0 and len(tags) % 2 == 0").evaluate({"balance": -1.234, "tags": ["a", "b"]})
    with pytest.raises(InvalidExpression):
        Expression("x" * 1001)


# -- one rule each ----------------------------------------------------------------------------


def test_data_null_is_no_data_on_the_command_line_as_in_a_batch(evt):
    "One rule: null is leaving the field out, for data as for every optional field."
    single = evt("append", "s-1", "t.x", "null", "--metadata", "null")
    assert (single.exit_code, single.json()[0]["data"], single.json()[0]["metadata"]) == (0, {}, {})
    batch = evt("append", "--ndjson", "-", input='{"stream": "s-1", "type": "t.x", "data": null, "metadata": null}\n')
    assert (batch.exit_code, batch.json()[0]["data"], batch.json()[0]["metadata"]) == (0, {}, {})
    for bad in ("[]", "5", '"x"'):
        assert evt("append", "s-1", "t.x", bad).exit_code == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["read", "--since", ""], "Invalid value for '--since': needs a value, not an empty string (see 'evt read --help')"),
        (["read", "--until", " "], "Invalid value for '--until': needs a value, not an empty string (see 'evt read --help')"),
        (["read", "--category", ""], "Invalid value for '--category': needs a value, not an empty string (see 'evt read --help')"),
        (["read", "--type", "x", "--type", ""], "Invalid value for '--type': needs a value, not an empty string (see 'evt read --help')"),
        (["tail", "--correlation-id", ""], "Invalid value for '--correlation-id': needs a value, not an empty string (see 'evt tail --help')"),
        (["aggregate", "count", "s-1", "--at", ""], "Invalid value for '--at': needs a value, not an empty string (see 'evt aggregate --help')"),
        (["read", "--db", ""], "--db needs a file path, not an empty string"),
        (["read", "--model", ""], "--model needs a file path or a module name, not an empty string"),
        (["read", "--config", ""], "--config needs a file path, not an empty string"),
        (["append", "s-1", "t.x", "--model", ""], "--model needs a file path or a module name, not an empty string"),
    ],
)
def test_an_empty_option_value_is_a_usage_error_never_no_value(evt, args, message):
    evt("append", "s-1", "t.x", "-q")
    result = evt(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"evt: {message}\n")


@pytest.mark.parametrize(
    "timestamp, stored",
    [
        ("2026-06-30T23:59:60Z", "2026-06-30T23:59:59.999999Z"),  # a leap second: the last microsecond of its minute
        ("2026-06-30T23:59:60.5+01:00", "2026-06-30T22:59:59.999999Z"),
        ("2026-01-01T00:00:00.123456789Z", "2026-01-01T00:00:00.123456Z"),  # nanoseconds cut, never rounded
        ("2026-01-01T23:59:59.9999999Z", "2026-01-01T23:59:59.999999Z"),
        ("2026-01-01t10:00:00.5z", "2026-01-01T10:00:00.500000Z"),
        ("2026-01-01T00:00:00-00:00", "2026-01-01T00:00:00.000000Z"),
    ],
)
def test_rfc3339_timestamps_one_rule(evt, timestamp, stored):
    result = evt("append", "--ndjson", "-", input=json.dumps({"stream": "s-1", "type": "t.x", "data": {}, "timestamp": timestamp}))
    assert (result.exit_code, result.json()[0]["timestamp"]) == (0, stored)


@pytest.mark.parametrize(
    "timestamp",
    ["2026-W01-3T00:00:00Z", "2026-001T00:00:00Z", "20260101T000000Z", "2026-01-01T00:00:00,5Z", "2026-01-01T00:00Z",
     "2026-01-01T00:00:00", "2026-01-01", "2026-01-01T00:00:00+0100", "2026-01-01T00:00:61Z", "2026-01-01T00:00:00+24:00"],
)
def test_what_is_not_rfc3339_is_refused(evt, timestamp):
    result = evt("append", "--ndjson", "-", input=json.dumps({"stream": "s-1", "type": "t.x", "data": {}, "timestamp": timestamp}))
    assert (result.exit_code, result.stderr) == (5, f"evt: line 1: timestamp {timestamp!r} is not RFC 3339\n")


@pytest.mark.parametrize("bound", ["2026-W01-3", "20260101", "2026-001", "2026-01-01T10"])
def test_time_bounds_take_rfc3339_or_a_date_only(evt, bound):
    evt("append", "s-1", "t.x", "-q")
    result = evt("read", "--since", bound)
    assert (result.exit_code, result.stderr) == (
        2, f"evt: --since {bound!r}: expected RFC 3339 (2026-11-28T02:00:00Z) or an age like 30s, 15m, 2h, 7d, 1w\n"
    )
    assert evt("read", "--since", "2026-01-01").exit_code == 0
    assert evt("read", "--until", "2999-01-01T10:00").json()[0]["stream"] == "s-1"
