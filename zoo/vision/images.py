"""Finding and reading images: clear errors for a bad path, never an exception for one bad image."""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# A decoded image takes width x height x 3 bytes (and its decoder as much again): a 100 KB PNG can say 30000 x 30000
# and take gigabytes. So the size in an image's header is checked before it is decoded.
DEFAULT_MAX_PIXELS = 8192 * 8192
MAX_PIXELS_HELP = (f"refuse images of more pixels than this, read from their header before decoding (default "
                   f"{DEFAULT_MAX_PIXELS}: 8192 x 8192)")
HEADER_FORMATS = "JPEG, PNG, WebP, BMP, TIFF, GIF, PNM/PAM, PFM, Sun raster"


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


def try_read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
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
    return decode_image(data, max_pixels)


def decode_image(data: bytes | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS
                 ) -> tuple[np.ndarray | None, str | None]:
    """Encoded image bytes (a file's content, an upload) to (BGR uint8 (H, W, 3) image, None), or (None, reason).
    An image whose header says more than `max_pixels`, or whose size cannot be read from its header, is not
    decoded."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        return None, "empty image"
    reason = pixel_limit_reason(data, max_pixels)
    if reason is not None:
        return None, reason
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


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """The BGR uint8 image, or None for an unreadable one (the reason is logged as a warning); never raises."""
    image, reason = try_read_image(path, max_pixels)
    if image is None:
        log.warning("skipping %s: %s", path, reason)
    return image


def pixel_limit_reason(data: bytes | np.ndarray, max_pixels: int) -> str | None:
    """Why `data` must not be decoded: a header that does not give the size, or more than `max_pixels`
    (`over_pixel_limit`); None when it may be decoded."""
    size = image_size(data)
    if size is None:
        return f"not a decodable image (no image size in its header; formats: {HEADER_FORMATS})"
    kind, width, height = size
    if width <= 0 or height <= 0:
        return f"not a decodable image ({kind} header says {width} x {height} pixels)"
    return over_pixel_limit(size, max_pixels)


def over_pixel_limit(size: tuple[str, int, int] | None, max_pixels: int) -> str | None:
    """The reason an image of `size` (from `image_size`) is refused for its pixel count, or None."""
    if size is None or size[1] * size[2] <= max_pixels:
        return None
    kind, width, height = size
    return f"image too large: {kind} of {width} x {height} = {width * height} pixels, over the limit of " \
           f"{max_pixels} pixels"


def image_size(data: bytes | np.ndarray) -> tuple[str, int, int] | None:
    """(format, width, height) from the header of an encoded image, without decoding it; None when the format is
    not one of HEADER_FORMATS or its header is cut short. Each format is told by the magic bytes OpenCV's decoders
    check, so the size read here is that of the image OpenCV would decode."""
    array = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    view = memoryview(np.ascontiguousarray(array, dtype=np.uint8).reshape(-1))  # no copy: a header may be far in
    head = bytes(view[:64])
    try:
        for magic, reader in _READERS:
            if head.startswith(magic) if isinstance(magic, bytes) else magic(head):
                return reader(view)
    except (struct.error, ValueError, IndexError, KeyError):
        return None
    return None


def _png(h):
    if bytes(h[12:16]) != b"IHDR":
        raise ValueError("no IHDR")
    return ("PNG", *struct.unpack(">II", h[16:24]))


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(h):
    """The first start-of-frame marker's size, found by walking the marker segments."""
    pos = 2
    while True:
        while h[pos] == 0xFF and h[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if h[pos] != 0xFF:
            raise ValueError("not a marker")
        marker = h[pos + 1]
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if marker in _SOF:
            height, width = struct.unpack(">HH", h[pos + 5:pos + 9])
            return "JPEG", width, height
        if marker == 0xD9:
            raise ValueError("no frame")
        pos += 2 + struct.unpack(">H", h[pos + 2:pos + 4])[0]


def _webp(h):
    chunk = bytes(h[12:16])
    if chunk == b"VP8 ":
        if bytes(h[23:26]) != b"\x9d\x01\x2a":
            raise ValueError("no VP8 start code")
        width, height = struct.unpack("<HH", h[26:30])
        return "WebP", width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if h[20] != 0x2F:
            raise ValueError("no VP8L signature")
        bits = struct.unpack("<I", h[21:25])[0]
        return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width, height = (struct.unpack("<I", bytes(h[at:at + 3]) + b"\0")[0] + 1 for at in (24, 27))  # 24-bit
        return "WebP", width, height
    raise ValueError("unknown WebP chunk")


def _bmp(h):
    header_size = struct.unpack("<I", h[14:18])[0]
    if header_size == 12:
        return ("BMP", *struct.unpack("<HH", h[18:22]))
    width, height = struct.unpack("<ii", h[18:26])
    return "BMP", width, abs(height)  # a negative height is a top-down image


def _tiff(h):
    """ImageWidth (256) and ImageLength (257) of the first image file directory (the page OpenCV reads)."""
    order = "<" if bytes(h[:2]) == b"II" else ">"
    ifd = struct.unpack(order + "I", h[4:8])[0]
    count = struct.unpack(order + "H", h[ifd:ifd + 2])[0]
    found = {}
    for i in range(count):
        tag, kind, _, value = struct.unpack(order + "HHI4s", h[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2 if kind == 3 else 4])[0]
    return "TIFF", found[256], found[257]


def _gif(h):
    return ("GIF", *struct.unpack("<HH", h[6:10]))


def _tokens(h, count: int, start: int = 2) -> list[int]:
    """The first `count` numbers of a PNM/PFM text header (whitespace separated, # comments to the line end)."""
    text = re.sub(rb"#[^\n\r]*", b" ", bytes(h[start:start + 4096]))
    return [int(t) for t in text.split()[:count]]


def _pnm(h):
    width, height = _tokens(h, 2)
    return "PNM", width, height


def _pam(h):
    fields = dict(re.findall(rb"^(WIDTH|HEIGHT)\s+(\d+)", bytes(h[:4096]), re.M))
    return "PAM", int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])


def _pfm(h):
    width, height = _tokens(h, 2)
    return "PFM", width, height


def _sun(h):
    return ("Sun raster", *struct.unpack(">II", h[4:12]))


_READERS = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8\xff", _jpeg),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", _webp),
    (b"BM", _bmp),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"GIF87a", _gif),
    (b"GIF89a", _gif),
    (lambda h: len(h) > 2 and h[0:1] == b"P" and h[1:2] in b"123456" and h[2:3].isspace(), _pnm),
    (b"P7\n", _pam),
    (lambda h: h[:2] in (b"PF", b"Pf") and h[2:3].isspace(), _pfm),
    (b"\x59\xa6\x6a\x95", _sun),
)
