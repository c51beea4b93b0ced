"""evt schema: list the model's event schemas; print one type's JSON Schema."""

from __future__ import annotations

import json

import pytest
from model_helpers import write_model

V2 = '''
@model.schema("account.credited", version=2)
class CreditedV2(BaseModel):
    amount: float = Field(gt=0)
    currency: str = "EUR"
'''


@pytest.fixture
def model_file(evt):
    write_model(extra=V2)
    return "model.py"


def test_list_schemas(evt, model_file):
    result = evt("schema", "--model", model_file)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        '{"type":"account.credited","version":1,"schema":"Credited","fields":["amount"]}',
        '{"type":"account.credited","version":2,"schema":"CreditedV2","fields":["amount","currency"]}',
        '{"type":"account.debited","version":1,"schema":"Debited","fields":["amount","reason"]}',
        '{"type":"account.opened","version":1,"schema":"Opened","fields":["owner"]}',
    ]


def test_list_schemas_as_a_table(evt, model_file):
    lines = [line.rstrip() for line in evt("schema", "--model", model_file, "--format", "table").lines]
    assert lines == [
        "type              version  schema      fields",
        'account.credited        1  Credited    ["amount"]',
        'account.credited        2  CreditedV2  ["amount","currency"]',
        'account.debited         1  Debited     ["amount","reason"]',
        'account.opened          1  Opened      ["owner"]',
    ]


def test_json_schema_of_the_latest_version(evt, model_file):
    result = evt("schema", "account.credited", "--model", model_file)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "evt:account.credited/v2",
        "properties": {
            "amount": {"exclusiveMinimum": 0, "title": "Amount", "type": "number"},
            "currency": {"default": "EUR", "title": "Currency", "type": "string"},
        },
        "required": ["amount"],
        "title": "CreditedV2",
        "type": "object",
    }
    assert result.stdout.count("\n") == 1


def test_json_schema_of_a_version_indented(evt, model_file):
    result = evt("schema", "account.credited", "--version", "1", "--model", model_file, "--format", "json")
    assert result.stdout == (
        "{\n"
        '  "$schema": "https://json-schema.org/draft/2020-12/schema",\n'
        '  "$id": "evt:account.credited/v1",\n'
        '  "properties": {\n'
        '    "amount": {\n'
        '      "exclusiveMinimum": 0,\n'
        '      "title": "Amount",\n'
        '      "type": "number"\n'
        "    }\n"
        "  },\n"
        '  "required": [\n'
        '    "amount"\n'
        "  ],\n"
        '  "title": "Credited",\n'
        '  "type": "object"\n'
        "}\n"
    )


def test_unknown_type_is_exit_4(evt, model_file):
    result = evt("schema", "account.closed", "--model", model_file)
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == (
        "evt: no schema registered for type 'account.closed' "
        "(registered: account.credited, account.debited, account.opened)\n"
    )


def test_unknown_version_is_exit_4(evt, model_file):
    result = evt("schema", "account.credited", "--version", "3", "--model", model_file)
    assert (result.exit_code, result.stderr) == (4, "evt: account.credited has no schema version 3 (registered: 1, 2)\n")


def test_version_without_a_type(evt, model_file):
    result = evt("schema", "--version", "1", "--model", model_file)
    assert (result.exit_code, result.stderr) == (2, "evt: --version needs a TYPE (evt schema TYPE --version N)\n")


def test_schema_without_a_model(evt):
    result = evt("schema")
    assert result.exit_code == 2
    assert result.stderr == (
        'evt: no model configured: pass --model FILE.py (or a dotted module), set EVT_MODEL, or add model = "model.py" to evt.toml\n'
    )


def test_schema_needs_no_store(evt, model_file):
    assert evt("schema", "--model", model_file).exit_code == 0
    assert evt("schema", "account.opened", "--model", model_file).exit_code == 0
