"""Finding and reading images: clear errors for a bad path, never an exception for one bad image."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageSourceError(ValueError):
    """A path that does not name an image or a folder with images."""


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(path: str | Path, recursive: bool = False) -> list[Path]:
    """The image files named by ``path``: the file itself, or the images in the folder (sorted by name).

    Raises ImageSourceError for a missing path, a file that is not an image, or a folder without images.
    """
    p = Path(path)
    exts = "/".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    if not p.exists():
        raise ImageSourceError(f"{p}: no such file or folder")
    if p.is_file():
        if not is_image_path(p):
            raise ImageSourceError(f"{p}: not an image file (extensions: {exts})")
        return [p]
    if not p.is_dir():
        raise ImageSourceError(f"{p}: neither a file nor a folder")
    # Everything with an image name that is not a folder: a dangling link or a link loop is listed too, so that
    # reading it reports it like any unreadable image instead of dropping it without a word.
    files = sorted(f for f in (p.rglob("*") if recursive else p.iterdir()) if is_image_path(f) and not f.is_dir())
    if not files:
        raise ImageSourceError(f"{p}: folder has no images ({exts})")
    return files


def try_read_image(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """(BGR uint8 (H, W, 3) image, None), or (None, reason) when the file cannot be read or decoded."""
    p = Path(path)
    try:
        data = np.fromfile(str(p), dtype=np.uint8)  # imdecode also copes with non-ASCII paths
    except FileNotFoundError:
        return None, "dangling link (its target does not exist)" if p.is_symlink() else "no such file"
    except IsADirectoryError:
        return None, "is a folder"
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if data.size == 0:
        return None, "empty file"
    return decode_image(data)


def decode_image(data: bytes | np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Encoded image bytes (a file's content, an upload) to (BGR uint8 (H, W, 3) image, None), or (None, reason)."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        return None, "empty image"
    try:
        image = cv2.imdecode(_without_color_profile(data), cv2.IMREAD_COLOR)
    except cv2.error as e:
        return None, f"cannot decode: {str(e).strip().splitlines()[-1]}"
    if image is None or image.size == 0:
        return None, "not a decodable image (corrupt or unsupported format)"
    return image, None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _without_color_profile(data: np.ndarray) -> np.ndarray:
    """A PNG without its iCCP chunks. OpenCV ignores colour profiles, but libpng checks them and prints warnings
    that mean nothing to a user ("iCCP: invalid rendering intent", "known incorrect sRGB profile") straight to the
    terminal; the pixels are the same without the chunk. Anything that is not a well-formed PNG is left alone."""
    raw = data.tobytes() if data[:8].tobytes() == _PNG_SIGNATURE else None
    if raw is None or b"iCCP" not in raw:
        return data
    kept, position = [raw[:8]], 8
    while position + 12 <= len(raw):
        length = int.from_bytes(raw[position:position + 4], "big")
        end = position + 12 + length
        if end > len(raw):
            return data
        if raw[position + 4:position + 8] != b"iCCP":
            kept.append(raw[position:end])
        position = end
    return np.frombuffer(b"".join(kept) + raw[position:], np.uint8)


def read_image(path: str | Path) -> np.ndarray | None:
    """The BGR uint8 image, or None for an unreadable one (the reason is logged as a warning); never raises."""
    image, reason = try_read_image(path)
    if image is None:
        log.warning("skipping %s: %s", path, reason)
    return image
