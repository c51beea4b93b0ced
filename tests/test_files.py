"""Files evt makes: paths that stay paths, files synced before they get their names, and
the permission bits of the store they came from."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from evt.log import files
from evt.log.sqlite import uri

MODEL = (
    "from evt import Model\nmodel = Model()\n"
    "@model.upcaster('a.made', 1)\ndef a1(data):\n    return {**data, 'v': 2}\n"
)
PROJECTION_TOML = """db = "{db}"
model = "model.py"

[projections.made]
target = "{target}"
setup = "CREATE TABLE IF NOT EXISTS made (id TEXT)"
[projections.made.on]
"a.made" = "INSERT INTO made VALUES (:id)"
"""


def count(path: str) -> int:
    "The events in the file of that name (opened through a quoted URI, read-only)."
    conn = sqlite3.connect(uri(path, mode="ro"), uri=True)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def names() -> list[str]:
    return sorted(os.listdir("."))


# -- paths are paths, never SQLite URIs ---------------------------------------------------


@pytest.mark.parametrize("name", ["file:events.db", "x.db?mode=ro", "file:x.db?mode=memory", "odd #%20 name.db"])
def test_db_names_the_file_of_that_name_never_a_sqlite_uri(evt, name):
    assert evt("append", "s-1", "a.made", '{"n": 1}', "--db", name, "-q").exit_code == 0
    assert evt("append", "s-1", "a.made", '{"n": 2}', "--db", name, "-q").exit_code == 0
    assert [n for n in names() if not n.endswith(("-wal", "-shm", "-lock"))] == [name]
    r = evt("read", "--db", name)
    assert (r.exit_code, [e["data"]["n"] for e in r.json()]) == (0, [1, 2])
    assert count(name) == 2


def test_evt_db_and_the_toml_setting_are_paths_too(evt, tmp_path, monkeypatch):
    monkeypatch.setenv("EVT_DB", "file:env.db")
    assert evt("append", "s-1", "a.made", "-q").exit_code == 0
    monkeypatch.delenv("EVT_DB")
    (tmp_path / "evt.toml").write_text('db = "file:toml.db?mode=ro"\n')
    assert evt("append", "s-1", "a.made", "-q").exit_code == 0
    assert count("file:env.db") == count("file:toml.db?mode=ro") == 1
    assert "events.db" not in names() and "env.db" not in names()


def test_upcast_copies_backups_and_projection_targets_of_odd_names_are_those_files(evt, tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "evt.toml").write_text(PROJECTION_TOML.format(db="file:ev.db?x=1", target="file:read.db"))
    evt("append", "s-1", "a.made", "-q")
    assert evt("upcast", "run", "--out", "file:new.db").exit_code == 0
    assert count("file:new.db") == 1
    r = evt("upcast", "run", "--in-place")
    assert r.exit_code == 0
    assert os.path.basename(r.json()[0]["backup"]).startswith("file:ev.db?x=1.bak-")
    assert count(r.json()[0]["backup"]) == 1
    assert evt("replay").exit_code == 0
    status = evt("projections")
    assert [(p["name"], p["checkpoint"]) for p in status.json()] == [("made", 1)]
    assert "file:read.db" in names() and "read.db" not in names()


# -- synced before published --------------------------------------------------------------


@pytest.fixture
def disk_calls(monkeypatch):
    "Every fsync (by the path of its file) and link, in order."
    calls: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        calls.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def link(src, dst, **kwargs):
        calls.append(("link", f"{os.path.basename(src)} -> {os.path.basename(dst)}"))
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    return calls


def test_upcast_out_syncs_the_new_file_before_naming_it_and_the_folder_after(evt, tmp_path, disk_calls):
    (tmp_path / "model.py").write_text(MODEL)
    evt("append", "--ndjson", "-", "--model", "model.py", "-q", input="".join(
        f'{{"stream": "s-{n}", "type": "a.made", "data": {{"n": {n}}}}}\n' for n in range(2000)
    ))
    disk_calls.clear()
    r = evt("upcast", "run", "--out", "new.db", "--model", "model.py")
    assert (r.exit_code, r.json()[0]["verified"]) == (0, True)
    tmp = f"new.db.tmp-{os.getpid()}"
    assert disk_calls == [("fsync", tmp), ("link", f"{tmp} -> new.db"), ("fsync", tmp_path.name)]
    conn = sqlite3.connect("new.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("SELECT count(*), min(version) FROM events").fetchone() == (2000, 2)
    conn.close()
    assert [n for n in names() if not n.endswith("-lock")] == ["events.db", "model.py", "new.db"]


def test_a_new_store_is_synced_before_it_gets_its_name_and_the_folder_after(evt, tmp_path, disk_calls):
    assert evt("append", "s-1", "a.made", "-q").exit_code == 0
    staging = f"events.db.creating-{os.getpid()}"
    published = disk_calls.index(("link", f"{staging} -> events.db"))
    assert ("fsync", staging) in disk_calls[:published]
    assert disk_calls[published + 1] == ("fsync", tmp_path.name)


def test_an_in_place_backup_is_synced_before_it_gets_its_name_and_the_folder_after(evt, tmp_path, disk_calls):
    (tmp_path / "model.py").write_text(MODEL)
    evt("append", "s-1", "a.made", "-q")
    disk_calls.clear()
    r = evt("upcast", "run", "--in-place", "--model", "model.py")
    backup = os.path.basename(r.json()[0]["backup"])
    tmp = f"{backup}.tmp-{os.getpid()}"
    published = disk_calls.index(("link", f"{tmp} -> {backup}"))
    assert ("fsync", tmp) in disk_calls[:published]
    assert disk_calls[published + 1] == ("fsync", tmp_path.name)
    assert [n for n in names() if ".bak-" in n] == [backup]


def test_publish_never_replaces_a_file(tmp_path):
    (tmp_path / "built").write_text("new")
    (tmp_path / "final").write_text("old")
    with pytest.raises(FileExistsError):
        files.publish(str(tmp_path / "built"), str(tmp_path / "final"))
    assert (tmp_path / "final").read_text() == "old"


# -- the store's permission bits ------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_files_made_from_a_store_take_its_permission_bits(evt, tmp_path, mode):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "evt.toml").write_text(PROJECTION_TOML.format(db="events.db", target="read.db"))
    evt("append", "s-1", "a.made", "-q")
    os.chmod("events.db", mode)
    old_umask = os.umask(0o022)
    try:
        assert evt("replay").exit_code == 0
        assert evt("upcast", "run", "--out", "new.db").exit_code == 0
        backup = evt("upcast", "run", "--in-place").json()[0]["backup"]
    finally:
        os.umask(old_umask)
    for made in ("read.db", "new.db", backup):
        assert stat.S_IMODE(os.stat(made).st_mode) == mode, made


def test_create_like_gives_the_exact_bits_whatever_the_umask(tmp_path):
    source = tmp_path / "store"
    source.write_text("")
    os.chmod(source, 0o664)
    old_umask = os.umask(0o077)
    try:
        files.create_like(str(tmp_path / "copy"), str(source))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "copy").st_mode) == 0o664
    with pytest.raises(FileExistsError):
        files.create_like(str(tmp_path / "copy"), str(source))
