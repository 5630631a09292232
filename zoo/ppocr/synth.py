"""Pages with known text: Chinese and English lines rendered onto the real photographs (zoo.assets), for tests,
calibration and the demo. Each line is drawn with a CJK font on a light plate, possibly tilted by a few degrees or
turned upside down, and pasted at a known place; the ground truth is its text and the four corners it covers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Debian's fonts-wqy-microhei (installed by `make setup`) first, then Noto CJK where a machine has it instead.
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def cjk_font_path() -> str:
    for path in CJK_FONTS:
        if Path(path).is_file():
            return path
    raise FileNotFoundError("no CJK font: install Debian's fonts-wqy-microhei (make setup does)")


def cjk_font_available() -> bool:
    return any(Path(path).is_file() for path in CJK_FONTS)


@dataclass(frozen=True)
class Line:
    text: str
    size: int = 32          # font size in pixels
    angle: float = 0.0      # degrees, counter-clockwise
    upside_down: bool = False


def _font(size: int):
    from PIL import ImageFont
    return ImageFont.truetype(cjk_font_path(), size)


def render_line(line: Line) -> np.ndarray:
    """RGBA image of one line of dark text on a light plate, turned by its angle (and 180 degrees if upside down)."""
    from PIL import Image, ImageDraw
    font = _font(line.size)
    left, top, right, bottom = font.getbbox(line.text)
    pad = max(4, line.size // 4)
    plate = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (245, 240, 225, 235))
    ImageDraw.Draw(plate).text((pad - left, pad - top), line.text, font=font, fill=(20, 20, 30, 255))
    turn = line.angle + (180.0 if line.upside_down else 0.0)
    if turn:
        plate = plate.rotate(turn, resample=Image.BICUBIC, expand=True)
    return np.asarray(plate)


def compose(photo_bgr: np.ndarray, lines: list[Line], origin=(20, 20), gap: int = 18):
    """The photo with `lines` pasted one under another from `origin`; returns (BGR image, ground truth), where each
    truth is {"text", "box": the pasted plate's corners, "upside_down"}. Lines that do not fit are left out."""
    image = photo_bgr.astype(np.float32).copy()
    height, width = image.shape[:2]
    x, y = origin
    truths = []
    for line in lines:
        rgba = render_line(line)
        h, w = rgba.shape[:2]
        if y + h > height or x + w > width:
            continue
        alpha = rgba[..., 3:4].astype(np.float32) / 255
        bgr = rgba[..., 2::-1].astype(np.float32)
        region = image[y:y + h, x:x + w]
        image[y:y + h, x:x + w] = region * (1 - alpha) + bgr * alpha
        truths.append({"text": line.text, "box": [[x, y], [x + w, y], [x + w, y + h], [x, y + h]],
                       "upside_down": line.upside_down})
        y += h + gap
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), truths


# The test scenes: (photo, lines). Several sizes, slight tilts, Chinese and English, one line upside down.
SCENES = (
    ("china", (Line("欢迎光临北京故宫博物院", 34), Line("Open daily 9:00 to 17:00", 26, 1.5),
               Line("请勿吸烟", 40, -2.0))),
    ("coffee", (Line("今日特价咖啡", 38), Line("Fresh coffee and tea", 28, -1.0),
                Line("营业时间早八点", 30, upside_down=True))),
    ("motorcycle_left", (Line("摩托车维修中心", 36, 1.0), Line("Parts and service", 30),
                         Line("电话12345678", 28))),
    ("rocket", (Line("航天发射中心", 40), Line("Launch window opens soon", 24, 2.0))),
    ("astronaut", (Line("宇航员训练基地", 32), Line("NASA space program", 26, -1.5))),
    ("flower", (Line("春季花卉展览", 36, -1.0), Line("Garden show", 32))),
)


def scene(index: int):
    """(name, BGR image, ground truth) of test scene `index`."""
    import cv2

    from zoo import assets
    photo_name, lines = SCENES[index]
    photo = cv2.imread(str(assets.asset_path(photo_name)), cv2.IMREAD_COLOR)
    image, truths = compose(photo, list(lines))
    return f"{photo_name}_text", image, truths


def write_scenes(folder: Path, indices) -> list[Path]:
    """Scenes as PNG files (e.g. calibration pages for `calibrate --images`)."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        name, image, _ = scene(i)
        paths.append(folder / f"{name}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


if __name__ == "__main__":  # python -m zoo.ppocr.synth FOLDER [FIRST LAST]: rendered scenes as PNG files
    import sys
    first, last = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, len(SCENES) - 1)
    for written in write_scenes(Path(sys.argv[1]), range(first, last + 1)):
        print(written)
