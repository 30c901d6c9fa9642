"""A wall-clock stack sampler over every thread of this process, for ``--profile`` of the steady scenario.

cProfile follows one thread and counts CPU-bound Python, not time spent waiting on Azurite or a stand-in; the
steady run's missing seconds were neither in its ledger queries nor its parses, so this samples where every busy
thread *is*, waiting included: thread-seconds by the innermost project frame and by the project call chain.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
PROJECT_DIRS = ("shared/", "PullMetrics/", "WebinarStatus/")


def _label(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    if path.startswith(str(ROOT)):
        path = path[len(str(ROOT)) + 1:]
    elif "/site-packages/" in path:
        path = path.split("/site-packages/", 1)[1]
    return f"{path}:{frame.f_code.co_name}"


def _ours(label: str) -> bool:
    return label.startswith(PROJECT_DIRS) and not label.startswith("shared/store/")


class StackSampler:
    """Samples ``sys._current_frames()`` every ``interval`` seconds while running; ignores idle threads."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.leaf_in_project: Counter[str] = Counter()
        self.chains: Counter[str] = Counter()
        self.leaves: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)
        self.wall = 0.0

    def __enter__(self) -> StackSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._started

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack: list[str] = []
                walk: FrameType | None = frame
                while walk is not None:
                    stack.append(_label(walk))
                    walk = walk.f_back
                project = [label for label in stack if label.startswith(PROJECT_DIRS)]
                if not project:
                    continue  # an idle pool worker or a server thread of this process
                self.leaves[stack[0]] += 1
                ours = [label for label in stack if _ours(label)]
                self.leaf_in_project[(ours or project)[0]] += 1
                self.chains[" < ".join((ours or project)[:4])] += 1

    def report(self, top: int = 15) -> list[str]:
        seconds = self.interval
        lines = [f"  wall-clock samples over {self.wall:.1f} s, every {self.interval * 1000:.0f} ms, busy threads "
                 f"only (thread-seconds; a thread waiting on Azurite or a stand-in counts as busy):"]
        for title, counter in (("innermost project frame", self.leaf_in_project), ("innermost frame", self.leaves),
                               ("project call chain (innermost first)", self.chains)):  # fmt: skip
            lines.append(f"  by {title}, top {top}:")
            for label, n in counter.most_common(top):
                lines.append(f"    {n * seconds:7.2f} s  {label[:150]}")
        return lines


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Azurite), from /proc; 0.0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
