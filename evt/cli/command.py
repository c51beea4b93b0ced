"""How every command's help reads: arguments by their metavar (``STREAM``, ``[IDS]...``).

typer names an argument after the Python parameter (``{name}``, ``stream <str>``);
``EvtCommand`` writes the usage line the way command-line tools do — ``NAME`` for a
required argument, ``[STREAM]`` for an optional one, ``...`` after one that repeats —
and lists the arguments under the same names. Every command is registered with it
(``tests/test_help.py`` checks each command's help).
"""

from __future__ import annotations

from typer.core import TyperCommand


def argument_name(param) -> str:
    "An argument as the usage line shows it."
    name = param.metavar or param.name.upper()
    return name if param.nargs == 1 else f"{name}..."


class EvtCommand(TyperCommand):
    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                help = param.help or ""
                arguments.append((argument_name(param), f"{help}  [required]" if param.required else help))
            elif param.param_type_name == "option":
                record = param.get_help_record(ctx)
                if record is not None:
                    options.append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
