"""The user's model: where evt finds it, what a broken one says, and validation on append."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_helpers import ACCOUNT_7, ndjson, write_model

CREDIT_ERROR = "evt: account.credited v1 is invalid: amount: Input should be greater than 0\n"


def stored_count(evt) -> int:
    result = evt("read", "--format", "ndjson")
    return 0 if result.exit_code == 6 else len(result.json())


# -- validation on append -----------------------------------------------------------


def test_append_validates_data_against_the_schema(evt):
    write_model()
    result = evt("append", "account-1", "account.credited", '{"amount": -5}', "--model", "model.py")
    assert (result.exit_code, result.stdout, result.stderr) == (5, "", CREDIT_ERROR)
    assert not os.path.exists("events.db")  # nothing written, not even an empty store


def test_each_bad_field_is_named(evt):
    write_model()
    result = evt("append", "account-1", "account.debited", '{"amount": "lots"}', "--model", "model.py")
    assert result.exit_code == 5
    assert result.stderr == (
        "evt: account.debited v1 is invalid: amount: Input should be a valid number, unable to parse string as a number; "
        "reason: Field required\n"
    )


def test_valid_data_and_types_without_a_schema_are_stored(evt):
    write_model()
    assert evt("append", "account-1", "account.credited", '{"amount": 5}', "--model", "model.py", "-q").exit_code == 0
    assert evt("append", "account-1", "account.frozen", '{"anything": [1]}', "--model", "model.py", "-q").exit_code == 0
    assert [e["type"] for e in evt("read").json()] == ["account.credited", "account.frozen"]


def test_a_schema_is_per_version(evt):
    write_model(extra="""
        from pydantic import BaseModel as _Base

        @model.schema("account.credited", version=3)
        class CreditedV3(_Base):
            amount: int
    """)
    result = evt("append", "account-1", "account.credited", '{"amount": -5}', "--schema-version", "2", "--model", "model.py")
    assert result.exit_code == 0  # no schema for v2 (below the highest, v3): it passes as it is


def test_a_version_above_the_highest_the_model_knows_is_refused(evt):
    write_model()
    result = evt("append", "account-1", "account.credited", '{"amount": 5}', "--schema-version", "2", "--model", "model.py")
    assert (result.exit_code, result.stdout) == (5, "")
    assert result.stderr == (
        "evt: account.credited v2 is unknown: the model knows account.credited up to v1 "
        "(register a schema or upcaster for it, or append with --no-validate)\n"
    )
    trusted = evt("append", "account-1", "account.credited", '{"amount": 5}', "--schema-version", "2", "--model", "model.py", "--no-validate", "-q")
    assert trusted.exit_code == 0
    assert evt("append", "account-1", "account.frozen", "--schema-version", "7", "--model", "model.py", "-q").exit_code == 0  # a type it does not know


def test_ndjson_batch_names_the_line_and_writes_nothing(evt):
    write_model()
    evt("append", "account-7", "account.opened", '{"owner": "Ann"}', "--model", "model.py", "-q")
    lines = ACCOUNT_7[1:3] + [dict(ACCOUNT_7[3], data={"amount": 0})]
    result = evt("append", "--ndjson", "-", "--model", "model.py", input=ndjson(lines))
    assert (result.exit_code, result.stdout) == (5, "")
    assert result.stderr == (
        "evt: line 3: account.debited v1 is invalid: amount: Input should be greater than 0; reason: Field required\n"
    )
    assert stored_count(evt) == 1


def test_no_validate_stores_what_the_schema_refuses(evt):
    write_model()
    result = evt("append", "account-1", "account.credited", '{"amount": -5}', "--model", "model.py", "--no-validate", "-q")
    assert result.exit_code == 0
    lines = ndjson([dict(ACCOUNT_7[1], data={"amount": -1})])
    assert evt("append", "--ndjson", "-", "--no-validate", "--model", "model.py", "-q", input=lines).exit_code == 0
    assert [e["data"]["amount"] for e in evt("read").json()] == [-5, -1]


def test_without_a_model_nothing_is_validated(evt):
    assert evt("append", "account-1", "account.credited", '{"amount": -5}', "-q").exit_code == 0


# -- where the model comes from ----------------------------------------------------------


def test_model_from_evt_toml_is_relative_to_the_toml(evt, tmp_path, monkeypatch):
    write_model(tmp_path / "project" / "domain")
    (tmp_path / "project" / "evt.toml").write_text('db = "events.db"\nmodel = "domain/model.py"\n')
    (tmp_path / "project" / "scripts").mkdir()
    monkeypatch.chdir(tmp_path / "project" / "scripts")
    result = evt("append", "account-1", "account.credited", '{"amount": 0}')
    assert (result.exit_code, result.stderr) == (5, CREDIT_ERROR)


def test_model_from_evt_model_in_another_folder_imports_its_neighbours(evt, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    write_model(other, extra="from rules import LIMIT\n")
    (other / "rules.py").write_text("LIMIT = 5\n")
    monkeypatch.setenv("EVT_MODEL", str(other / "model.py"))
    result = evt("append", "account-1", "account.credited", '{"amount": 0}')
    assert (result.exit_code, result.stderr) == (5, CREDIT_ERROR)
    assert evt("schema", "--format", "ndjson").json()[0]["type"] == "account.credited"


def test_option_beats_environment_beats_toml(evt, tmp_path, monkeypatch):
    write_model(tmp_path / "a")
    Path("evt.toml").write_text('model = "missing_in_toml.py"\n')
    monkeypatch.setenv("EVT_MODEL", "missing_in_env.py")
    assert evt("schema").stderr == "evt: model file missing_in_env.py not found\n"
    assert evt("schema", "--model", "a/model.py").exit_code == 0
    monkeypatch.delenv("EVT_MODEL")
    assert evt("schema").stderr.startswith("evt: model file ")


def test_model_as_a_dotted_module_in_the_current_folder(evt, tmp_path):
    write_model(tmp_path / "bankdomain", name="events_v1.py")
    (tmp_path / "bankdomain" / "__init__.py").write_text("")
    result = evt("append", "account-1", "account.credited", '{"amount": 0}', "--model", "bankdomain.events_v1")
    assert (result.exit_code, result.stderr) == (5, CREDIT_ERROR)


def test_dotted_module_named_in_evt_toml_is_found_from_a_subfolder(evt, tmp_path, monkeypatch):
    write_model(tmp_path, name="tomlbankmodel.py")
    Path("evt.toml").write_text('model = "tomlbankmodel"\n')
    Path("sub").mkdir()
    monkeypatch.chdir("sub")
    assert [s["type"] for s in evt("schema").json()] == ["account.credited", "account.debited", "account.opened"]


def test_dotted_module_that_does_not_exist(evt):
    result = evt("schema", "--model", "no_such_model_module")
    assert result.exit_code == 2
    assert result.stderr == (
        "evt: model module 'no_such_model_module' not found (give a .py path, or a module in the current folder, "
        "evt.toml's folder or on PYTHONPATH)\n"
    )


def test_dotted_module_missing_from_an_existing_package(evt, tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "broken.py").write_text("import shop.gone\nfrom evt import Model\nmodel = Model()\n")
    result = evt("schema", "--model", "shop.models")
    assert (result.exit_code, result.stderr) == (
        2,
        "evt: model module 'shop.models' not found (give a .py path, or a module in the current folder, "
        "evt.toml's folder or on PYTHONPATH)\n",
    )
    result = evt("schema", "--model", "shop.broken")  # the model exists; what it imports does not
    assert (result.exit_code, result.stderr) == (
        2,
        f"evt: model shop.broken: {tmp_path / 'shop' / 'broken.py'}, line 1: ModuleNotFoundError: No module named 'shop.gone'\n",
    )


def test_model_that_fails_to_import_names_file_and_line(evt, tmp_path):
    Path("model.py").write_text("from evt import Model\nmodel = Model()\n\nbalance = 1 / 0\n")
    result = evt("append", "account-1", "account.credited", '{"amount": 1}', "--model", "model.py")
    assert result.exit_code == 2
    assert result.stderr == "evt: model model.py, line 4: ZeroDivisionError: division by zero\n"
    assert not os.path.exists("events.db")


def test_model_with_a_syntax_error(evt, tmp_path):
    Path("model.py").write_text("from evt import Model\nmodel = Model(\n")
    result = evt("schema", "--model", "model.py")
    assert result.exit_code == 2
    assert result.stderr == "evt: model model.py, line 2: SyntaxError: '(' was never closed\n"


def test_model_with_a_broken_aggregate_names_the_line(evt, tmp_path):
    Path("model.py").write_text(
        "from dataclasses import dataclass\nfrom evt import Model\nmodel = Model()\n\n"
        "@model.aggregate('a')\n@dataclass\nclass A:\n    n: int = 0\n"
    )
    result = evt("schema", "--model", "model.py")
    assert result.exit_code == 2
    assert result.stderr == "evt: model model.py, line 5: aggregate 'a': A has no @on(...) handlers\n"


def test_model_without_a_model_instance(evt):
    Path("model.py").write_text("x = 1\n")
    result = evt("schema", "--model", "model.py")
    assert (result.exit_code, result.stderr) == (2, "evt: model model.py defines no evt.Model (add: model = evt.Model())\n")


def test_model_that_fails_to_import_in_a_real_process(evt_proc, tmp_path):
    Path("model.py").write_text("import evt\nmodel = evt.Model()\nraise RuntimeError('not today')\n")
    result = evt_proc("aggregate", "account", "account-1", "--model", "model.py")
    assert result.exit_code == 2
    assert result.stderr == "evt: model model.py, line 3: RuntimeError: not today\n"


def test_model_with_two_model_instances_names_file_and_lines(evt, tmp_path):
    Path("model.py").write_text("from evt import Model\n\nshop = Model()\nbank = Model()\n")
    result = evt("schema", "--model", "model.py")
    assert result.exit_code == 2
    assert result.stderr == (
        "evt: model model.py, line 4: 2 evt.Model instances, shop (line 3) and bank (line 4); "
        "name the one to use 'model'\n"
    )


def test_one_model_instance_under_two_names_is_one_model(evt):
    Path("model.py").write_text("from evt import Model\n\nshop = Model()\nalias = shop\n")
    assert evt("schema", "--model", "model.py").exit_code == 0


def test_an_error_raised_inside_a_library_names_the_models_line_in_one_line(evt, tmp_path):
    "pydantic (or json, …) raising while the model imports: the line to fix is the model's."
    Path("model.py").write_text(
        "import json\nfrom pydantic import BaseModel\nfrom evt import Model\nmodel = Model()\n\n"
        "@model.schema('a.b')\nclass S(BaseModel):\n    model_config = {'extra': 'nope'}\n"
    )
    result = evt("schema", "--model", "model.py")
    assert result.exit_code == 2
    assert result.stderr.startswith("evt: model model.py, line 7: SchemaError: ")
    assert result.stderr.count("\n") == 1 and "Invalid extra_behavior" in result.stderr
    Path("model.py").write_text("import json\nfrom evt import Model\nmodel = Model()\nsettings = json.loads('{bad')\n")
    result = evt("schema", "--model", "model.py")
    assert result.stderr == (
        "evt: model model.py, line 4: JSONDecodeError: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n"
    )


def test_a_model_that_calls_sys_exit_is_a_model_error(evt, tmp_path):
    Path("model.py").write_text("import sys\nfrom evt import Model\nmodel = Model()\nsys.exit('settings missing')\n")
    result = evt("schema", "--model", "model.py")
    assert (result.exit_code, result.stderr) == (2, "evt: model model.py, line 4: SystemExit: settings missing\n")


def test_two_schemas_for_one_type_and_version_name_the_line(evt, tmp_path):
    "A copied schema whose version= was not bumped would silently replace the first."
    Path("model.py").write_text(
        "from pydantic import BaseModel\nfrom evt import Model\nmodel = Model()\n\n"
        "@model.schema('order.placed')\nclass PlacedV1(BaseModel):\n    items: list[str]\n\n"
        "@model.schema('order.placed')\nclass PlacedV2(BaseModel):\n    items: list[dict]\n"
    )
    result = evt("schema", "--model", "model.py")
    assert (result.exit_code, result.stderr) == (
        2,
        "evt: model model.py, line 9: two schemas for order.placed v1 (PlacedV1 and PlacedV2); "
        "give the newer one version=2\n",
    )


def test_two_handlers_for_one_event_type_name_the_line(evt, tmp_path):
    "The second handler would never run: say so instead of ignoring it."
    Path("model.py").write_text(
        "from pydantic import BaseModel\nfrom evt import Model, on\nmodel = Model()\n\n"
        "@model.aggregate('account')\nclass Account(BaseModel):\n    balance: float = 0\n\n"
        "    @on('account.credited')\n    def credited(self, event):\n        self.balance += 1\n\n"
        "    @on('account.credited')\n    def credited_again(self, event):\n        self.balance += 2\n"
    )
    result = evt("schema", "--model", "model.py")
    assert (result.exit_code, result.stderr) == (
        2,
        "evt: model model.py, line 5: aggregate 'account': two handlers for account.credited: "
        "Account.credited and Account.credited_again (to replace a base class's handler, override its method)\n",
    )


@pytest.mark.parametrize(
    "declaration, message",
    [
        (
            "@model.schema('q.made')\n@dataclass\nclass Q:\n    a: int\n",
            "line 5: schema q.made v1: Q is not a pydantic model (class Q(pydantic.BaseModel))",
        ),
        (
            "@model.upcaster('q.made', version='1')\ndef q1(data):\n    return data\n",
            "line 5: @model.upcaster('q.made'): version must be a whole number >= 1, not '1'",
        ),
        (
            "@model.schema('q.made', version=0)\nclass Q(BaseModel):\n    a: int\n",
            "line 5: @model.schema('q.made'): version must be a whole number >= 1, not 0",
        ),
    ],
)
def test_a_schema_or_upcaster_evt_could_never_use_is_a_model_error(evt, tmp_path, declaration, message):
    "Not an internal error at the first append, nor an upcaster that silently never runs."
    Path("model.py").write_text(
        "from dataclasses import dataclass\nfrom pydantic import BaseModel\nfrom evt import Model\nmodel = Model()\n" + declaration
    )
    result = evt("append", "q-1", "q.made", '{"a": 1}', "--model", "model.py")
    assert (result.exit_code, result.stderr) == (2, f"evt: model model.py, {message}\n")
