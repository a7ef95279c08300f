"""py-spy on a server process during chosen phases, and a breakdown of where its CPU went.

``pip install -e '.[bench]'`` into the venv first. Sampling is in ``--gil`` mode: only the thread that
holds the GIL is sampled, so a thread waiting on the database or on the event loop's epoll (which
release the GIL) is not counted, and the samples approximate the process's Python CPU. C code that
releases the GIL (parts of numpy, shapely, pyproj, libpq) is missed: compare the samples' seconds
with the CPU time read from /proc to see how much.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# One rule: a category and the frame substrings a stack must all contain to fall in it. Rules are
# tried in order, so put the most specific first. A pattern starting with "^" must be the leaf.
Rule = tuple[str, Sequence[str]]

_LINE_NO = re.compile(r":\d+\)")


@dataclass
class Profiler:
    """Record the server with py-spy while inside ``recording(phase)``, if enabled."""

    enabled: bool
    out_dir: Path
    prefix: str
    rate: int = 200
    pid: int | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @contextlib.contextmanager
    def recording(self, phase: str) -> Iterator[None]:
        if not self.enabled or self.pid is None:
            yield
            return
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():
            raise RuntimeError("py-spy is not installed in this venv: pip install -e '.[bench]'")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{self.prefix}-{phase}.collapsed"
        process = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(self.pid), "--rate", str(self.rate), "--gil",
             "--threads", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1.0)  # let it attach before the clock starts
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            try:
                _, err = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                _, err = process.communicate()
            if not out.exists():
                print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
            else:
                self.files[phase] = out


def read_collapsed(path: Path) -> list[tuple[list[str], int]]:
    """(frames from the root to the leaf, without line numbers and thread; sample count)."""
    stacks = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = [_LINE_NO.sub(")", f) for f in stack.split(";")]
        if frames and frames[0].startswith("thread ("):
            frames = frames[1:]
        stacks.append((frames, int(count)))
    return stacks


def categorise(path: Path, rules: Sequence[Rule]) -> tuple[Counter[str], int]:
    """Samples per category (the first rule a stack matches; "other" if none) and the total."""
    counts: Counter[str] = Counter()
    total = 0
    for frames, count in read_collapsed(path):
        total += count
        counts[_first_match(frames, rules)] += count
    return counts, total


def _first_match(frames: list[str], rules: Sequence[Rule]) -> str:
    for name, patterns in rules:
        if all(_matches(frames, p) for p in patterns):
            return name
    return "other"


def _matches(frames: list[str], pattern: str) -> bool:
    if pattern.startswith("^"):
        return bool(frames) and frames[-1].startswith(pattern[1:])
    return any(pattern in f for f in frames)


def breakdown(
    path: Path, rules: Sequence[Rule], *, rate: int, items: int, cpu_us_per_item: float | None
) -> dict[str, object]:
    """Each category's share of the samples and its sampled CPU in µs per item (samples / rate /
    items), next to the CPU per item measured from /proc: the gap is CPU the samples cannot see
    (GIL released) plus sampling error."""
    counts, total = categorise(path, rules)
    rows = [
        {
            "category": name,
            "samples": n,
            "share": round(n / total, 3),
            "us_per_item": round(n / rate / items * 1e6, 1),
        }
        for name, n in counts.most_common()
    ]
    return {
        "file": str(path),
        "samples": total,
        "sampled_us_per_item": round(total / rate / items * 1e6, 1),
        "measured_us_per_item": cpu_us_per_item,
        "categories": rows,
    }
