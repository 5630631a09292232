"""Image sizes read from headers (zoo.vision.images.image_size), held equal to what OpenCV decodes; the pixel limit
applied before decoding."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from zoo.vision.images import decode_image, image_size, try_read_image

FORMATS = (".png", ".jpg", ".webp", ".bmp", ".tiff", ".pgm", ".ppm", ".pbm", ".pfm", ".ras", ".pam", ".gif")


@pytest.mark.parametrize("ext", FORMATS)
def test_header_size_equals_the_decoded_size(ext):
    image = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    pixels = image[..., 0] if ext in (".pgm", ".pbm") else image.astype(np.float32) / 255 if ext == ".pfm" else image
    ok, encoded = cv2.imencode(ext, pixels)
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    kind, width, height = image_size(encoded.tobytes())
    assert (height, width) == decoded.shape[:2] == (37, 53)
    assert decode_image(encoded, max_pixels=37 * 53)[0].shape == (37, 53, 3)  # at the limit: decoded
    image, reason = decode_image(encoded, max_pixels=37 * 53 - 1)
    assert image is None and reason == (f"image too large: {kind} of 53 x 37 = 1961 pixels, over the limit of 1960 "
                                        f"pixels")


def test_jpeg_size_after_large_metadata_and_webp_lossless():
    image = np.full((20, 30, 3), 90, np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    app = b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)  # two 64 KiB segments before the frame header
    assert image_size(jpeg[:2] + app + app + jpeg[2:]) == ("JPEG", 30, 20)
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert image_size(lossless) == ("WebP", 30, 20)


def test_a_bomb_is_refused_without_being_decoded(tmp_path):
    """A PNG header of 30000 x 30000 (2.7 GB decoded): refused from the header in infer's reading path."""
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + \
        struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + bytes(100)
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    image, reason = try_read_image(path)
    assert image is None and reason.startswith("image too large: PNG of 30000 x 30000 = 900000000 pixels")


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"RIFF....WEBPVP8X", b"GIF89a",
                                  b"hello, not an image", b"P6\n", b"II*\x00\xff\xff\xff\x00", b"II*\x00\x08\x00\x00\x00\x00\x00",
                                  b"P7\nDEPTH 3\nENDHDR\n"])
def test_cut_or_unknown_headers_are_not_decoded(data):
    assert image_size(data) is None
    image, reason = decode_image(data)
    assert image is None and reason.startswith("not a decodable image (no image size in its header")
