"""Command lines as people type them, put in the order the commands parse (no typer here).

The options every command shares — ``--db``, ``--config``, ``--model`` — may come before
the command, as with git or docker: ``evt --db x.db read`` is ``evt read --db x.db``.
"""

from __future__ import annotations

GLOBAL_OPTIONS = ("--db", "--config", "--model", "--keys")
GROUPS = ("dlq", "upcast", "projections", "seal")  # commands with subcommands: the options go after the subcommand
# Groups that also run alone (``evt projections``): only a subcommand named next takes the options.
SUBCOMMANDS_OPTIONAL = {"projections": ("reset",)}


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the shared options given before the command to just after it.

    They go right after the command's name (``evt dlq list``: after ``list``), so one
    given after the command too still wins, as the later of two options does.
    Anything else — no command, an option without its value — is left as it is, for
    the parser to report.
    """
    moved: list[str] = []
    i = 0
    while i < len(args):
        name, eq, _ = args[i].partition("=")
        if name not in GLOBAL_OPTIONS:
            break
        if eq:
            moved.append(args[i])
            i += 1
        elif i + 1 < len(args):
            moved += args[i : i + 2]
            i += 2
        else:
            return args
    if not moved:
        return args
    rest = args[i:]
    depth = 2 if rest[:1] and rest[0] in GROUPS else 1
    if depth == 2 and rest[0] in SUBCOMMANDS_OPTIONAL and (len(rest) < 2 or rest[1] not in SUBCOMMANDS_OPTIONAL[rest[0]]):
        depth = 1
    if len(rest) < depth or any(word.startswith("-") for word in rest[:depth]):
        return args
    return rest[:depth] + moved + rest[depth:]
