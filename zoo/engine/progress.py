"""Progress of long work (infer over a folder, calibrate, validate, bench): a bar with rate and time left on a terminal
(tqdm), plain lines when the output is a file or a pipe, where a redrawn bar would leave control characters.

    with Progress(len(paths), "infer", unit="img") as bar:
        bar.update(len(chunk), note=chunk[0].name)
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, description: str, unit: str = "it", stream=None, plain: bool | None = None,
                 every_s: float = 1.0):
        """`every_s`: plain lines at most this often (the first and the last update always print)."""
        self.total, self.description, self.unit, self.every_s = total, description, unit, every_s
        self.printed_at = None
        self.stream = stream if stream is not None else sys.stderr
        self.plain = plain if plain is not None else not _is_terminal(self.stream)
        self.done = 0
        self.started = time.perf_counter()
        self.bar = None
        if not self.plain:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, dynamic_ncols=True,
                            leave=True)

    def update(self, count: int = 1, note: str = "") -> None:
        self.done += count
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(count)
            return
        now = time.perf_counter()
        if self.printed_at is None or self.done >= self.total or now - self.printed_at >= self.every_s:
            self.printed_at = now
            print(self.line(note), file=self.stream, flush=True)

    def line(self, note: str = "") -> str:
        """`[done/total] description note: rate, time left` (what a plain output shows per update)."""
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        timing = f"{rate:.2f} {self.unit}/s, {left:.0f} s left" if rate > 0 else "starting"
        return f"[{self.done}/{self.total}] {self.description}{' ' + note if note else ''}: {timing}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
