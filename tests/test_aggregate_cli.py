"""evt aggregate: fold a stream, travel in time, show its history, find what broke it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_helpers import ACCOUNT_7, envelope, ndjson, write_model


@pytest.fixture
def bank(evt):
    "A store with account-7 (5 events) and the bank model, named in evt.toml."
    write_model()
    Path("evt.toml").write_text('model = "model.py"\n')
    assert evt("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7)).exit_code == 0
    return evt


def event_json(n: int, position: int | None = None) -> dict:
    e = ACCOUNT_7[n - 1]
    return {
        "position": position or n,
        "stream": "account-7",
        "revision": n,
        "id": e["id"],
        "type": e["type"],
        "version": 1,
        "timestamp": e["timestamp"].replace("Z", ".000000Z"),
        "source": None,
        "correlationId": None,
        "causationId": None,
        "data": e["data"],
        "metadata": {},
    }


def test_state_as_one_json_line(bank):
    result = bank("aggregate", "account", "account-7")
    assert (result.exit_code, result.stdout, result.stderr) == (0, '{"owner":"Ann","balance":30.0}\n', "")


def test_state_as_indented_json(bank):
    assert bank("aggregate", "account", "account-7", "--format", "json").stdout == (
        '{\n  "owner": "Ann",\n  "balance": 30.0\n}\n'
    )


def test_state_on_a_terminal(bank):
    result = bank("aggregate", "account", "account-7", "--format", "table")
    assert result.stdout.splitlines() == [
        "account account-7 at revision 5 (2026-11-20T10:05:00.000000Z)",
        'owner    "Ann"',
        "balance  30.0 ",
    ]


def test_at_revision(bank):
    assert bank("aggregate", "account", "account-7", "--at-revision", "3").json() == [{"owner": "Ann", "balance": 70.0}]


def test_at_time_takes_the_events_up_to_then(bank):
    assert bank("aggregate", "account", "account-7", "--at", "2026-11-20T10:04:00Z").json() == [
        {"owner": "Ann", "balance": -20.0}
    ]
    assert bank("aggregate", "account", "account-7", "--at", "2026-11-20T10:03:59+00:00").json() == [
        {"owner": "Ann", "balance": 70.0}
    ]
    assert bank("aggregate", "account", "account-7", "--at", "1d").json() == [{"owner": "Ann", "balance": 30.0}]


def test_at_a_time_before_the_stream_is_not_found(bank):
    result = bank("aggregate", "account", "account-7", "--at", "2026-11-19")
    assert (result.exit_code, result.stderr) == (4, "evt: stream 'account-7' had no events yet at 2026-11-19T00:00:00.000000Z\n")


def test_at_a_revision_past_the_head_is_not_found(bank):
    result = bank("aggregate", "account", "account-7", "--at-revision", "6")
    assert (result.exit_code, result.stderr) == (4, "evt: stream 'account-7' has revisions 1 to 5; there is no revision 6\n")


@pytest.mark.parametrize("revision", ["0", "-1"])
def test_at_revision_zero_is_before_the_stream_not_found_as_in_python(bank, revision):
    "Revision 0 is the state before the stream's first event: there is none, exit 4 (not a usage error)."
    from evt import Store, load_model
    from evt.model.aggregates import RevisionNotFound, get_aggregate, load

    result = bank("aggregate", "account", "account-7", "--at-revision", revision)
    message = f"revision {revision} is before stream 'account-7': its revisions are 1 to 5"
    assert (result.exit_code, result.stdout, result.stderr) == (4, "", f"evt: {message}\n")
    with Store("events.db") as store, pytest.raises(RevisionNotFound) as raised:
        load(store, get_aggregate(load_model("model.py"), "account"), "account-7", at_revision=int(revision))
    assert (str(raised.value), raised.value.exit_code) == (message, 4)


def test_a_stream_none_of_whose_events_has_a_handler_says_so_on_stderr(bank):
    bank("append", "order-1", "order.placed", '{"total": 5}', "-q")
    bank("append", "order-1", "order.shipped", "-q")
    result = bank("aggregate", "account", "order-1")
    assert (result.exit_code, result.json()) == (0, [{"owner": None, "balance": 0.0}])
    assert result.stderr == (
        "evt: no event of order-1 has a handler in aggregate 'account' (its types: order.placed, order.shipped); "
        "the state is the initial one\n"
    )
    assert bank("aggregate", "account", "account-7").stderr == ""


def test_a_handled_stream_back_at_its_initial_state_says_nothing(bank):
    "The note is about events no handler saw, not about a state that happens to be the initial one."
    bank("append", "account-8", "account.credited", '{"amount": 5}', "-q")
    bank("append", "account-8", "account.debited", '{"amount": 5, "reason": "x"}', "-q")
    result = bank("aggregate", "account", "account-8")
    assert (result.exit_code, result.json(), result.stderr) == (0, [{"owner": None, "balance": 0.0}], "")


def test_bad_time_is_a_usage_error(bank):
    result = bank("aggregate", "account", "account-7", "--at", "yesterday")
    assert result.exit_code == 2
    assert result.stderr.startswith("evt: --at 'yesterday': expected RFC 3339")


def test_history_as_ndjson(bank):
    steps = bank("aggregate", "account", "account-7", "--history").json()
    assert steps[0] == {
        "event": event_json(1),
        "state": {"owner": "Ann", "balance": 0.0},
        "changes": [{"path": ".owner", "from": None, "to": "Ann"}],
    }
    assert [s["changes"] for s in steps[1:]] == [
        [{"path": ".balance", "from": 0.0, "to": 100.0}],
        [{"path": ".balance", "from": 100.0, "to": 70.0}],
        [{"path": ".balance", "from": 70.0, "to": -20.0}],
        [{"path": ".balance", "from": -20.0, "to": 30.0}],
    ]
    assert steps[-1]["state"] == {"owner": "Ann", "balance": 30.0}


def test_history_as_a_json_array_stops_at_a_revision(bank):
    result = bank("aggregate", "account", "account-7", "--history", "--format", "json", "--at-revision", "2")
    assert result.stdout.startswith("[\n{")
    assert [s["event"]["revision"] for s in json.loads(result.stdout)] == [1, 2]


def test_history_as_a_table(bank, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    lines = [line.rstrip() for line in bank("aggregate", "account", "account-7", "--history", "--format", "table").lines]
    assert lines == [
        "revision  time (UTC)           type              data                           changes",
        '       1  2026-11-20 10:01:00  account.opened    {"owner":"Ann"}                .owner: null → "Ann"',
        '       2  2026-11-20 10:02:00  account.credited  {"amount":100}                 .balance: 0.0 → 100.0',
        '       3  2026-11-20 10:03:00  account.debited   {"amount":30,"reason":"rent"}  .balance: 100.0 → 70.0',
        '       4  2026-11-20 10:04:00  account.debited   {"amount":90,"reason":"car"}   .balance: 70.0 → -20.0',
        '       5  2026-11-20 10:05:00  account.credited  {"amount":50}                  .balance: -20.0 → 30.0',
    ]


def test_history_table_on_an_80_column_terminal_cuts_nothing_off(bank, monkeypatch):
    "Columns wrap instead of being cropped: every character of every cell is shown."
    from collections import Counter

    monkeypatch.setenv("COLUMNS", "80")
    result = bank("aggregate", "account", "account-7", "--history", "--format", "table")
    assert result.exit_code == 0
    assert max(len(line) for line in result.lines) <= 80
    steps = bank("aggregate", "account", "account-7", "--history").json()
    cells = "".join(
        json.dumps(s["event"]["data"], separators=(",", ":")) + s["event"]["type"] + s["event"]["timestamp"][:19].replace("T", "")
        + "".join(f'{c["path"]}:{json.dumps(c["from"])}→{json.dumps(c["to"])}' for c in s["changes"])
        for s in steps
    )
    shown = Counter("".join(result.stdout.split()))
    assert not Counter("".join(cells.split())) - shown


def test_find_the_event_that_broke_an_invariant(bank):
    result = bank("aggregate", "account", "account-7", "--find", "balance < 0")
    assert result.exit_code == 0
    assert result.json() == [
        {
            "event": event_json(4),
            "state": {"owner": "Ann", "balance": -20.0},
            "changes": [{"path": ".balance", "from": 70.0, "to": -20.0}],
        }
    ]


def test_find_on_a_terminal(bank, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    lines = [line.rstrip() for line in bank("aggregate", "account", "account-7", "--find", "balance < 0", "--format", "table").lines]
    assert lines[0] == "balance < 0 first holds after revision 4 of account-7:"
    assert lines[2].startswith("       4  2026-11-20 10:04:00  account.debited")
    assert lines[3:] == ["state after it:", 'owner    "Ann"', "balance  -20.0"]


def test_find_that_never_holds_is_exit_4(bank):
    result = bank("aggregate", "account", "account-7", "--find", "balance < -100")
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == "evt: balance < -100 never holds in account-7 (5 events folded by account)\n"


def test_find_with_a_misspelt_name_says_so(bank):
    result = bank("aggregate", "account", "account-7", "--find", "balanse < 0")
    assert result.exit_code == 4
    assert result.stderr == (
        "evt: balanse < 0 never holds in account-7 (5 events folded by account); 'balanse' is not in the state\n"
    )


def test_find_does_not_call_a_name_missing_that_appears_later(evt):
    write_model(extra="""
        @model.aggregate("late", initial={})
        def late(state, event):
            if event.revision >= 2:
                state["x"] = event.revision
    """)
    Path("evt.toml").write_text('model = "model.py"\n')
    evt("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7[:3]))
    result = evt("aggregate", "late", "account-7", "--find", "x > 5")
    assert (result.exit_code, result.stderr) == (4, "evt: x > 5 never holds in account-7 (3 events folded by late)\n")


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os').system('true')", "only len, abs, min, max, sum and round can be called"),
        ("owner.__class__", ".__class__ is not allowed"),
        ("[x for x in owner]", "ListComp is not allowed"),
        ("balance <", "not an expression (invalid syntax)"),
        ("balance ** 99999999", "Pow is not allowed"),
    ],
)
def test_find_refuses_anything_but_a_small_expression(bank, expression, message):
    result = bank("aggregate", "account", "account-7", "--find", expression)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"evt: --find {expression!r}: {message}")


def test_history_and_find_cannot_be_combined(bank):
    result = bank("aggregate", "account", "account-7", "--history", "--find", "balance < 0")
    assert (result.exit_code, result.stderr) == (2, "evt: --history and --find cannot be combined; choose one\n")


def test_unknown_aggregate_is_exit_4(bank):
    result = bank("aggregate", "acount", "account-7")
    assert (result.exit_code, result.stderr) == (4, "evt: no aggregate named 'acount' in the model (registered: account)\n")


def test_missing_stream_is_exit_4(bank):
    for args in ((), ("--history",), ("--find", "balance < 0")):
        result = bank("aggregate", "account", "account-8", *args)
        assert (result.exit_code, result.stderr) == (4, "evt: stream 'account-8' not found (no events)\n")


def test_no_model_is_a_configuration_error(evt):
    result = evt("aggregate", "account", "account-7")
    assert result.exit_code == 2
    assert result.stderr.startswith("evt: no model configured: pass --model FILE.py")


def test_missing_store_is_exit_6(evt):
    write_model()
    result = evt("aggregate", "account", "account-7", "--model", "model.py")
    assert result.exit_code == 6
    assert result.stderr.startswith("evt: no store at events.db")


def test_an_aggregate_that_raises_is_exit_7_naming_the_event(evt):
    write_model(extra='''
        @model.aggregate("fragile", initial={"n": 0})
        def fragile(state, event):
            return {"n": state["n"] + event.data["amount"]}
    ''')
    evt("append", "--ndjson", "-", "-q", "--model", "model.py", input=ndjson(ACCOUNT_7))
    result = evt("aggregate", "fragile", "account-7", "--model", "model.py")
    assert result.exit_code == 7
    line = next(n for n, text in enumerate(Path("model.py").read_text().splitlines(), 1) if "state[\"n\"] + event.data" in text)
    assert result.stderr == f"evt: aggregate 'fragile' raised KeyError: 'amount' (model.py, line {line}) on account-7 revision 1 (account.opened)\n"


def test_a_function_aggregate_with_dict_state(evt):
    write_model(extra='''
        @model.aggregate("summary", initial={"events": 0, "types": []})
        def summary(state, event):
            state["events"] += 1
            if event.type not in state["types"]:
                state["types"].append(event.type)
    ''')
    evt("append", "--ndjson", "-", "-q", "--model", "model.py", input=ndjson(ACCOUNT_7))
    assert evt("aggregate", "summary", "account-7", "--model", "model.py").json() == [
        {"events": 5, "types": ["account.opened", "account.credited", "account.debited"]}
    ]
    second = evt("aggregate", "summary", "account-7", "--model", "model.py", "--at-revision", "1").json()
    assert second == [{"events": 1, "types": ["account.opened"]}]  # the initial state is not shared between folds


def test_a_dataclass_aggregate_with_glob_handlers(evt):
    write_model(extra='''
        from dataclasses import dataclass, field

        @model.aggregate("activity")
        @dataclass
        class Activity:
            credits: int = 0
            moves: list[str] = field(default_factory=list)

            @on("account.credited")
            def credited(self, event):
                self.credits += 1

            @on("account.*")
            def anything(self, event):
                self.moves.append(event.type.split(".")[1])
    ''')
    evt("append", "--ndjson", "-", "-q", "--model", "model.py", input=ndjson(ACCOUNT_7))
    assert evt("aggregate", "activity", "account-7", "--model", "model.py").json() == [
        {"credits": 2, "moves": ["opened", "debited", "debited"]}
    ]


def test_aggregates_see_upcast_events(evt):
    write_model(extra='''
        @model.upcaster("account.credited", 1)
        def cents_to_amount(data):
            return {"amount": data["cents"] / 100}
    ''')
    events = [
        envelope("account-1", "account.credited", {"cents": 250}, 1),
        envelope("account-1", "account.credited", {"amount": 1.5}, 2, version=2),
    ]
    # stored as the old code wrote it (before the v1 schema changed): a trusted import
    evt("append", "--ndjson", "-", "-q", "--no-validate", "--model", "model.py", input=ndjson(events))
    assert evt("aggregate", "account", "account-1", "--model", "model.py").json() == [{"owner": None, "balance": 4.0}]


def test_aggregate_in_a_real_process_with_evt_model_from_another_folder(evt_proc, tmp_path):
    model = write_model(tmp_path / "domain")
    env = {"EVT_MODEL": str(model)}
    assert evt_proc("append", "--ndjson", "-", "-q", input=ndjson(ACCOUNT_7), env=env).exit_code == 0
    result = evt_proc("aggregate", "account", "account-7", "--at-revision", "4", env=env)
    assert (result.exit_code, result.stdout, result.stderr) == (0, '{"owner":"Ann","balance":-20.0}\n', "")


def test_an_upcaster_that_raises_names_the_event(evt):
    write_model(extra='''
        @model.upcaster("account.credited", 1)
        def broken(data):
            return {"amount": data["cents"] / 100}
    ''')
    evt("append", "--ndjson", "-", "-q", "--model", "model.py", input=ndjson(ACCOUNT_7))
    result = evt("aggregate", "account", "account-7", "--model", "model.py")
    assert result.exit_code == 5
    assert result.stderr == (
        "evt: cannot upcast the event at position 2 (account.credited v1): "
        "upcaster account.credited v1 raised KeyError: 'cents'\n"
    )


def test_history_of_a_missing_stream_prints_nothing(bank):
    result = bank("aggregate", "account", "account-8", "--history", "--format", "json")
    assert (result.exit_code, result.stdout, result.stderr) == (4, "", "evt: stream 'account-8' not found (no events)\n")


def test_a_long_history_table_prints_as_it_goes(capsys, monkeypatch):
    "Rows are printed TABLE_CHUNK at a time (one header), not after the whole stream is folded."
    from evt import Model
    from evt.model.aggregates import history
    from evt.cli.model import print_steps
    from evt.cli.output import TABLE_CHUNK
    from evt.testing import given

    monkeypatch.setenv("COLUMNS", "120")
    model = Model()
    model.aggregate("count", initial={"n": 0})(lambda state, event: {"n": state["n"] + 1})
    ticks = given(*[("tick", {}) for _ in range(TABLE_CHUNK + 10)], model=model)
    printed_before_the_last_chunk = []

    def folding():
        for n, step in enumerate(history(ticks.store, model.aggregates["count"], "test-1"), 1):
            if n == TABLE_CHUNK + 1:
                printed_before_the_last_chunk.append(capsys.readouterr().out)
            yield step

    print_steps(folding())
    first, rest = printed_before_the_last_chunk[0], capsys.readouterr().out
    assert first.splitlines()[0].split() == ["revision", "time", "(UTC)", "type", "data", "changes"]
    assert [line.split()[0] for line in first.splitlines()[1:]] == [str(n) for n in range(1, TABLE_CHUNK + 1)]
    assert [line.split()[0] for line in rest.splitlines()] == [str(n) for n in range(TABLE_CHUNK + 1, TABLE_CHUNK + 11)]
