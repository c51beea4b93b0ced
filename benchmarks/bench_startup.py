"""Start-up: how long an ``evt`` command takes when it has almost nothing to do.

    python benchmarks/bench_startup.py [--runs 15]

Shell scripts call evt once per event (``evt append`` in a loop) or once per question
(``evt read STREAM | jq …``), so the time to start counts as much as the work. Measured
here, alternating so that a busy moment hits each alike: the bare interpreter
(``python -c pass``, the floor no Python program goes under), ``evt append`` (its fast
path, which imports neither typer nor rich), ``evt read STREAM``, ``evt stats`` and
``evt streams`` (through typer), on a store of ten events. Printed: the median of each
and its start-up over the bare interpreter. Nothing here is a test: it prints and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "evt append": [sys.executable, "-m", "evt", "append", "s-1", "t.x", "-q"],
    "evt read STREAM": [sys.executable, "-m", "evt", "read", "s-1"],
    "evt stats": [sys.executable, "-m", "evt", "stats"],
    "evt streams": [sys.executable, "-m", "evt", "streams"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    from importlib.metadata import version

    from evt import NewEvent, Store

    folder = tempfile.mkdtemp(prefix="evt-bench-startup-")
    Store(os.path.join(folder, "events.db")).write([NewEvent("s-1", "t.x", {"i": i}) for i in range(10)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVT_")}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            began = time.perf_counter()
            subprocess.run(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - began)
    floor = statistics.median(times["python -c pass"])
    print(f"medians of {args.runs} runs each, alternating; typer {version('typer')}, Python {sys.version.split()[0]}\n")
    print(f"{'command':<18} {'median ms':>10} {'over python -c pass':>20}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:<18} {median * 1e3:>10.0f} {(median - floor) * 1e3:>17.0f} ms")


if __name__ == "__main__":
    main()
