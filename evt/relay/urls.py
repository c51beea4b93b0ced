"""Broker URLs: which client a URL needs, whether it is well-formed, and how to show it
without its secrets.

A broker URL carries secrets in two places: the password of its user-info
(``redis://:PASS@host``, ``amqp://USER:PASS@host``) and query parameters the client takes
as credentials (``?password=``, ``?ssl_password=``, a ``?ssl_options=`` dict holding a key
password). ``redact`` hides both wherever a URL is printed or stored (messages, summaries,
relay and ingest names, checkpoints, dead letters); ``check`` refuses a malformed URL as a
usage error whose message never holds a secret.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from ..errors import UsageError

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "amqps")
NATS_SCHEMES = ("nats",)

# A query parameter whose name holds one of these is a credential (password, passwd,
# ssl_password, passphrase, token, secret, credentials…); so is a dict-valued one
# (pika's ``ssl_options``, ``client_properties``) whose text mentions one.
SECRET_WORDS = ("pass", "pwd", "secret", "token", "credential")
HIDDEN = "***"


def scheme_of(url: str) -> str:
    "``redis``, ``amqp`` or ``nats``; UsageError for anything else."
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # an unbalanced '[': the scheme is still the part before '://'
        scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    if scheme in NATS_SCHEMES:
        return "nats"
    raise UsageError(
        f"unsupported broker URL {redact(url)!r}: expected redis://HOST:PORT/DB, amqp://USER:PASS@HOST:PORT/VHOST or nats://HOST:PORT"
    )


def redact(url: str) -> str:
    """The URL with its secrets replaced by ***, fit for messages and names; never raises.

    A URL with no secret comes back unchanged, character for character: a relay's name
    (and so its saved position) is built from it.
    """
    if "#" in url or _userinfo_spilled(url):
        return _redact_malformed(url)
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return _redact_malformed(url)
    if password is not None:
        # This exact form (host lower-cased, port as a number) is part of the names of
        # relays saved since the first release: keep it, or their positions are lost.
        netloc = f"{parts.username or ''}:{HIDDEN}@{parts.hostname or ''}"
        if port is not None:
            netloc += f":{port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    # The query string is redacted as written, piece by piece: migration 0005 (in
    # evt/log/migrations.py) does the same to the names saved before, and both must agree.
    head, question, query = url.partition("?")
    return f"{head}?{redact_query(query)}" if question else url


def redact_query(query: str) -> str:
    """A query string with the value of each credential parameter replaced by ***; the rest
    kept as written. Pieces with no '=' right after a credential are hidden too: they are
    the rest of a value holding an unencoded '&'."""
    if not query:
        return query
    pieces = query.split("&")
    hiding = False
    for i, piece in enumerate(pieces):
        name, equals, value = piece.partition("=")
        if not equals:
            if hiding and piece:
                pieces[i] = HIDDEN
            continue
        hiding = bool(value) and is_secret(unquote_plus(name), unquote_plus(value))
        if hiding:
            pieces[i] = f"{name}={HIDDEN}"
    return "&".join(pieces)


def is_secret(name: str, value: str) -> bool:
    "Whether a query parameter carries a credential."
    name = name.lower()
    if any(word in name for word in SECRET_WORDS):
        return True
    value = value.strip().lower()
    return value.startswith("{") and any(word in value for word in SECRET_WORDS)


def _redact_malformed(url: str) -> str:
    """A URL that does not parse as written, shown without anything that may be a secret.

    A password holding an unencoded '/', '?', '#' or '@' cannot be told from what follows
    it. The user-info ends at the last '@' (a '#' before it is taken as part of a
    password); past a '?' nothing tells a password from a query value holding an '@', so
    then everything after the scheme goes. Credential parameters lose their values, and
    whatever follows a '#' after the host goes.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return HIDDEN if any(c in url for c in "@?#") else url
    at = rest.rfind("@")
    if at >= 0 and "?" in rest[:at]:
        return f"{scheme}://{HIDDEN}"
    user = ""
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@" if ":" in userinfo else f"{userinfo}@"
    rest, hash_, _ = rest.partition("#")
    head, question, query = rest.partition("?")
    return f"{scheme}://{user}{head}" + (f"?{redact_query(query)}" if question else "") + (f"#{HIDDEN}" if hash_ else "")


def _userinfo_spilled(url: str) -> bool:
    """Whether an '@' follows the host part: a password holding an unencoded '/', '?' or
    '#' has cut the user-info short, or a value holds an unencoded '@'. Either way the URL
    cannot be read safely (an '@' after the host must be written %40)."""
    rest = url.partition("://")[2]
    return "@" in rest[len(_netloc(url)) :]


def scrub(message: str, url: str) -> str:
    "A message from a client library with any secret of the URL in it replaced by ***."
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        message = message.replace(secret, HIDDEN)
    return message


def secrets_of(url: str) -> set[str]:
    "Every secret in a URL, as written and decoded (the parts that ``redact`` hides)."
    found: set[str] = set()
    rest = url.partition("://")[2]
    netloc = _netloc(url)
    userinfo = (netloc if "@" in netloc else rest).rpartition("@")[0]
    if ":" in userinfo:
        found.add(userinfo.split(":", 1)[1])
    query = rest.partition("?")[2]
    for piece in query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and value and is_secret(unquote_plus(name), unquote_plus(value)):
            found.add(value.partition("#")[0])
    found |= {unquote(s) for s in found} | {unquote_plus(s) for s in found}
    return {s for s in found if len(s) >= 2}  # a one-character secret would blank out the message


def check(url: str) -> str:
    """The URL's kind (``redis``, ``amqp`` or ``nats``) when it is well-formed and its client takes
    every parameter in it; UsageError otherwise, naming what is wrong, never a secret.

    Run before anything is opened or created, so a malformed URL writes nothing.
    """
    kind = scheme_of(url)
    shown = redact(url)
    if _userinfo_spilled(url):
        raise UsageError(f"invalid broker URL {shown}: {ENCODE_HINT}")
    if "#" in url:
        raise UsageError(f"invalid broker URL {shown}: a broker URL has no '#' part; write a '#' in a password or name as %23")
    try:
        port = urlsplit(url).port
    except ValueError as e:
        message = "an IPv6 address must be written in brackets, e.g. [::1]" if "IPv6" in str(e) else PORT_RANGE
        raise UsageError(f"invalid broker URL {shown}: {message}") from None
    if port == 0:
        raise UsageError(f"invalid broker URL {shown}: {PORT_RANGE}")
    if kind == "redis":
        from .redis import check_url
    elif kind == "nats":
        from .nats import check_url
    else:
        from .amqp import check_url
    check_url(url)
    return kind


ENCODE_HINT = "write a '/', '?', '#' or '@' in a user name or password, and an '@' anywhere after the host, as %2F, %3F, %23 or %40"
PORT_RANGE = "the port must be a number from 1 to 65535"


def _netloc(url: str) -> str:
    "The host part as urlsplit cuts it (up to the first '/', '?' or '#')."
    return re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]


def usage_error(client: str, url: str, error: BaseException | str) -> UsageError:
    "A client library's refusal of a URL as a usage error; its message scrubbed of the URL's secrets."
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r" object at 0x[0-9a-f]+", "", text)
    return UsageError(f"invalid {client} URL {redact(url)}: {scrub(text, url)}")


def host_port(url: str, default_port: int) -> str:
    "HOST:PORT a well-formed URL connects to (an IPv6 address in brackets)."
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"[{host}]:{parts.port or default_port}" if ":" in host else f"{host}:{parts.port or default_port}"


def connection_refused(error: BaseException) -> bool:
    "Whether a client's error comes from a refused connection (nothing listening on the port)."
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ConnectionRefusedError):
            return True
        error = getattr(error, "exception", None) or error.__cause__ or error.__context__ or _wrapped(error)
        seen += 1
    return False


def _wrapped(error: BaseException) -> BaseException | None:
    "The exception a client passes as its error's first argument (pika does), if any."
    first = error.args[0] if error.args else None
    return first if isinstance(first, BaseException) else None


def target_for(
    url: str,
    *,
    key: str = "events",
    key_per_category: bool = False,
    maxlen: int | None = None,
    exchange: str = "events",
    cloudevents: str | None = None,
    **nats: object,
):
    """The relay target for a broker URL; ``cloudevents`` (``structured`` or ``binary``)
    publishes CloudEvents instead of evt envelopes; ``nats`` are ``NatsTarget``'s options."""
    if cloudevents not in (None, "structured", "binary"):
        raise UsageError(f"--cloudevents takes structured or binary, not {cloudevents!r}")
    scheme = check(url)
    if scheme == "nats":
        from .nats import NatsTarget

        return NatsTarget(url, cloudevents=cloudevents, **nats)  # type: ignore[arg-type]
    if scheme == "redis":
        from .redis import RedisTarget

        return RedisTarget(url, key=key, key_per_category=key_per_category, maxlen=maxlen, cloudevents=cloudevents)
    from .amqp import AmqpTarget

    return AmqpTarget(url, exchange=exchange, cloudevents=cloudevents)


def source_for(
    url: str,
    *,
    group: str | None = None,
    key: str = "events",
    consumer: str = "evt",
    queue: str | None = None,
    bindings: list[str] | None = None,
    exchange: str = "events",
    prefetch: int = 500,
    wait: float = 1.0,
    durable: str | None = None,
    **nats: object,
):
    "The ingest source for a broker URL; ``nats`` are ``NatsSource``'s options."
    scheme = check(url)
    if scheme == "nats":
        if not durable:
            raise UsageError("ingest from NATS needs --durable NAME (the durable consumer)")
        from .nats import NatsSource

        return NatsSource(url, durable=durable, wait=wait, max_ack_pending=prefetch, **nats)  # type: ignore[arg-type]
    if scheme == "redis":
        if not group:
            raise UsageError("ingest from Redis needs --group NAME (the consumer group)")
        from .redis import RedisSource

        return RedisSource(url, key=key, group=group, consumer=consumer, wait=wait)
    if not queue:
        raise UsageError("ingest from RabbitMQ needs --queue NAME")
    from .amqp import AmqpSource

    return AmqpSource(url, queue=queue, bindings=bindings or None, exchange=exchange, prefetch=prefetch, wait=wait)
