"""What changed between two states (JSON data), as a list of changes with jq-style paths.

Each change is ``{"path": ".balance", "from": 80.5, "to": 40.5}``; a key or list item
that appears has only ``to``, one that disappears only ``from``.
"""

from __future__ import annotations

import re
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def diff(before: Any, after: Any, path: str = "") -> list[dict]:
    "The changes that turn ``before`` into ``after``, depth first, in key order."
    if isinstance(before, dict) and isinstance(after, dict):
        return _diff_objects(before, after, path)
    if isinstance(before, list) and isinstance(after, list):
        return _diff_lists(before, after, path)
    if type(before) is type(after) and before == after:
        return []
    return [{"path": path or ".", "from": before, "to": after}]


def _diff_objects(before: dict, after: dict, path: str) -> list[dict]:
    changes: list[dict] = []
    for key, old in before.items():
        here = path + key_path(key)
        if key in after:
            changes += diff(old, after[key], here)
        else:
            changes.append({"path": here, "from": old})
    for key, new in after.items():
        if key not in before:
            changes.append({"path": path + key_path(key), "to": new})
    return changes


def _diff_lists(before: list, after: list, path: str) -> list[dict]:
    changes: list[dict] = []
    for i in range(min(len(before), len(after))):
        changes += diff(before[i], after[i], f"{path}[{i}]")
    for i in range(len(after), len(before)):
        changes.append({"path": f"{path}[{i}]", "from": before[i]})
    for i in range(len(before), len(after)):
        changes.append({"path": f"{path}[{i}]", "to": after[i]})
    return changes


def key_path(key: str) -> str:
    return f".{key}" if IDENTIFIER.match(key) else f'.["{key}"]'


def describe(change: dict) -> str:
    "One change as text: '.balance: 80.5 → 40.5', '.owner: + \"Ann\"', '.note: − \"x\"'."
    from ..log.envelope import dumps

    if "from" in change and "to" in change:
        return f"{change['path']}: {dumps(change['from'])} → {dumps(change['to'])}"
    if "to" in change:
        return f"{change['path']}: + {dumps(change['to'])}"
    return f"{change['path']}: − {dumps(change['from'])}"
