"""Shared fixtures: run ``evt`` in-process (fast) or as a real process (pipes, signals)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from evt.__main__ import main


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def json(self):
        import json

        return [json.loads(line) for line in self.stdout.splitlines()]

    def __repr__(self) -> str:
        return f"Result(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    "Every test runs in its own empty folder, with no evt settings from outside."
    for name in list(os.environ):
        if name.startswith("EVT_") and name != "EVT_REQUIRE_BROKERS":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def evt(capsys, monkeypatch):
    """Run evt in this process: ``evt("read", "--limit", "1", input="...")``."""

    def run(*args: str, input: str | bytes | None = None) -> Result:
        data = input.encode() if isinstance(input, str) else (input or b"")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def evt_command() -> list[str]:
    return [sys.executable, "-m", "evt"]


@pytest.fixture
def evt_proc(tmp_path):
    """Run evt as a real process in the test's folder."""

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 60) -> Result:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            evt_command() + [str(a) for a in args],
            input=input.encode() if isinstance(input, str) else input,
            capture_output=True,
            cwd=tmp_path,
            env=full_env,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run
