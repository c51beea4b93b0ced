"""Configuration precedence: option > environment > evt.toml > default."""

from __future__ import annotations

import os


def stores(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.db"))


def test_default_is_events_db_in_the_current_folder(evt, tmp_path):
    evt("append", "s-1", "t.x", "-q")
    assert stores(tmp_path) == ["events.db"]


def test_nearest_evt_toml_above_with_paths_relative_to_it(evt, tmp_path, monkeypatch):
    (tmp_path / "evt.toml").write_text('db = "data/log.db"\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")
    assert evt("append", "s-1", "t.x", "-q").exit_code == 0
    assert stores(tmp_path) == ["data/log.db"]


def test_environment_beats_toml_and_option_beats_environment(evt, tmp_path, monkeypatch):
    (tmp_path / "evt.toml").write_text('db = "toml.db"\n')
    monkeypatch.setenv("EVT_DB", "env.db")
    evt("append", "s-1", "t.x", "-q")
    evt("append", "s-1", "t.x", "-q", "--db", "option.db")
    assert stores(tmp_path) == ["env.db", "option.db"]
    monkeypatch.delenv("EVT_DB")
    evt("append", "s-1", "t.x", "-q")
    assert stores(tmp_path) == ["env.db", "option.db", "toml.db"]


def test_explicit_config_file(evt, tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "other.toml").write_text('db = "other.db"\n')
    evt("append", "s-1", "t.x", "-q", "--config", "conf/other.toml")
    assert stores(tmp_path) == ["conf/other.db"]
    missing = evt("read", "--config", "nope.toml")
    assert (missing.exit_code, missing.stderr) == (2, "evt: config file nope.toml not found\n")


def test_a_broken_evt_toml_is_exit_2_naming_file_and_line(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('db = "x.db"\nmodel = \n')
    result = evt("append", "s-1", "t.x")
    assert result.exit_code == 2
    assert result.stderr == f"evt: {tmp_path / 'evt.toml'}: Invalid value (at line 2, column 9)\n"
    assert stores(tmp_path) == []


def test_a_wrong_type_in_evt_toml(evt, tmp_path):
    (tmp_path / "evt.toml").write_text("db = 5\n")
    result = evt("read")
    assert (result.exit_code, result.stderr) == (2, f"evt: {tmp_path / 'evt.toml'}, line 1: db must be a str, not 5\n")
    (tmp_path / "evt.toml").write_text('# the store\n\ndb = "x.db"\nsynchronous = "off"\n')
    result = evt("append", "s-1", "t.x")
    assert (result.exit_code, result.stderr) == (2, f"evt: {tmp_path / 'evt.toml'}, line 4: synchronous must be 'full' or 'normal', not 'off'\n")


def test_weaker_durability_is_opt_in(evt, tmp_path, monkeypatch):
    monkeypatch.setenv("EVT_SYNCHRONOUS", "sometimes")
    result = evt("append", "s-1", "t.x")
    assert (result.exit_code, result.stderr) == (2, "evt: EVT_SYNCHRONOUS must be 'full' or 'normal', not 'sometimes'\n")
    monkeypatch.setenv("EVT_SYNCHRONOUS", "normal")
    assert evt("append", "s-1", "t.x", "-q").exit_code == 0
    assert os.path.exists(tmp_path / "events.db")


def test_an_empty_db_option_is_a_usage_error(evt, tmp_path):
    evt("append", "s-1", "t.x", "-q")
    for command in (["append", "s-1", "t.x"], ["read"]):
        result = evt(*command, "--db", "")
        assert (result.exit_code, result.stdout, result.stderr) == (2, "", "evt: --db needs a file path, not an empty string\n")
    assert evt("read").stdout.count("\n") == 1


def test_a_missing_model_named_in_evt_toml_says_where_it_was_named(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    result = evt("append", "s-1", "t.x")
    assert result.exit_code == 2
    assert result.stderr == (
        f"evt: model file {tmp_path / 'model.py'} not found (model = 'model.py' in {tmp_path / 'evt.toml'})\n"
    )
    assert not (tmp_path / "events.db").exists()


def test_an_unknown_setting_in_evt_toml_is_a_config_error(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('dbb = "x.db"\n')
    result = evt("append", "s-1", "t.x")
    assert result.exit_code == 2
    assert result.stderr == (
        f"evt: {tmp_path / 'evt.toml'}: unknown setting 'dbb' (settings: db, model, busy_timeout, synchronous, projections, keys)\n"
    )
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "events.db").exists()
