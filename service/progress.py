"""A progress line on stderr for long CLI commands: redrawn in place on a terminal, a line every
few seconds otherwise (so CI logs and pipes stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, label: str, *, total: int | None = None, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.started = self.last = time.monotonic()
        self.done = 0
        self.is_tty = self.stream.isatty()

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < (0.2 if self.is_tty else 5.0):
            return
        self.last = now
        self._draw(note, end="\r" if self.is_tty else "\n")

    def finish(self, note: str = "") -> None:
        self._draw(note, end="\n")

    def _draw(self, note: str, *, end: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.total:,} {share:4.0%}"
        else:
            bar = f"{self.done:,}"
        line = f"{self.label} {bar} {self.done / elapsed:,.0f}/s {note}".rstrip()
        self.stream.write(f"\x1b[2K{line}{end}" if self.is_tty else f"{line}{end}")
        self.stream.flush()
