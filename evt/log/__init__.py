"""The log: the lowest layer of evt, and the only one that knows the events table.

- ``store``: ``Store``, one SQLite file: append (positions, revisions, expected
  revisions, idempotent ids), read, follow, summaries;
- ``envelope``: ``Event`` and ``NewEvent``, ids and JSON encoding;
- ``cloudevents``: the envelope as a CloudEvent 1.0 and back (output, input, relays);
- ``filters``: ``Filter``, what a read selects, as one indexed SQL query;
- ``ndjson``: NDJSON batches, as ``evt read`` prints and ``evt append --ndjson`` takes;
- ``migrations``: the store's format, as ordered, named migrations;
- ``timestamps``: the canonical RFC 3339 form, and relative times;
- ``hooks``: what the store asks of a user's model (validation on append, upcasting on
  read), as a protocol the model implements: the log imports nothing above it;
- ``sqlite``: sqlite3's errors translated into evt's, in one place;
- ``files``: publishing a new SQLite file under its name, safely;
- ``trace``: the causal tree of a request (``evt trace``), by causation and correlation ids.

Nothing here imports the model, processing, relay, ops or CLI layers.
"""
