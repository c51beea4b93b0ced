"""Names in SQL text: found and renamed token by token, never by search and replace.

A shadow rebuild runs a projection's own statements against tables of other names
(``order_summaries`` becomes ``evt_shadow_order_summaries``). ``rename`` does that on
SQLite's tokens: strings, comments, parameters (``:data``) and numbers pass untouched,
and an identifier — bare, ``"quoted"``, ``[bracketed]`` or ```backticked``` — is
replaced when its name (ASCII case folded, as SQLite compares names) is in the mapping,
unless it is a column qualified by something else (``x.name``; ``main.name`` is still
the table). A column, alias or function of the same name as a mapped table cannot be
told apart from it by tokens alone: whoever renames checks the result
(``evt.processing.shadows`` compares what each statement reads and writes).
"""

from __future__ import annotations

import re
from typing import Iterator

# One token: whitespace, a comment, a string or blob, a quoted or bare identifier, a
# parameter, a number, or any other single character (operators, punctuation).
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<comment>--[^\n]*(?:\n|$) | /\*.*?(?:\*/|$))
    | (?P<string>[xX]?'(?:[^']|'')*'?)
    | (?P<quoted>"(?:[^"]|"")*"? | \[[^\]]*\]? | `(?:[^`]|``)*`?)
    | (?P<parameter>[:@$][A-Za-z0-9_\x80-\U0010ffff]+(?:::[A-Za-z0-9_]+)* | \?[0-9]*)
    | (?P<number>(?:0[xX][0-9a-fA-F]+ | [0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)? | \.[0-9]+(?:[eE][+-]?[0-9]+)?))
    | (?P<bare>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)
    | (?P<other>.)
    """,
    re.S | re.X,
)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    "A name as SQLite compares names: ASCII letters case-insensitively, anything else as it is."
    return name.translate(_ASCII_LOWER)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tokens(sql: str) -> Iterator[tuple[str, str]]:
    "(kind, text) for each token of the SQL text."
    for match in _TOKEN.finditer(sql):
        yield match.lastgroup, match.group()


def identifier(kind: str, text: str) -> str | None:
    "The name an identifier token stands for (None for any other token)."
    if kind == "bare":
        return text
    if kind != "quoted":
        return None
    if text[0] == "[":
        return text[1:-1]
    return text[1:-1].replace(text[0] * 2, text[0])


def names_in(sql: str) -> set[str]:
    "Every name (folded) the SQL text mentions as an identifier."
    found = set()
    for kind, text in tokens(sql):
        name = identifier(kind, text)
        if name is not None:
            found.add(fold(name))
    return found


def rename(sql: str, mapping: dict[str, str]) -> str:
    """The SQL with every identifier whose folded name is a key of ``mapping`` replaced by
    the quoted value; a name after ``x.`` (a column of x) is left alone, after ``main.``
    it is renamed."""
    if not mapping:
        return sql
    out: list[str] = []
    significant: list[tuple[str, str]] = []  # the last two tokens that are not space or comments
    for kind, text in tokens(sql):
        if kind in ("space", "comment"):
            out.append(text)
            continue
        name = identifier(kind, text)
        if name is not None and fold(name) in mapping and _not_a_column(significant):
            out.append(quote(mapping[fold(name)]))
        else:
            out.append(text)
        significant = significant[-1:] + [(kind, text)]
    return "".join(out)


def _not_a_column(before: list[tuple[str, str]]) -> bool:
    "Whether a name after these tokens is not ``x.name`` — or is ``main.name``, a table of the main database."
    if not before or before[-1] != ("other", "."):
        return True
    if len(before) < 2:
        return False
    qualifier = identifier(*before[-2])
    return qualifier is not None and fold(qualifier) == "main"
