"""evt seal: sign the head of the hash chain with an Ed25519 key, list the seals, verify them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format
from .output import Layout, choose_format, emit

SEAL_COLUMNS = Layout("id", "position", "signedAt", "keyId", "hash", keys=("id", "position"), flex=("hash",), drop=("keyId", "signedAt"))

seal_app = typer.Typer(
    rich_markup_mode=None,  # help text as written: [brackets] are not markup
    help="Seals: the head of the hash chain signed with an Ed25519 key, and their verification.",
    short_help="Sign the head of the hash chain (Ed25519); verify seals.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PrivateKey = Annotated[str, typer.Option("--key", metavar="PRIVATE.pem", help="The Ed25519 private key (PEM) to sign with (evt seal keygen writes one).", show_default=False)]
PublicKeys = Annotated[Optional[list[str]], typer.Option("--public-key", metavar="PUBLIC.pem", help="An Ed25519 public key (PEM) seals may be signed with; repeatable.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(seal_app, name="seal")


@seal_app.command(cls=EvtCommand)
def keygen(
    private: Annotated[str, typer.Argument(metavar="PRIVATE", help="The private key's new file (written 0600).", show_default=False)],
    public: Annotated[Optional[str], typer.Option("--public", metavar="PUBLIC", help="The public key's new file (default: PRIVATE.pub).", show_default=False)] = None,
    format: Format = None,
) -> None:
    """Write a new Ed25519 key pair for seals.

    The private key goes to PRIVATE (PEM, readable by you alone), the public key beside
    it. Neither file may exist (exit 3). Prints the paths and the key id, never the key.
    """
    from ..ops.seals import keygen as make_keys

    fmt = choose_format(format)
    emit([make_keys(private, public)], fmt, Layout("keyId", "private", "public", keys=("keyId",), flex=()))


@seal_app.command(cls=EvtCommand)
def sign(key: PrivateKey, format: Format = None, db: Db = None, config: ConfigFile = None) -> None:
    """Seal the head: sign its chain hash with PRIVATE.pem and record the seal.

    The chain is verified first (from this key's last seal); a log that does not verify
    is never sealed (exit 8). Prints the seal: id, position, hash, signedAt, keyId and
    signature.
    """
    from ..ops.seals import seal

    fmt = choose_format(format)
    store = Context(db, config).open(with_model=False, write=True)
    try:
        emit([seal(store, key)], fmt, SEAL_COLUMNS)
    finally:
        store.close()


@seal_app.command("list", cls=EvtCommand)
def list_(format: Format = None, db: Db = None, config: ConfigFile = None) -> None:
    """List the seals, oldest first."""
    from ..ops.seals import seals

    fmt = choose_format(format)
    store = Context(db, config).open(with_model=False)
    try:
        emit(seals(store), fmt, SEAL_COLUMNS)
    finally:
        store.close()


@seal_app.command(cls=EvtCommand)
def verify(public_key: PublicKeys = None, format: Format = None, db: Db = None, config: ConfigFile = None) -> None:
    """Verify the chain and every seal: signed by a given key, over the hash the log holds.

    A seal signed by another key, changed, or naming a hash the log no longer has at its
    position is exit 8, and so is a store with no seals. Read-only.
    """
    from ..log.store import Store
    from ..ops.seals import public_keys, verify_seals
    from ..ops.verify import verify as verify_chain

    fmt = choose_format(format)
    keys = public_keys(public_key or [])
    ctx = Context(db, config)
    report = verify_chain(ctx.db_path).check()
    store = Store(ctx.db_path, create=False, migrate=False, busy_timeout=ctx.config.busy_timeout())  # read-only: never upgraded
    try:
        sealed = verify_seals(store, keys)
    finally:
        store.close()
    result = {"path": ctx.db_path, "verified": True, "head": report.head, "headHash": report.head_hash, **sealed}
    emit([result], fmt, Layout("path", "verified", "head", "seals", "sealedPosition", "sealedAt", keys=("path",), flex=()))
