"""Writing files so that nothing is ever half-written, and no output ever replaces an input.

- `atomic_path` / `write_bytes_atomic` / `write_text_atomic`: a temporary file in the output's own folder, renamed
  into place when the write succeeded, removed when it failed. Temporaries have one recognisable name,
  `.<name>.zoo-tmp-<12 hex><suffix>` (`TEMP_PATTERN`); a process killed mid-write (SIGKILL) leaves one behind, and
  the next run that writes the same output removes it. (`wts/` writes the same pattern: it is a standalone numpy
  package and keeps its own copy.)
- `refuse_overwrite(outputs, inputs)`: the guard every command calls before writing: an output that resolves (links
  followed) to one of its inputs, or lies inside an input folder it would write over, is a one-line error.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

TEMP_MARK = ".zoo-tmp-"
TEMP_PATTERN = f".{{name}}{TEMP_MARK}<12 hex digits>{{suffix}}"


class OutputOverwritesInput(ValueError):
    """An output path that is one of the command's inputs."""


def temporary_name(path: Path) -> Path:
    """The temporary beside `path` (same extension, for writers such as cv2.imwrite that look at it)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:12]}{path.suffix}")


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporaries that earlier writes of `path` left behind (killed before they could rename or remove them)."""
    path = Path(path)
    prefix = f".{path.name}{TEMP_MARK}"
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.name.startswith(prefix) and p.name.endswith(path.suffix)
            and len(p.name) == len(prefix) + 12 + len(path.suffix)]


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    for p in stale_temporaries(path):
        try:
            p.unlink()
        except OSError:  # another process's write in progress, or not ours to remove: leave it
            pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` on success, remove it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, *chunks: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "xb") as f:  # 'x': the usual permissions (umask), unlike mkstemp
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# outputs never replace inputs


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` name the same file: same path after following links, or the same inode."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwrite(outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None]
                     ) -> None:
    """Raise OutputOverwritesInput when an output (a file, or a folder whose files get written) is an input.

    `outputs` and `inputs` map the flag that named a path (e.g. "--output", "--weights") to the path, or None when
    the flag was not given. An output file may not be an input file; an output folder may not be an input file
    either, and a file written into it is checked by `refuse_write_over` when its name is known.
    """
    for out_flag, out in outputs.items():
        if out is None:
            continue
        for in_flag, source in inputs.items():
            if source is not None and same_file(out, source):
                raise OutputOverwritesInput(f"{out_flag} {out} is the same file as {in_flag} {source}: refusing to "
                                            f"write over an input; choose another output path")


def refuse_write_over(path: str | os.PathLike, inputs: Iterable[str | os.PathLike], flag: str = "--out") -> None:
    """For outputs named after inputs (annotated images): refuse `path` when it is one of `inputs`."""
    for source in inputs:
        if same_file(path, source):
            raise OutputOverwritesInput(f"{flag}: writing {path} would replace the input image {source}; choose an "
                                        f"--out folder other than the source folder")
