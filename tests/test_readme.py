"""The README's examples run: ```sh blocks in order in a copy of sample_streams, ```python blocks too."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def git_status() -> str | None:
    "The checkout's `git status --porcelain`, or None where this is not a git checkout."
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def listing(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def tour():
    """The tour's scratch folder, made by the README's own setup line run from the
    repository root, with evt on PATH; the blocks run there in order, and again."""
    [setup] = [b for b in blocks("text") if "mktemp -d" in b]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVT_") and k != "evt_repo"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["NO_COLOR"] = "1"
    before = (git_status(), listing(ROOT / "sample_streams"))
    proc = subprocess.run(["bash", "-e", "-c", setup + "\npwd"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    folder = pathlib.Path(proc.stdout.splitlines()[-1])
    assert folder != ROOT and (folder / "evt.toml").exists()
    for stale in [p for p in folder.iterdir() if ".db" in p.name]:  # a store the first command made: start as a clone would
        stale.unlink()
    state = {"folder": folder, "env": env, "before": before, "ran": set()}
    yield state
    delete_relayed_nats_streams(folder / "events.db")
    shutil.rmtree(folder, ignore_errors=True)


def delete_relayed_nats_streams(db: pathlib.Path) -> None:
    "The tour relays to fresh JetStream streams on the shared server: its relays' names say which."
    import sqlite3

    if not db.exists():
        return
    conn = sqlite3.connect(db)
    try:
        names = [row[0] for row in conn.execute("SELECT name FROM evt_checkpoints WHERE kind = 'relay' AND name LIKE 'nats://%#%'")]
    finally:
        conn.close()
    if not names:
        return
    import asyncio

    import nats
    import nats.js.errors

    async def delete():
        nc = await nats.connect("nats://127.0.0.1:4222", allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=2)
        try:
            js = nc.jetstream()
            for name in names:
                try:
                    await js.delete_stream(name.rsplit("#", 1)[1])
                except nats.js.errors.NotFoundError:
                    pass
        finally:
            await nc.close()

    asyncio.run(delete())


def run_block(tour, index: int) -> None:
    script = blocks("sh")[index]
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=tour["folder"], env=tour["env"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"README block {index} failed:\n{script}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    tour["ran"].add(index)


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_examples(tour, index):
    run_block(tour, index)


def test_the_tour_runs_twice_in_one_folder_and_leaves_the_checkout_as_it_was(tour):
    "Pasted again, the whole tour works as the first time; nothing in the checkout changes."
    for index in range(len(blocks("sh"))):  # the first run: the blocks test_shell_examples did not run
        if index not in tour["ran"]:
            run_block(tour, index)
    for index in range(len(blocks("sh"))):  # the second run, in the same folder
        run_block(tour, index)
    assert (git_status(), listing(ROOT / "sample_streams")) == tour["before"]


def test_python_api_example(tmp_path):
    "The Python API section's example runs as written (the model's files are tested in test_readme_model)."
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    [example] = [body for lang, body in FENCE.findall(section) if lang == "python"]
    exec(compile(example, "README.md, Python API", "exec"), {})
    assert (tmp_path / "events.db").exists()


def test_the_main_job_command(tmp_path):
    """The README's first command as written, less creating the venv (its evt is linked in):
    it loads the samples and summarises them, leaves the shell where it was, and may run again."""
    [command] = [b for b in blocks("text") if "cd sample_streams" in b]
    setup, job = command.strip().split(" && ", 2)[:2], command.strip().split(" && ", 2)[2]
    assert setup == ["python3 -m venv .venv", ".venv/bin/pip install -q -e ."]
    shutil.copytree(ROOT / "sample_streams", tmp_path / "sample_streams", ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "evt").symlink_to(os.path.join(os.path.dirname(sys.executable), "evt"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVT_")}
    totals = []
    for _ in range(2):  # pasted twice into one shell
        proc = subprocess.run(["bash", "-e", "-c", job + "\npwd"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        *stats, where = proc.stdout.splitlines()
        assert where == str(tmp_path)  # the cd stays inside the parentheses
        totals.append(json.loads("\n".join(stats))["events"])
    assert totals == [sum(1 for f in ("bank", "orders") for _ in open(ROOT / "sample_streams" / f"{f}.ndjson"))] * 2
    assert (tmp_path / "sample_streams" / "events.db").exists()
