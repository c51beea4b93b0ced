"""The README's section on the model works as written: its model, its test, its commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## The user's model: schemas and aggregates"
SAMPLES = ROOT / "sample_streams"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def files() -> dict[str, str]:
    "The ```python blocks marked <!-- file: NAME -->."
    return dict(re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```", section(), re.S))


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section(), re.S)


def env_with_evt() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def test_the_readme_model_and_its_test_pass(tmp_path):
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    assert sorted(files()) == ["model.py", "test_model.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_model.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env_with_evt(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_readme_model_works_from_the_command_line(tmp_path, evt):
    (tmp_path / "model.py").write_text(files()["model.py"])
    Path("evt.toml").write_text('model = "model.py"\n')
    assert evt("append", "account-1", "account.opened", '{"owner": "Ann"}', "-q").exit_code == 0
    assert evt("append", "account-1", "account.debited", '{"amount": 5}', "-q").exit_code == 0
    assert evt("append", "account-1", "account.debited", '{"amount": 0}').exit_code == 5
    assert evt("aggregate", "account", "account-1").stdout == '{"owner":"Ann","balance":-5.0,"overdrawn":true}\n'
    assert evt("aggregate", "activity", "account-1").stdout == '{"events":2,"last":"account.debited"}\n'


@pytest.mark.skipif(
    not (SAMPLES / "bank.ndjson").exists(), reason="the sample streams are generated on the samples branch"
)
def test_the_readme_commands_run_on_the_samples(tmp_path):
    scratch = tmp_path / "samples"
    shutil.copytree(SAMPLES, scratch, ignore=shutil.ignore_patterns("events.db*"))
    env = env_with_evt()
    load = "evt append --ndjson bank.ndjson -q && evt append --ndjson orders.ndjson -q"
    subprocess.run(load, shell=True, cwd=scratch, env=env, check=True)
    for block in shell_blocks():
        result = subprocess.run(["bash", "-e", "-c", block], cwd=scratch, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
