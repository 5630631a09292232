"""How a command reports: `UserError` (one line on stderr, exit code 2), `say` (progress on stderr), `cut` (long
values shortened in messages)."""
from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cut(text: str, limit: int = 200) -> str:
    """Long values (a 1 MB key, a huge flag value) are cut in messages."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"
