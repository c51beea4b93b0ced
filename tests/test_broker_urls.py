"""Broker URLs: secrets never shown or stored, malformed URLs are usage errors, a refused
login is not retried (evt relay / evt ingest, Redis and RabbitMQ)."""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
import time
from urllib.parse import quote

import pytest
from relay_data import dead_letters, positions, query
from test_relay_redis import closed_port, ingested, load, summary

from evt.relay.urls import redact

# -- redact ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/0?password=pw", "redis://127.0.0.1:6379/0?password=***"),
        ("redis://127.0.0.1/0?db=1&password=p%26w&socket_timeout=5", "redis://127.0.0.1/0?db=1&password=***&socket_timeout=5"),
        ("rediss://u:pw@h:6380/0?ssl_password=kp&username=u", "rediss://u:***@h:6380/0?ssl_password=***&username=u"),
        ("redis://h?Password=a&PASSWORD=b&passwd=c&token=d&client_secret=e", "redis://h?Password=***&PASSWORD=***&passwd=***&token=***&client_secret=***"),
        ("redis://h?password=", "redis://h?password="),  # nothing to hide
        ("redis://h?password=ab&cd&db=1", "redis://h?password=***&***&db=1"),  # an unencoded '&' in the password
        ("amqp://guest:guest@h:5672/%2F?heartbeat=30", "amqp://guest:***@h:5672/%2F?heartbeat=30"),
        ("amqps://h/?ssl_options=%7B%27certfile%27%3A+%27c%27%2C+%27password%27%3A+%27kp%27%7D", "amqps://h/?ssl_options=***"),
        ("amqps://h/?ssl_options={'ca_certs':'/ca.pem'}", "amqps://h/?ssl_options={'ca_certs':'/ca.pem'}"),
        # malformed: whatever follows a ':' in the user-info, up to the last '@', goes
        ("redis://:s3cr#etPW@localhost:6379", "redis://:***@localhost:6379"),
        ("amqp://guest:gu#est@localhost", "amqp://guest:***@localhost"),
        ("redis://:12/ab@host", "redis://:***@host"),
        ("redis://h?password=ab#cd", "redis://h?password=***#***"),
        ("redis://u:p@[::1", "redis://u:***@[::1"),
        ("redis://[::1:1?password=ab@cd", "redis://***"),  # an '@' past a '?': password or query, no telling
        ("redis://h/0?client_name=a@b", "redis://***"),
    ],
)
def test_redact_hides_user_info_and_credential_parameters(url, shown):
    assert redact(url) == shown


def old_redact(url: str) -> str:
    "What evt 0.1 named a relay after: the user-info password hidden, the query string as it was."
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def url_parts(secrets: bool = True):
    "Well-formed broker URLs; with ``secrets=False``, none holding a password or credential parameter."
    from hypothesis import strategies as st

    word = st.text("abcXYZ019-_.~%+", min_size=1, max_size=8)
    value = st.text("abcXYZ019-_.~%+{}':,/=", max_size=12)
    names = ["db", "socket_timeout", "heartbeat", "ssl_options", "client_name", "x"]
    users = ["", "u@"]
    if secrets:
        names += ["password", "ssl_password", "token", "Client_Secret"]
        users += ["u:pw@", ":pw@", "Us%40r:p%23w@"]
        value |= st.just("{'password': 'kp'}")
    params = st.lists(st.tuples(st.sampled_from(names) | word, value), max_size=4).map(lambda ps: "&".join(f"{k}={v}" for k, v in ps))
    host = st.sampled_from(["127.0.0.1", "localhost", "Redis.Example", "[::1]"])
    port = st.sampled_from(["", ":6379", ":5672", ":1"])
    path = st.sampled_from(["", "/", "/0", "/%2F", "/vhost"])
    scheme = st.sampled_from(["redis", "rediss", "amqp", "amqps"])
    urls = st.builds(
        lambda s, u, h, p, pa, q: f"{s}://{u}{h}{p}{pa}" + (f"?{q}" if q else ""), scheme, st.sampled_from(users), host, port, path, params
    )
    if secrets:
        return urls
    return urls.filter(lambda url: not any(w in url.lower() for w in ("pass", "pwd", "secret", "token", "credential")))


def test_a_url_without_secrets_is_its_own_name():
    "Relays are named after their URL: one with no secret keeps its name, so saved positions keep working."
    from hypothesis import given, settings

    @settings(max_examples=200, deadline=None)
    @given(url_parts(secrets=False))
    def check(url):
        assert redact(url) == url

    check()


def test_a_name_stored_before_migrates_to_the_name_evt_computes_now():
    "Migration 0005 turns every name evt 0.1 stored into the one a relay computes now, character for character."
    from hypothesis import given, settings

    from evt.log.migrations import _redacted_name

    @settings(max_examples=300, deadline=None)
    @given(url_parts())
    def check(url):
        for suffix in ("#events", "#events:*", "#queue", "#key/group"):
            assert _redacted_name(old_redact(url) + suffix) == redact(url) + suffix
            assert _redacted_name(redact(url) + suffix) == redact(url) + suffix  # and once is enough

    check()


# -- the store migration ---------------------------------------------------------------------


def store_at_format_4(path: str) -> sqlite3.Connection:
    """An evt store as evt 0.1 left it (format 4), open with plain sqlite3: built by its four
    migrations (released, so never edited), without what later ones added."""
    from evt.log import migrations

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for name, migrate in migrations.MIGRATIONS[:4]:
        migrate(conn)
        conn.execute("INSERT INTO evt_migrations (name, applied_at) VALUES (?, '2026-01-01T00:00:00.000000Z')", (name,))
    conn.execute(f"PRAGMA application_id = {migrations.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 4")
    return conn


def test_the_store_migration_takes_secrets_out_of_relay_and_ingest_names(evt):
    conn = store_at_format_4("events.db")
    conn.executemany(
        "INSERT INTO evt_checkpoints (name, kind, position, last_run_at) VALUES (?, 'relay', ?, ?)",
        [
            ("redis://127.0.0.1:6379/0?password=Sekrit1#events", 5, "2026-11-01T00:00:00.000000Z"),
            ("redis://127.0.0.1:6379/0?password=Sekrit2#events", 3, "2026-11-02T00:00:00.000000Z"),  # the same relay, another password
            ("redis://127.0.0.1:6379/0#events", 9, None),
            ("amqps://guest:***@h:5671/%2F?ssl_options=%7B%27password%27%3A+%27Sekrit3%27%7D#events", 7, None),
            ("my-relay", 2, None),
        ],
    )
    conn.execute(
        "INSERT INTO evt_dead_letters (id, consumer, position, payload, error, attempts, first_failed_at, last_failed_at) "
        "VALUES (1, 'redis://h/0?password=Sekrit4#events/g', NULL, 'not json', 'not JSON', 1, 't', 't')"
    )
    conn.close()
    r = evt("projections")
    assert r.exit_code == 0, r
    assert [(row["name"], row["checkpoint"], row["lastRunAt"]) for row in r.json()] == [
        ("amqps://guest:***@h:5671/%2F?ssl_options=***#events", 7, None),
        ("my-relay", 2, None),
        ("redis://127.0.0.1:6379/0#events", 9, None),
        # two names became one: the lower position (events published again, never skipped)
        ("redis://127.0.0.1:6379/0?password=***#events", 3, "2026-11-02T00:00:00.000000Z"),
    ]
    assert [e["consumer"] for e in evt("dlq", "list").json()] == ["redis://h/0?password=***#events/g"]
    assert query("events.db", "SELECT name FROM evt_migrations WHERE name LIKE '0005%'") == [("0005_redact_broker_secrets",)]
    query("events.db", "PRAGMA wal_checkpoint(TRUNCATE)")
    with open("events.db", "rb") as f:
        assert b"Sekrit" not in f.read()


# -- malformed URLs: exit 2, one line, no password, nothing written ---------------------------

ENCODE = "write a '/', '?', '#' or '@' in a user name or password, and an '@' anywhere after the host, as %2F, %3F, %23 or %40"
PORT = "the port must be a number from 1 to 65535"


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis://:s3cr#etPW@127.0.0.1:6379/0", f"invalid broker URL redis://:***@127.0.0.1:6379/0: {ENCODE}"),
        ("amqp://guest:gu#est@127.0.0.1:5672/", f"invalid broker URL amqp://guest:***@127.0.0.1:5672/: {ENCODE}"),
        ("redis://:s3cr/etPW@127.0.0.1/0", f"invalid broker URL redis://:***@127.0.0.1/0: {ENCODE}"),
        ("amqp://guest:12?est@127.0.0.1/", f"invalid broker URL amqp://***: {ENCODE}"),  # no telling the password from a query
        ("redis://127.0.0.1/0?client_name=me@home", f"invalid broker URL redis://***: {ENCODE}"),
        ("redis://127.0.0.1:6379/0#frag", "invalid broker URL redis://127.0.0.1:6379/0#***: a broker URL has no '#' part; write a '#' in a password or name as %23"),
        ("redis://127.0.0.1:99999/0", f"invalid broker URL redis://127.0.0.1:99999/0: {PORT}"),
        ("redis://:pw@127.0.0.1:abc/0", f"invalid broker URL redis://:***@127.0.0.1:abc/0: {PORT}"),
        ("amqp://guest:guest@127.0.0.1:99999/", f"invalid broker URL amqp://guest:***@127.0.0.1:99999/: {PORT}"),
        ("amqp://guest:guest@127.0.0.1:abc/", f"invalid broker URL amqp://guest:***@127.0.0.1:abc/: {PORT}"),
        ("amqp://127.0.0.1:0/", f"invalid broker URL amqp://127.0.0.1:0/: {PORT}"),
        ("redis://[::1", "invalid broker URL redis://[::1: an IPv6 address must be written in brackets, e.g. [::1]"),
        ("amqp://guest:guest@[::1:5672/", "invalid broker URL amqp://guest:***@[::1:5672/: an IPv6 address must be written in brackets, e.g. [::1]"),
        ("redis://127.0.0.1/0?socket_timeout=abc", "invalid Redis URL redis://127.0.0.1/0?socket_timeout=abc: Invalid value for 'socket_timeout' in connection URL."),
        ("redis://127.0.0.1/0?colour=red", "invalid Redis URL redis://127.0.0.1/0?colour=red: unknown parameter 'colour'"),
        ("redis://127.0.0.1/0?protocol=5&password=pw", "invalid Redis URL redis://127.0.0.1/0?protocol=5&password=***: protocol must be either 2 or 3"),
        ("amqp://127.0.0.1/?heartbeat=abc", "invalid RabbitMQ URL amqp://127.0.0.1/?heartbeat=abc: Invalid heartbeat value 'abc'"),
        ("amqp://127.0.0.1/?ssl_options=x", "invalid RabbitMQ URL amqp://127.0.0.1/?ssl_options=x: ssl_options: not a Python dict literal such as {'ca_certs': '/path/ca.pem'}"),
        (
            "amqps://127.0.0.1/?ssl_options={'ca_certs':'/nonexistent','certfile':'c','password':'s3cretPW'}",
            "invalid RabbitMQ URL amqps://127.0.0.1/?ssl_options=***: ssl_options: No such file or directory",
        ),
        ("amqp://127.0.0.1/?colour=red", "invalid RabbitMQ URL amqp://127.0.0.1/?colour=red: unknown parameter 'colour'"),
        ("amqp://guest@127.0.0.1/", "invalid RabbitMQ URL amqp://guest@127.0.0.1/: a user name needs a password: amqp://USER:PASS@HOST:PORT/VHOST"),
    ],
)
def test_a_malformed_broker_url_is_a_usage_error_that_shows_no_password(evt, url, message):
    evt("append", "order-1", "order.placed", "-q", "--db", "a.db")
    before = os.listdir()
    where = ["--group", "g"] if url.startswith("redis") else ["--queue", "q"]
    for args in (["relay", url, "--db", "a.db"], ["ingest", url, *where, "--db", "b.db"]):
        r = evt(*args)
        assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"evt: {message}\n"), args
    assert os.listdir() == before  # ingest created no store
    assert positions("a.db") == []


# -- item: a URL shape never gives an internal error, never shows its password ------------------

MARK = "QXZ"  # every secret in a generated URL holds it; no output may


def hostile_urls(closed: int):
    """Broker URLs of every shape, pointing only at loopback: at a closed port, at the real
    broker of their scheme (``REAL``), or at no valid port."""
    from hypothesis import strategies as st

    piece = st.sampled_from([MARK + "1", MARK + "2", "#", "/", "?", "@", ":", "%", "%2", "%23", "&", "=", "[", "]", " ", "+", "'", "{"])
    password = st.lists(piece, min_size=1, max_size=5).map(lambda ps: MARK + "".join(ps))
    userinfo = st.one_of(
        st.just(""),
        st.just("guest:guest@"),
        st.builds(lambda p: f":{p}@", password),
        st.builds(lambda p: f"guest:{p}@", password),
        st.builds(lambda p: f":{quote(p, safe='')}@", password),
        st.just("guest@"),
    )
    host = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "[::1", "::1", ""])
    port = st.sampled_from([f":{closed}", f":{closed}", f":{closed}", ":REAL", ":99999", ":abc", ":", ":0", ":-1", ""])
    path = st.sampled_from(["", "/", "/0", "/%2F", "/abc", "/0/1"])
    plain = st.sampled_from(["abc", "-1", "0", "1", "nan", "inf", "1e999", "{}", "x", "2", "3", "0.5", "", "{'a': 1}", "__import__('os')"])
    name = st.sampled_from(
        ["socket_timeout", "socket_connect_timeout", "heartbeat", "db", "ssl_options", "protocol", "colour", "client_name",
         "connection_attempts", "retry_delay", "health_check_interval", "blocked_connection_timeout", "client_properties"]
    )
    parameter = st.one_of(
        st.tuples(name, plain),
        st.tuples(st.sampled_from(["password", "ssl_password", "Password"]), password),
        st.tuples(st.sampled_from(["ssl_options", "client_properties"]), password.map(lambda p: f"{{'password': '{p}'}}")),
    )
    params = st.lists(st.tuples(parameter, st.booleans()), max_size=3).map(
        lambda ps: "&".join(f"{n}={quote(v, safe='') if encode else v}" for (n, v), encode in ps)
    )
    scheme = st.sampled_from(["redis", "rediss", "amqp", "amqps"])
    # The real broker of the scheme; TLS against a plain port waits out the socket timeout, so not there.
    real = {"redis": ":6379", "amqp": ":5672", "rediss": f":{closed}", "amqps": f":{closed}"}
    return st.builds(
        lambda s, u, h, p, pa, q: f"{s}://{u}{h}{p.replace(':REAL', real[s])}{pa}" + (f"?{q}" if q else ""),
        scheme, userinfo, host, port, path, params,
    )  # fmt: skip


def test_no_url_shape_is_an_internal_error_or_shows_its_password(evt, redis_broker, amqp_broker):
    """Whatever the URL, relay and ingest end with exit 0 (it worked), 2 (a usage error) or 6
    (the broker refused or is not there), and the password never appears in what they print."""
    from hypothesis import HealthCheck, given, settings

    client, prefix = redis_broker
    load(evt, [{"stream": "s-1", "type": "t.x", "data": {}, "id": "e-1"}], "a.db")
    closed = closed_port()
    counter = itertools.count()

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(hostile_urls(closed))
    def check(url):
        n = next(counter)
        if url.startswith("redis"):
            options = ["--key", f"{prefix}-{n}"]
            ingest = ["--group", "g", "--key", f"{prefix}-{n}", "--wait", "0.05"]
        else:
            options = ["--exchange", amqp_broker.exchange]
            ingest = ["--queue", amqp_broker.queue(f"q{n}"), "--exchange", amqp_broker.exchange, "--wait", "0.05"]
        for args in (["relay", url, *options], ["ingest", url, *ingest]):
            r = evt(*args, "--retries", "0", "--db", "a.db")
            assert r.exit_code in (0, 2, 6), (args, r)
            assert MARK not in r.stdout + r.stderr, (args, r)
            if r.exit_code:
                assert r.stderr.startswith("evt: ") and r.stderr.count("\n") == 1, (args, r)
        names = query("a.db", "SELECT name FROM evt_checkpoints UNION ALL SELECT consumer FROM evt_dead_letters")
        assert not any(MARK in name for (name,) in names)

    try:
        check()
    finally:  # a URL may name another database (/1, ?db=2): the fixture cleans only db 0
        import redis

        for db in range(1, 16):
            other = redis.Redis(host="127.0.0.1", port=6379, db=db)
            for key in other.scan_iter(f"{prefix}*"):
                other.delete(key)
            other.close()


def test_a_port_that_does_not_speak_amqp_is_unavailable(evt, redis_broker):
    "AMQP to Redis's port: pika's handshake times out (was an internal error, exit 1)."
    evt("append", "order-1", "order.placed", "-q")
    url = "amqp://guest:guest@127.0.0.1:6379/?stack_timeout=0.5"
    r = evt("relay", url, "--retries", "0", "--exchange", f"{redis_broker[1]}-x")
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == (
        "evt: RabbitMQ at amqp://guest:***@127.0.0.1:6379/?stack_timeout=0.5 is unavailable: no AMQP handshake with "
        "127.0.0.1:6379 in time (is it RabbitMQ that listens there?) (gave up after 1 attempt; is the broker running?)\n"
    )


# -- a Redis of our own, with a password ---------------------------------------------------------

PASSWORD = "s3cr#et PW&x"  # '#', ' ' and '&' must be percent-encoded in a URL
ENCODED = quote(PASSWORD, safe="")


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server started for this test on a free loopback port, with --requirepass
    (the shared Redis is never reconfigured); its port. Stopped afterwards."""
    import redis

    if shutil.which("redis-server") is None:
        if os.environ.get("EVT_REQUIRE_BROKERS") == "1":
            pytest.fail("redis-server is not installed; EVT_REQUIRE_BROKERS=1 requires it")
        pytest.skip("redis-server is not installed")
    for _ in range(5):  # a free port may be taken between finding it and binding it
        port = closed_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        else:
            proc.kill()
            proc.wait()
            continue
        yield port
        client.close()
        proc.terminate()
        proc.wait(10)
        return
    pytest.fail("could not start a redis-server of our own")


def test_a_refused_login_is_exit_6_at_once(evt, private_redis):
    "A wrong or missing password is not retried as if the server were down."
    evt("append", "order-1", "order.placed", "-q")
    base = f"127.0.0.1:{private_redis}/0"
    cases = [
        (f"redis://{base}", f"redis://{base}", "it needs a password (redis://:PASSWORD@HOST:PORT/DB)"),
        (f"redis://:wrong@{base}", f"redis://:***@{base}", "invalid username-password pair or user is disabled"),
        (f"redis://{base}?password=wrong", f"redis://{base}?password=***", "invalid username-password pair or user is disabled"),
    ]
    for url, shown, reason in cases:
        for args in (["relay", url], ["ingest", url, "--group", "g", "--db", "b.db"]):
            r = evt(*args, "--retries", "5", "--backoff", "30")  # a retry would show, and take 30 s
            assert (r.exit_code, r.stdout, r.stderr) == (6, "", f"evt: Redis at {shown} refused the login: {reason}\n"), args
    assert positions("events.db") == []


def test_a_password_in_the_query_string_is_never_shown_or_stored(evt, private_redis):
    """Summaries, evt projections, evt dlq, error messages and the store itself hold the URL
    with ?password=*** (and the user-info password as ***)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=private_redis, password=PASSWORD)
    base = f"redis://127.0.0.1:{private_redis}/0"
    url, shown = f"{base}?password={ENCODED}&socket_timeout=5", f"{base}?password=***&socket_timeout=5"
    load(evt, [{"stream": "s-1", "type": "t.x", "data": {"n": 1}, "id": "e-1"}], "a.db")

    r = evt("relay", url, "--key", "k", "--db", "a.db")
    assert (r.exit_code, r.stdout, r.stderr) == (0, summary(f"{shown}#k", published=1, position=1), "")
    assert positions("a.db") == [(f"{shown}#k", "relay", 1)]
    assert [row["name"] for row in evt("projections", "--db", "a.db").json()] == [f"{shown}#k"]

    client.xadd("k", {"envelope": "not json"})
    r = evt("ingest", url, "--key", "k", "--group", "g", "--db", "b.db", "--wait", "0.1")
    assert (r.exit_code, r.stdout, r.stderr) == (0, ingested(f"{shown}#k/g", received=2, appended=1, dead=1), "")
    assert [row[0] for row in dead_letters("b.db")] == [f"{shown}#k/g"]
    [listed] = evt("dlq", "list", "--db", "b.db").json()
    assert listed["consumer"] == f"{shown}#k/g"
    assert evt("dlq", "show", str(listed["id"]), "--db", "b.db").json()[0]["consumer"] == f"{shown}#k/g"

    client.set("not-a-stream", "x")  # an error that names the URL
    r = evt("relay", url, "--key", "not-a-stream", "--db", "a.db")
    assert r.exit_code == 6
    assert r.stderr.startswith(f"evt: Redis at {shown} refused: WRONGTYPE")
    r = evt("relay", f"redis://:{ENCODED}@127.0.0.1:{private_redis}/0", "--key", "k2", "--db", "a.db")
    assert r.stdout == summary(f"redis://:***@127.0.0.1:{private_redis}/0#k2", published=1, position=1)

    for db in ("a.db", "b.db"):
        query(db, "PRAGMA wal_checkpoint(TRUNCATE)")
        with open(db, "rb") as f:
            content = f.read()
        assert ENCODED.encode() not in content and b"s3cr" not in content, db
    client.close()


def test_pikas_own_retry_parameters_are_refused_for_evts_own(evt):
    for parameter in ("connection_attempts=3", "retry_delay=2"):
        result = evt("relay", f"amqp://guest:guest@127.0.0.1:5672/?{parameter}")
        name = parameter.split("=")[0]
        assert (result.exit_code, result.stderr) == (
            2, f"evt: invalid RabbitMQ URL amqp://guest:***@127.0.0.1:5672/?{parameter}: {name}: evt retries a lost connection itself; use --retries and --backoff\n"
        )


@pytest.mark.parametrize(
    "args, option",
    [
        (["relay", "redis://127.0.0.1:1/0", "--backoff", "nan"], "--backoff"),
        (["ingest", "redis://127.0.0.1:1/0", "--group", "g", "--wait", "inf"], "--wait"),
        (["ingest", "redis://127.0.0.1:1/0", "--group", "g", "--backoff", "1e308"], "--backoff"),
        (["ingest", "nats://127.0.0.1:1", "--durable", "d", "--ack-wait", "nan"], "--ack-wait"),
    ],
)
def test_a_wait_that_is_no_number_of_seconds_is_refused_before_connecting(evt, tmp_path, args, option):
    "nan, infinity or over 1e9 seconds: exit 2 on the command line (they ended in exit 1 at the first wait), no file made."
    evt("append", "a-1", "t", "-q")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = evt(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"evt: Invalid value for '{option}': must be a number of seconds from ")
    assert result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before
