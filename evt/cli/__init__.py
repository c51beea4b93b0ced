"""The command-line interface: thin commands over the ``evt`` library.

``app`` holds the typer application; ``boundary`` turns evt's errors into one
``evt: …`` line and an exit code; ``context`` resolves the store and model in force.
"""
