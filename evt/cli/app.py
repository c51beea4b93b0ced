"""The typer application: every command, and the boundary that maps errors to exit codes."""

from __future__ import annotations

import copy
from typing import Annotated

import typer

from . import backup, dlq, forget, log, model, projections, redact, relay, seal, trace, upcast, verify
from .boundary import fail, guarded

HELP = """An event store in one SQLite file: append, read, follow, replay, fold, upcast.

--db, --config and --model may also come before the command (evt --db x.db read).
'evt COMMAND --help' describes a command; exit codes: 0 ok, 2 usage, 3 conflict,
4 not found, 5 invalid input, 6 store or broker unavailable, 7 a handler failed,
8 verification failed."""

SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

app = typer.Typer(
    rich_markup_mode=None,  # help text as written: [brackets] are not markup
    name="evt",
    help=HELP,
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion
    pretty_exceptions_enable=False,
    context_settings=SETTINGS,
)


def print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"evt {version('evt')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=print_version, help="Print evt's version and exit.")] = False,
) -> None:
    pass


log.register(app)
trace.register(app)
model.register(app)
upcast.register(app)
forget.register(app)
redact.register(app)
projections.register(app)
dlq.register(app)
relay.register(app)
verify.register(app)
backup.register(app)
seal.register(app)


def run(args: list[str]) -> int:
    "Run the CLI on ``args``; return the exit code."
    return guarded(_invoke, args)


def _invoke(args: list[str]) -> int:
    command = typer.main.get_command(_app_for(args[0]) if args else app)
    try:
        result = command.main(args, prog_name="evt", standalone_mode=False)
    except Exception as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            if hasattr(e.ctx.command, "commands"):  # `evt` or a group alone: its help is the answer
                print(e.ctx.get_help())
                return 0
            return fail(f"{e.ctx.command_path} needs arguments (see '{e.ctx.command_path} --help')", 2)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # click's usage errors
            return fail(_usage_message(e), e.exit_code)
        raise
    return result if isinstance(result, int) else 0


def _app_for(name: str) -> typer.Typer:
    """The app with only the command or group ``name`` (and the root's options), or the
    whole app if there is none of that name.

    typer builds every command's parameters, from their annotations, before it runs any:
    for evt's 20 commands and groups about 100 ms of a command's start, of which a run
    needs one. ``evt``, ``evt --help`` and a name that is no command (which click answers
    with the list, or a suggestion) get the whole app."""
    from typer.main import get_command_name

    commands = [c for c in app.registered_commands if (c.name or get_command_name(c.callback.__name__)) == name]
    groups = [g for g in app.registered_groups if (g.name or g.typer_instance.info.name) == name]
    if not commands and not groups:
        return app
    trimmed = copy.copy(app)  # the same settings and root callback (which keeps it a group of commands)
    trimmed.registered_commands, trimmed.registered_groups = commands, groups
    return trimmed


# Options people reach for that evt spells otherwise: the hint replaces click's guesses.
OPTION_HINTS = {
    "--json": "use --format json",
    "--ndjson": "use --format ndjson",
    "--table": "use --format table",
    "--jsonl": "use --format ndjson",
    "-o": "use --format FORMAT",
    "--output": "use --format FORMAT",
}


def _usage_message(error) -> str:
    ctx = getattr(error, "ctx", None)
    hint = _hint(error, ctx)
    if hint is not None:
        message = f"{hint[0]}: {hint[1]}"
    else:
        message = error.format_message()
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def _hint(error, ctx) -> tuple[str, str] | None:
    "A usage error worth more than click's words: (what is wrong, what to do)."
    option = getattr(error, "option_name", None)
    takes = {opt for param in (ctx.command.params if ctx is not None else ()) for opt in param.opts}
    if type(error).__name__ == "NoSuchOption" and option in OPTION_HINTS and "--format" in takes:
        return f"no such option {option}", OPTION_HINTS[option]
    if type(error).__name__ == "NoSuchOption" and option in ("--db", "--config", "--model") and ctx is not None and ctx.parent is None:
        return f"{option} needs a command", f"evt {option} VALUE COMMAND …, or evt COMMAND {option} VALUE"
    if ctx is not None and ctx.info_name == "append" and error.format_message().startswith("Got unexpected extra argument"):
        from .append import QUOTE_HINT

        data = ctx.params.get("data") or ""
        if data.startswith(("{", "[")) and not _is_json(data):  # evt append s t {"total": 5}: split by the shell, quotes eaten
            return "DATA was split into several arguments by the shell", QUOTE_HINT
        return "too many arguments", "evt append STREAM TYPE [DATA] takes at most three"
    return None


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True
