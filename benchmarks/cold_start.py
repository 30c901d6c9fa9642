"""Benchmark of cold start: the import time of each function module, as ``python -X importtime`` reports it.

What it measures
    For every function folder (a directory with a ``function.json``), ``--runs`` fresh interpreters each run
    ``python -X importtime -c "import <Folder>"``; the figure is the median of the cumulative time of that
    import, in two views:

    * **total**: from an empty interpreter, ``azure.functions`` and everything else included;
    * **beyond the worker**: with ``azure.functions`` imported first, as the Python worker has done before it
      loads a function (the worker imports the library to build the trigger objects), so this is the part a
      cold start adds for our code.

    It also lists the heaviest third-party packages the total pulls in (median self time summed per top-level
    package), to show where a deferral would help. Importing builds no clients and reads no settings: that
    happens on the first invocation (``shared.app.get_app``).

How to run (from the repository root, after ``bash scripts/bootstrap.sh``):

    .venv/bin/python -m benchmarks.cold_start [--runs 7]

Exit status: 0 (targets are reported, not enforced, unless ``--strict``: then 3 on a miss).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence

from benchmarks.common import ROOT

TARGET_MS = 400.0


def function_modules() -> list[str]:
    return sorted(p.parent.name for p in ROOT.glob("*/function.json"))


def import_times(statement: str, module: str) -> tuple[float, dict[str, float]]:
    """(cumulative ms of ``module``'s import, self ms per top-level package) for one fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    total = 0.0
    per_package: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        if not own.strip().isdigit():
            continue  # the header line
        per_package[name.strip().split(".")[0]] += int(own) / 1000
        if name.strip() == module:
            total = int(cumulative) / 1000
    return total, per_package


def measure(module: str, runs: int) -> tuple[float, float, dict[str, float]]:
    totals, beyond, packages = [], [], defaultdict(list)
    for _ in range(runs):
        total, per_package = import_times(f"import {module}", module)
        totals.append(total)
        for name, ms in per_package.items():
            packages[name].append(ms)
        beyond.append(import_times(f"import azure.functions; import {module}", module)[0])
    heavy = {name: statistics.median(values) for name, values in packages.items()}
    return statistics.median(totals), statistics.median(beyond), heavy


def mark(ms: float) -> str:
    return "[PASS]" if ms <= TARGET_MS else "[FAIL]"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per module and view (7)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    modules = function_modules()
    print(f"cold start: import time of each function module, median of {args.runs} fresh interpreters "
          f"(Python {sys.version.split()[0]})\n")
    print(f"{'function module':22s} {'total ms':>9s}        {'beyond the worker ms':>21s}")
    print("-" * 64)
    missed = False
    packages: dict[str, list[float]] = defaultdict(list)
    for module in modules:
        total, beyond, heavy = measure(module, args.runs)
        missed |= beyond > TARGET_MS
        for name, ms in heavy.items():
            packages[name].append(ms)
        print(f"{module:22s} {total:9.0f} {mark(total):6s} {beyond:21.0f} {mark(beyond)}")
    print(f"\n[PASS]/[FAIL]: at most {TARGET_MS:.0f} ms. The worker has imported azure.functions (~100 ms) before it"
          " loads a function, so\n'beyond the worker' is what -X importtime reports for the module in a real worker"
          " (the target); 'total' is\nfrom an empty interpreter. Dev tools in .venv add click (~15 ms, via httpx's"
          " CLI), which the deployed app lacks.")
    print("\nheaviest packages imported (median self time, ms, over the modules):")
    ranked = sorted(((statistics.median(v), k) for k, v in packages.items()), reverse=True)[:10]
    for ms, name in ranked:
        print(f"  {name:28s} {ms:6.0f}")
    return 3 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
