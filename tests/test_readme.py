"""The README's examples run: ```sh blocks in order in a copy of sample_streams, ```python blocks too."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    "A copy of sample_streams with evt on PATH, shared by the tour's blocks in order."
    folder = tmp_path_factory.mktemp("tour") / "sample_streams"
    shutil.copytree(ROOT / "sample_streams", folder, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVT_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["NO_COLOR"] = "1"
    yield folder, env
    delete_relayed_nats_streams(folder / "events.db")


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


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_examples(tour, index):
    folder, env = tour
    script = blocks("sh")[index]
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"README block {index} failed:\n{script}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def test_python_api_example(tmp_path):
    "The Python API section's example runs as written (the model's files are tested in test_readme_model)."
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    [example] = [body for lang, body in FENCE.findall(section) if lang == "python"]
    exec(compile(example, "README.md, Python API", "exec"), {})
    assert (tmp_path / "events.db").exists()


def test_the_main_job_command(tmp_path):
    "The README's first command, less creating the venv: it loads the samples and summarises them."
    [command] = [b for b in blocks("text") if "cd sample_streams" in b]
    job = command.split("cd sample_streams && ", 1)[1].replace("../.venv/bin/evt", "evt")
    folder = tmp_path / "sample_streams"
    shutil.copytree(ROOT / "sample_streams", folder, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVT_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    proc = subprocess.run(["bash", "-e", "-c", job], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    stats = json.loads(proc.stdout)
    assert stats["events"] == sum(1 for f in ("bank", "orders") for _ in open(folder / f"{f}.ndjson"))
