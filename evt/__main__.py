"""The ``evt`` command's entry point.

``evt append`` runs in shell loops, so its common forms are parsed here without
importing typer or rich (see ``evt.cli.append.parse_fast``); everything else, and
anything the fast parser does not recognise, goes to the typer app. The options
every command shares may come before the command (``evt.cli.argv``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .cli.argv import hoist_global_options

    args = hoist_global_options(sys.argv[1:] if argv is None else list(argv))
    if args[:1] == ["append"]:
        from .cli.append import parse_fast, run_append
        from .cli.boundary import guarded

        parsed = []

        def fast() -> int:
            "Parse and run inside the boundary, so nothing the parser meets escapes as a traceback."
            request = parse_fast(args[1:])
            parsed.append(request is not None)
            return run_append(request) if request is not None else 0

        code = guarded(fast)
        if not parsed or parsed[0]:
            return code
    from .cli.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
