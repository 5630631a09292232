"""The tensorrtx ``.wts`` weight format: reader, writer and format errors (numpy only).

A ``.wts`` file is ASCII text::

    <N>
    <name> <count> <hex> <hex> ...        # N lines, one per state_dict entry, in state_dict order

where every ``<hex>`` is the IEEE-754 float32 bit pattern of one value as 8 hex digits, big-endian
(``struct.pack('>f', v).hex()``), and the values are the tensor flattened in C order. tensorrtx's writer emits
``"{name} {count} "`` and then ``" " + hex`` per value, so there are two spaces before the first value.

Reading is vectorised: the header of each line (name, count) is parsed in Python, but the values are never
touched one by one. Each line's values are gathered from the file buffer with a strided numpy view (8 hex
bytes every 9 bytes), all lines are decoded by a single ``binascii.unhexlify`` call, and the result is viewed
as big-endian float32. Lines that do not have the canonical single-space layout (tabs, runs of spaces) take a
slower but still per-line path through ``bytes.split``.
"""
from __future__ import annotations

import binascii
import os
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["WtsError", "load", "save", "STYLES", "max_weight_bytes", "LIMIT_VARIABLE"]

# "name count" at the start of a line, then the whitespace before the first value.
_HEADER = re.compile(rb"\s*(\S+)(?:\s+(\S+))?\s*")
_TRAILING_WS = b" \t\r\f\v"
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_BOM = b"\xef\xbb\xbf"

# style -> what follows "name count" on a line before the values, each of which is written as " " + 8 hex digits
STYLES = {"tensorrtx": b" ", "compact": b""}


def _cut(text: str, limit: int = 80) -> str:
    """Long values (a 1 MB key) are cut in messages."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


class WtsError(ValueError):
    """A malformed ``.wts`` file (or a tensor that cannot be written as one).

    The message names the file, the 1-based line number and the key where they are known; the same facts are
    kept as the attributes ``path``, ``line`` and ``key``.
    """

    def __init__(self, path: Any, message: str, *, line: int | None = None, key: str | None = None):
        self.path, self.line, self.key = os.fspath(path), line, key
        where = self.path if line is None else f"{self.path}:{line}"
        prefix = f"{where}: " if key is None else f"{where}: key {_cut(key)!r}: "
        super().__init__(prefix + message)


LIMIT_VARIABLE = "ZOO_MAX_WEIGHT_BYTES"
DEFAULT_MAX_BYTES = 4 << 30  # 1 G float32 values: several times the largest model of the zoo


def max_weight_bytes() -> int:
    """The most float32 bytes a weights file may make the process allocate: $ZOO_MAX_WEIGHT_BYTES, else 4 GiB."""
    text = os.environ.get(LIMIT_VARIABLE, "")
    try:
        return int(float(text)) if text.strip() else DEFAULT_MAX_BYTES
    except ValueError:
        raise ValueError(f"{LIMIT_VARIABLE}={text[:40]!r} is not a number of bytes") from None


def load(path: str | os.PathLike, allow_nonfinite: bool = False, max_bytes: int | None = None
         ) -> dict[str, np.ndarray]:
    """Read a ``.wts`` file into ``{name: flat float32 array}``, in file order.

    Raises :class:`WtsError` for any malformed content (nothing is returned partially). NaN and Inf values are
    an error unless ``allow_nonfinite`` is true. The declared value counts may add up to at most ``max_bytes`` of
    float32 (default: :func:`max_weight_bytes`); a count larger than its line can hold is refused before any
    memory is allocated for it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise WtsError(path, "no such file") from None
    except IsADirectoryError:
        raise WtsError(path, "is a directory, not a .wts file") from None
    except OSError as e:
        raise WtsError(path, f"cannot read: {e.strerror or e}") from None

    start = len(_BOM) if data.startswith(_BOM) else 0
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    first = data[start:end].strip()
    if not first:
        if not data.strip():
            raise WtsError(path, "empty file (expected the number of entries on line 1)")
        raise WtsError(path, "count line missing: line 1 must hold the number of entries", line=1)
    if not first.isdigit():
        raise WtsError(path, f"line 1 must hold the number of entries as a non-negative integer, "
                             f"got {_show(first)}", line=1)
    expected = int(first)

    limit = max_weight_bytes() if max_bytes is None else max_bytes
    total_values = 0
    line_of: dict[str, int] = {}   # name -> 1-based line number, in file order
    counts: list[int] = []
    chunks: list[np.ndarray] = []  # per entry: its hex digits as uint64 words of 8 ASCII bytes
    lineno, pos, size = 1, end + 1, len(data)
    while pos < size:
        lineno += 1
        end = data.find(b"\n", pos)
        end = size if end < 0 else end
        m = _HEADER.match(data, pos, end)
        if m is None:  # blank line
            pos = end + 1
            continue
        raw_name, raw_count = m.group(1), m.group(2)
        name = _decode_name(path, raw_name, lineno)
        if len(line_of) == expected:
            raise WtsError(path, f"more entries than the {expected} announced on line 1", line=lineno, key=name)
        if raw_count is None:
            raise WtsError(path, "line has fewer than 2 fields (expected: name count values...)",
                           line=lineno, key=name)
        if not raw_count.isdigit():
            raise WtsError(path, f"value count {_show(raw_count)} is not a non-negative integer",
                           line=lineno, key=name)
        if name in line_of:
            raise WtsError(path, f"duplicate key (first seen on line {line_of[name]})", line=lineno, key=name)
        count = int(raw_count)
        total_values += count
        if 4 * total_values > limit:
            raise WtsError(path, f"declares {total_values} values so far ({4 * total_values / 2**30:.1f} GiB), over "
                                 f"the limit of {limit / 2**30:.1f} GiB (set {LIMIT_VARIABLE} to raise it)",
                           line=lineno, key=name)
        vstart, vend = m.end(), end
        while vend > vstart and data[vend - 1] in _TRAILING_WS:
            vend -= 1
        chunks.append(_hex_words(path, data, vstart, vend, count, lineno, name))
        line_of[name] = lineno
        counts.append(count)
        pos = end + 1
    if len(line_of) != expected:
        raise WtsError(path, f"line 1 announces {expected} entries but the file holds {len(line_of)}",
                       line=lineno)
    names, lines = list(line_of), list(line_of.values())

    hexdigits = np.concatenate(chunks) if chunks else np.empty(0, np.uint64)
    try:
        raw = binascii.unhexlify(hexdigits)
    except (binascii.Error, ValueError):
        raise _bad_hex_error(path, chunks, names, lines) from None
    # byte-swap as integers so that every bit pattern (NaN payloads included) is kept exactly
    values = np.frombuffer(raw, ">u4").astype(np.uint32).view(np.float32)

    offsets = np.cumsum([0] + counts)
    if not allow_nonfinite:
        finite = np.isfinite(values)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            first_bad = int(bad[0])
            i = int(np.searchsorted(offsets, first_bad, side="right")) - 1
            index = first_bad - int(offsets[i])
            raise WtsError(path, f"value at index {index} is {values[first_bad]} ({bad.size} non-finite "
                                 f"value(s) in the file; pass allow_nonfinite=True to accept them)",
                           line=lines[i], key=names[i])
    return {name: values[offsets[i]:offsets[i + 1]] for i, name in enumerate(names)}


def _hex_words(path, data: bytes, vstart: int, vend: int, count: int, lineno: int, name: str) -> np.ndarray:
    """The hex digits of one line as uint64 words (8 ASCII bytes each), after checking the token layout."""
    if count == 0:
        if vend > vstart:
            raise WtsError(path, "value count 0 does not match the values on the line", line=lineno, key=name)
        return np.empty(0, np.uint64)
    # Canonical layout: exactly `count` tokens of 8 characters separated by single spaces. The hex digits are
    # then 8 bytes every 9 bytes, which a strided view gathers without touching them in Python.
    if vend - vstart == 9 * count - 1 and data[vstart + 8:vend:9] == b" " * (count - 1):
        return np.ndarray((count,), np.uint64, data, vstart, (9,))
    # Any other layout (tabs, runs of spaces): tokens are counted before any is materialised, then split a
    # bounded window at a time, so a line of 50 M tokens costs its 8 hex bytes per value and no more.
    found = _count_tokens(data, vstart, vend)
    if found != count:
        raise WtsError(path, f"value count {count} does not match the {found} values on the line",
                       line=lineno, key=name)
    digits = bytearray(8 * count)
    done = 0
    for window in _windows(data, vstart, vend):
        tokens = window.split()
        for i, tok in enumerate(tokens):
            if len(tok) != 8:
                raise WtsError(path, f"value {done + i} {_show(tok)} is not exactly 8 hex digits", line=lineno,
                               key=name)
        digits[8 * done:8 * (done + len(tokens))] = b"".join(tokens)
        done += len(tokens)
    return np.frombuffer(digits, np.uint64)


_WINDOW = 1 << 18  # bytes of a line split at once: its tokens as Python bytes take about 5x this


def _windows(data: bytes, start: int, end: int):
    """Slices of data[start:end] of about _WINDOW bytes, each ending on whitespace (so no token is cut)."""
    while start < end:
        stop = min(end, start + _WINDOW)
        while stop < end and not data[stop:stop + 1].isspace():
            stop += 1
        yield data[start:stop]
        start = stop


def _count_tokens(data: bytes, start: int, end: int) -> int:
    """Whitespace-separated tokens in data[start:end], counted with numpy a window at a time (nothing split)."""
    count = 0
    for window in _windows(data, start, end):
        chars = np.frombuffer(window, np.uint8)
        space = (chars == 32) | ((chars >= 9) & (chars <= 13))
        count += int(np.count_nonzero(~space[1:] & space[:-1])) + int(window[:1] != b"" and not space[0])
    return count


def _bad_hex_error(path, chunks, names, lines) -> WtsError:
    """The error for the first token that unhexlify rejected (only called once decoding has failed)."""
    for chunk, name, lineno in zip(chunks, names, lines):
        digits = chunk.tobytes()
        if set(digits) <= _HEX_DIGITS:
            continue
        for i in range(len(digits) // 8):
            tok = digits[8 * i:8 * i + 8]
            if not set(tok) <= _HEX_DIGITS:
                return WtsError(path, f"value {i} {_show(tok)} is not exactly 8 hex digits", line=lineno, key=name)
    return WtsError(path, "hex values could not be decoded")


def _decode_name(path, raw: bytes, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WtsError(path, f"key {_show(raw)} is not valid UTF-8", line=lineno) from None


def _show(token: bytes, limit: int = 40) -> str:
    text = token[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(token) > limit else ""))


def _as_float32(path, name: str, value: Any) -> np.ndarray:
    """A numpy array or torch tensor (duck-typed) as a flat, C-ordered, big-endian float32 array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if getattr(value, "is_complex", lambda: False)():
            raise WtsError(path, "complex tensors cannot be written to .wts", key=name)
        value = value.float().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise WtsError(path, f"cannot write dtype {arr.dtype} to .wts (needs a real numeric type)", key=name)
    return arr.astype(">f4", copy=False).ravel(order="C")


def save(path: str | os.PathLike, tensors: Mapping[str, Any], style: str = "tensorrtx",
         progress: Callable[[int, int], None] | None = None) -> int:
    """Write ``tensors`` (name -> numpy array or torch tensor) to ``path`` as ``.wts``; return the bytes written.

    Every tensor is converted to float32 (integers such as ``num_batches_tracked`` too) and flattened in C order.
    ``style="tensorrtx"`` reproduces tensorrtx's ``gen_wts.py`` byte for byte (two spaces before the first
    value); ``style="compact"`` uses single spaces. The file is written to a temporary file in the same folder
    and renamed over ``path`` at the end, so a failed write never leaves a partial file. ``progress``, if given,
    is called as ``progress(values_written, values_total)`` after each entry.
    """
    if style not in STYLES:
        raise ValueError(f"unknown .wts style {style!r} (expected one of {', '.join(STYLES)})")
    after_count = STYLES[style]
    for name in tensors:
        if not isinstance(name, str) or name.split() != [name]:
            raise WtsError(path, "key must be a non-empty string without whitespace", key=str(name))
    total = sum(int(np.prod(getattr(t, "shape", ()), dtype=np.int64)) for t in tensors.values())

    folder = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(folder, os.path.basename(path))
    tmp = os.path.join(folder, _temporary_name(os.path.basename(path)))
    written = done = 0
    try:
        with open(tmp, "xb") as f:  # 'x': created with the usual permissions (umask), never clobbering
            written += f.write(b"%d\n" % len(tensors))
            for name, value in tensors.items():
                flat = _as_float32(path, name, value)
                # each value as " " + 8 hex digits: hexlify all, then interleave a space column
                cells = np.empty((flat.size, 9), np.uint8)
                cells[:, 0] = ord(" ")
                cells[:, 1:] = np.frombuffer(binascii.hexlify(flat.tobytes()), np.uint8).reshape(-1, 8)
                head = b"%s %d%s" % (name.encode("utf-8"), flat.size, after_count)
                written += f.write(head) + f.write(cells.tobytes()) + f.write(b"\n")
                done += flat.size
                if progress is not None:
                    progress(done, max(total, done))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return written


# Temporaries have the name zoo.engine.files gives them (this package keeps its own copy: it imports only numpy):
# ".<name>.zoo-tmp-<12 hex><ext>". A writer killed by SIGKILL leaves one; the next write of the same file removes it.
_TEMP_MARK = ".zoo-tmp-"


def _temporary_name(name: str) -> str:
    return f".{name}{_TEMP_MARK}{uuid.uuid4().hex[:12]}{os.path.splitext(name)[1]}"


def _remove_stale_temporaries(folder: str, name: str) -> None:
    prefix, suffix = f".{name}{_TEMP_MARK}", os.path.splitext(name)[1]
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(suffix) and len(entry) == len(prefix) + 12 + len(suffix):
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass
