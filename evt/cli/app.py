"""The typer application: every command, and the boundary that maps errors to exit codes."""

from __future__ import annotations

import typer

from . import dlq, log, model, projections, relay, upcast
from .boundary import fail, guarded

app = typer.Typer(
    rich_markup_mode=None,  # help text as written: [brackets] are not markup
    name="evt",
    help="An event store in one SQLite file: append, read, follow, replay, fold, upcast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
log.register(app)
model.register(app)
upcast.register(app)
projections.register(app)
dlq.register(app)
relay.register(app)


def run(args: list[str]) -> int:
    "Run the CLI on ``args``; return the exit code."
    return guarded(_invoke, args)


def _invoke(args: list[str]) -> int:
    command = typer.main.get_command(app)
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


def _usage_message(error) -> str:
    message = error.format_message()
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message
