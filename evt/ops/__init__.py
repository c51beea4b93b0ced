"""Whole-store operations: work on the store file as a whole, beside the relay.

- ``upcast``: the checked migration of stored events to their latest versions
  (``evt upcast status`` and ``evt upcast run``), into a copy or in place;
- ``dependents``: what depends on erased events (snapshots, projections, consumers).
"""
