"""Shared fixtures: run ``evt`` in-process (fast) or as a real process (pipes, signals)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evt.__main__ import main


def pytest_sessionstart(session) -> None:
    """Compile evt's modules to bytecode once, before the tests start their hundreds of
    ``evt`` processes: an environment with PYTHONDONTWRITEBYTECODE set (as some CI and
    container images are) never writes the cache, so every process would compile evt
    from source again (about 35 ms each here). An installed evt has its bytecode already.
    Under pytest-xdist the controller does it, before any worker is given a test."""
    if hasattr(session.config, "workerinput"):  # an xdist worker
        return
    import compileall

    import evt

    compileall.compile_dir(os.path.dirname(evt.__file__), quiet=2)


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
        sigpipe = signal.getsignal(signal.SIGPIPE)
        try:
            code = main([str(a) for a in args])
        finally:
            # evt restores SIGPIPE's default (for `evt read | head -1`); left so in this
            # process, a test's own socket (a broker proxy) writing to a closed peer
            # would kill pytest itself.
            signal.signal(signal.SIGPIPE, sigpipe)
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


@contextlib.contextmanager
def mounted_read_only(source: Path, mounted: Path):
    "``source`` seen at ``mounted`` (an empty folder) on a read-only mount (root only, where mounts are allowed)."
    if subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot mount a folder here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        assert os.statvfs(mounted).f_flag & os.ST_RDONLY
        yield mounted
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


@pytest.fixture
def read_only_folder(tmp_path):
    "A folder holding a store, mounted read-only (root only, where mounts are allowed)."
    source, mounted = tmp_path / "source", tmp_path / "mounted"
    source.mkdir()
    mounted.mkdir()
    from evt import NewEvent, Store

    with Store(source / "events.db") as store:
        store.append(NewEvent("s-1", "t.x", {"n": 1}))
    with mounted_read_only(source, mounted):
        yield mounted


@pytest.fixture
def unprivileged():
    """A command prefix that runs a process bound by file permissions, as any user but
    root is: root without the capabilities that override them (root's own files are
    then read-only where their mode says so)."""
    if os.geteuid() != 0:
        return []
    import shutil

    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("cannot drop root's capabilities here")
    return prefix


# -- message brokers -------------------------------------------------------------------
# Tests of evt relay / evt ingest talk to real servers on loopback. Where one is not
# reachable they skip, unless EVT_REQUIRE_BROKERS=1 (set by .ci/run) makes that a failure.

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
_reachable: dict[str, str | None] = {}


def require_broker(name: str, probe) -> None:
    if name not in _reachable:
        try:
            probe()
            _reachable[name] = None
        except Exception as e:  # any failure to reach it is the reason to skip
            _reachable[name] = f"{name} is not reachable on 127.0.0.1 ({type(e).__name__}: {e})"
    reason = _reachable[name]
    if reason is None:
        return
    if os.environ.get("EVT_REQUIRE_BROKERS") == "1":
        pytest.fail(f"{reason}; EVT_REQUIRE_BROKERS=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def redis_broker():
    """A Redis client and a unique key prefix; every key under it is deleted afterwards."""
    import uuid

    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    require_broker("Redis", client.ping)
    prefix = f"evt-test-{uuid.uuid4().hex[:12]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


class AmqpNames:
    "Unique exchange and queue names for one test, remembered for cleaning up."

    def __init__(self, channel, prefix: str):
        self.channel = channel
        self.exchange = f"{prefix}-x"
        self.prefix = prefix
        self.queues: list[str] = []

    def queue(self, name: str = "q") -> str:
        full = f"{self.prefix}-{name}"
        self.queues.append(full)
        return full


@pytest.fixture
def amqp_broker():
    """A pika channel with unique names (``.exchange``, ``.queue(name)``), deleted afterwards."""
    import uuid

    import pika

    def probe():
        # heartbeat=0: this connection sits idle while the test runs (nothing answers the
        # broker's heartbeats), and RabbitMQ closes a connection that misses them for 60 s;
        # a long test then failed in this fixture's teardown with "connection reset".
        return pika.BlockingConnection(pika.URLParameters(AMQP_URL + "?connection_attempts=1&socket_timeout=2&heartbeat=0"))

    require_broker("RabbitMQ", lambda: probe().close())
    connection = probe()
    names = AmqpNames(connection.channel(), f"evt-test-{uuid.uuid4().hex[:12]}")
    yield names
    for queue in names.queues:
        names.channel.queue_delete(queue)
    names.channel.exchange_delete(names.exchange)
    connection.close()


NATS_URL = "nats://127.0.0.1:4222"


class NatsNames:
    """A unique JetStream stream and subject prefix for one test, deleted afterwards.

    ``call(fn)`` runs ``await fn(js)`` on a fresh nats-py connection (JetStream context)
    and returns its result: the tests look at the server with the official client.
    """

    def __init__(self, prefix: str, url: str = NATS_URL):
        self.stream = prefix
        self.subject = prefix
        self.url = url
        self.streams = [prefix]

    def other(self, name: str) -> str:
        full = f"{self.stream}-{name}"
        self.streams.append(full)
        return full

    def call(self, fn):
        import asyncio

        import nats

        async def run():
            nc = await nats.connect(self.url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=2)
            try:
                return await fn(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(run())

    def messages(self, stream: str | None = None) -> list:
        "Every message of the stream, in sequence order (RawStreamMsg: seq, subject, headers, data)."

        async def get_all(js):
            info = await js.stream_info(stream or self.stream)
            return [await js.get_msg(stream or self.stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)] if info.state.messages else []

        return self.call(get_all)

    def state(self, stream: str | None = None):
        async def info(js):
            return (await js.stream_info(stream or self.stream)).state

        return self.call(info)


@pytest.fixture
def nats_broker():
    """Unique JetStream names (``.stream``, ``.subject``; ``.call(fn)`` with nats-py), deleted afterwards."""
    import uuid

    names = NatsNames(f"evt-test-{uuid.uuid4().hex[:12]}")

    async def probe(js):
        await js.account_info()

    require_broker("NATS", lambda: names.call(probe))
    yield names

    async def delete(js):
        import nats.js.errors as jse

        for stream in names.streams:
            try:
                await js.delete_stream(stream)
            except jse.NotFoundError:
                pass

    names.call(delete)
