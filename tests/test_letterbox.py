"""Letterbox pre-processing against an independent implementation of the sheet's rules; box rescaling; image files."""

import logging

import cv2
import numpy as np
import pytest
import torch

from zoo.vision.coco import COCO_NAMES
from zoo.vision.draw import class_color, draw_detections
from zoo.vision.images import ImageSourceError, list_images, read_image, try_read_image
from zoo.vision.letterbox import (LetterboxParams, clip_boxes, letterbox, letterbox_params, preprocess, scale_boxes,
                                  to_input_tensor)


def sheet_letterbox(im, new_hw=(640, 640), auto=False, scaleup=True, stride=32):
    """docs/yolov5.md (pre-processing), transcribed independently (pixel loops for the padding)."""
    h, w = im.shape[:2]
    H, W = new_hw
    r = min(H / h, W / w)
    if not scaleup:
        r = min(r, 1.0)
    uw, uh = int(round(w * r)), int(round(h * r))
    uw, uh = max(uw, 1), max(uh, 1)  # the zoo's one deviation: upstream's cv2.resize fails on a 0-pixel side
    dw, dh = W - uw, H - uh
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    resized = im if (uw, uh) == (w, h) else cv2.resize(im, (uw, uh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = np.full((top + uh + bottom, left + uw + right, 3), 114, dtype=np.uint8)
    out[top:top + uh, left:left + uw] = resized
    return out, (r, r), (dw, dh), (top, bottom, left, right)


SIZES = [(480, 640), (640, 480), (640, 640), (1080, 1920), (720, 1280), (333, 517), (517, 333), (17, 23),
         (1, 1), (1, 640), (640, 1), (123, 4567), (641, 639), (639, 641), (100, 101), (101, 100), (3, 7), (5000, 20),
         (427, 640), (375, 500), (612, 612), (299, 300), (320, 640)]
TARGETS = [(640, 640), (320, 320), (384, 640), (640, 384), (256, 320)]


def random_image(h, w, seed=0):
    return np.random.default_rng(seed + h * 7919 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("target", TARGETS)
def test_letterbox_matches_independent_implementation(target):
    for k, (h, w) in enumerate(SIZES):
        im = random_image(h, w)
        for auto, scaleup in [(False, True), (True, True), (False, False), (True, False)]:
            got, ratio, pad = letterbox(im, target, auto=auto, scaleup=scaleup)
            want, want_ratio, want_pad, (top, bottom, left, right) = sheet_letterbox(im, target, auto, scaleup)
            assert got.shape == want.shape and got.dtype == np.uint8, (h, w, target, auto, scaleup)
            np.testing.assert_array_equal(got, want)
            assert ratio == want_ratio and pad == want_pad
            p = letterbox_params((h, w), target, auto=auto, scaleup=scaleup)
            assert (p.pad_top, p.pad_bottom, p.pad_left, p.pad_right) == (top, bottom, left, right)
            assert (p.out_h, p.out_w) == got.shape[:2]
            if not auto:
                assert got.shape[:2] == target
            else:
                assert (got.shape[0] - p.new_h) < 32 and (got.shape[1] - p.new_w) < 32


def test_odd_padding_puts_the_extra_pixel_bottom_right():
    p = letterbox_params((100, 99), (640, 640))  # r = 6.4: w -> round(633.6) = 634, 6 columns = 3 + 3
    assert (p.new_w, p.new_h, p.pad_left, p.pad_right, p.pad_top, p.pad_bottom) == (634, 640, 3, 3, 0, 0)
    p = letterbox_params((333, 517), (640, 640))  # r = 640/517: h -> round(412.23) = 412, 228 = 114 + 114
    assert (p.new_h, p.pad_top, p.pad_bottom) == (412, 114, 114)
    p = letterbox_params((335, 517), (640, 640))  # h -> round(414.70) = 415, 225 = 112 + 113
    assert (p.new_h, p.pad_top, p.pad_bottom) == (415, 112, 113)
    p = letterbox_params((517, 335), (640, 640))  # the same, transposed: 112 left + 113 right
    assert (p.new_w, p.pad_left, p.pad_right) == (415, 112, 113)
    img = np.full((335, 517, 3), 7, np.uint8)
    out, _, (dw, dh) = letterbox(img)
    assert dh == 112.5 and dw == 0.0
    assert (out[:112] == 114).all() and (out[112:527] == 7).all() and (out[527:] == 114).all()
    assert out[527:].shape[0] == 113


def test_already_square_is_not_resized():
    im = random_image(640, 640)
    out, ratio, pad = letterbox(im)
    assert out is not im and np.array_equal(out, im) and ratio == (1.0, 1.0) and pad == (0.0, 0.0)


def test_to_input_tensor_layout_and_values():
    images = [random_image(480, 640, 1), random_image(300, 200, 2), random_image(640, 640, 3)]
    x, params = preprocess(images, 320)
    assert x.shape == (3, 3, 320, 320) and x.dtype == np.float32 and x.flags.c_contiguous
    for b, im in enumerate(images):
        padded = sheet_letterbox(im, (320, 320))[0]
        want = padded[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(x[b], want)
        # the same values as upstream's torch path: from_numpy(CHW RGB).float() / 255
        t = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)[::-1])).float() / 255
        assert torch.equal(torch.from_numpy(x[b]), t)
        assert params[b] == letterbox_params(im.shape[:2], (320, 320))
    assert x[0, 0, 0, 0] == np.float32(114 / 255)  # padding row of the 480x640 image
    np.testing.assert_array_equal(to_input_tensor(images[0], (256, 320)), preprocess([images[0]], (256, 320))[0])
    assert to_input_tensor(np.stack([images[2], images[2]]), 640).shape == (2, 3, 640, 640)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match=r"expected a BGR uint8 image of shape \(H, W, 3\), got a float32 array"):
        to_input_tensor([np.zeros((10, 10, 3), np.float32)], 64)
    with pytest.raises(ValueError, match=r"got a uint8 array of shape \(10, 10\)"):
        to_input_tensor([np.zeros((10, 10), np.uint8)], 64)
    with pytest.raises(ValueError, match="image size must be positive"):
        letterbox_params((0, 10), 64)


def forward_map(boxes, p: LetterboxParams):
    """Original-image xyxy -> letterboxed-input xyxy (the inverse of scale_boxes)."""
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * p.scale + p.dw
    out[:, [1, 3]] = out[:, [1, 3]] * p.scale + p.dh
    return out


@pytest.mark.parametrize("h,w", [(480, 640), (1080, 1920), (333, 517), (17, 23), (640, 640), (1000, 100)])
def test_scale_boxes_round_trip(h, w):
    rng = np.random.default_rng(h + w)
    xy = rng.uniform(0, 1, (50, 2)) * (w, h)
    wh = rng.uniform(0, 1, (50, 2)) * (np.array([w, h]) - xy)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    for size in [(640, 640), (320, 320), (384, 640)]:
        p = letterbox_params((h, w), size)
        net = forward_map(boxes, p).astype(np.float32)
        # re-derived gain and padding, as upstream: it ignores the rounding of the resized size, so it is off by
        # up to half an input pixel (a quarter for the padding, a quarter for the scale)
        back = scale_boxes(net, size, (h, w))
        np.testing.assert_allclose(back, boxes, atol=0.5 / p.scale + 1e-3, rtol=0)
        back2 = scale_boxes(net, size, (h, w), ratio_pad=p)  # exact letterbox parameters
        np.testing.assert_allclose(back2, boxes, atol=1e-3 * max(1, max(h, w) / min(size)), rtol=1e-5)
        tback = scale_boxes(torch.from_numpy(net), size, (h, w), ratio_pad=p)
        np.testing.assert_allclose(tback.numpy(), back2, rtol=1e-6, atol=1e-4)
    # scaleup=False: only ratio_pad knows the real geometry
    p = letterbox_params((h, w), (1280, 1280), scaleup=False)
    net = forward_map(boxes, p).astype(np.float32)
    np.testing.assert_allclose(scale_boxes(net, (1280, 1280), (h, w), ratio_pad=p.ratio_pad), boxes, atol=1e-3,
                               rtol=1e-5)


def test_scale_boxes_clips_and_keeps_extra_columns():
    dets = np.array([[-20, -10, 700, 700, 0.9, 3], [10, 90, 20, 100, 0.5, 1]], np.float32)
    out = scale_boxes(dets, (640, 640), (480, 640))  # pad 80 rows top and bottom, gain 1
    np.testing.assert_array_equal(out, np.array([[0, 0, 640, 480, 0.9, 3], [10, 10, 20, 20, 0.5, 1]], np.float32))
    assert dets[0, 0] == -20  # input untouched
    t = clip_boxes(torch.tensor([[-1.0, -2.0, 50.0, 60.0]]), (40, 30))
    assert t.tolist() == [[0.0, 0.0, 30.0, 40.0]]


# ------------------------------------------------------------------------------------------------ image files


def test_list_images(tmp_path):
    for name in ["b.jpg", "a.PNG", "c.webp", "d.tiff", "e.tif", "f.bmp", "g.jpeg", "notes.txt", "x.jpgx"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "h.jpg").write_bytes(b"")
    got = [p.name for p in list_images(tmp_path)]
    assert got == ["a.PNG", "b.jpg", "c.webp", "d.tiff", "e.tif", "f.bmp", "g.jpeg"]
    assert "h.jpg" in [p.name for p in list_images(tmp_path, recursive=True)]
    assert list_images(tmp_path / "b.jpg") == [tmp_path / "b.jpg"]
    with pytest.raises(ImageSourceError, match="no such file or folder"):
        list_images(tmp_path / "missing")
    with pytest.raises(ImageSourceError, match="not an image file"):
        list_images(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageSourceError, match=r"empty: folder has no images \(jpg/jpeg/png/bmp/webp/tif/tiff\)"):
        list_images(tmp_path / "empty")


def test_read_image_never_raises_for_bad_files(tmp_path, caplog):
    good = tmp_path / "good.png"
    im = random_image(20, 30)
    cv2.imwrite(str(good), im)
    assert np.array_equal(read_image(good), im)
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), im[..., 0])
    assert read_image(gray).shape == (20, 30, 3)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg at all")
    truncated = cv2.imencode(".png", im)[1].tobytes()[:40]
    (tmp_path / "trunc.png").write_bytes(truncated)
    assert try_read_image(tmp_path / "empty.jpg") == (None, "empty file")
    assert try_read_image(tmp_path / "missing.jpg") == (None, "no such file")
    assert try_read_image(tmp_path)[0] is None
    for name in ["junk.jpg", "trunc.png"]:
        image, reason = try_read_image(tmp_path / name)
        assert image is None and "not a decodable image" in reason
    with caplog.at_level(logging.WARNING):
        assert read_image(tmp_path / "junk.jpg") is None
    assert "junk.jpg: not a decodable image" in caplog.text


def test_draw_detections_and_names():
    assert len(COCO_NAMES) == 80 and COCO_NAMES[0] == "person" and COCO_NAMES[79] == "toothbrush"
    assert len(set(COCO_NAMES)) == 80
    assert class_color(3) == class_color(3) and len({class_color(c) for c in range(80)}) == 80
    im = np.zeros((200, 300, 3), np.uint8)
    dets = np.array([[10, 20, 110, 150, 0.87, 0], [150, 5, 290, 190, 0.5, 79], [-5, -5, 400, 400, 0.3, 2]],
                    np.float32)
    out = draw_detections(im, dets, COCO_NAMES)
    assert out.shape == im.shape and (im == 0).all() and (out != 0).any()
    assert tuple(out[100, 10]) == class_color(0)  # left edge of the first box
    assert np.array_equal(draw_detections(im, np.zeros((0, 6)), COCO_NAMES), im)
    out2 = draw_detections(im, torch.from_numpy(dets), {0: "a"})  # tensors and dict names (missing -> index)
    assert out2.shape == im.shape


def test_imagenet_center_crop_matches_an_independent_torch_implementation():
    """Short side to 256, centre 224, RGB, mean/std: against torch's own resize-free crop arithmetic."""
    import torch
    from zoo.vision.imagenet import IMAGENET_MEAN, IMAGENET_STD, CropSpec, center_crop
    rng = np.random.default_rng(3)
    for h, w in ((300, 451), (500, 333), (224, 224)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        scale = 256 / min(h, w)
        nh, nw = max(224, round(h * scale)), max(224, round(w * scale))
        resized = torch.from_numpy(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR))
        top, left = (nh - 224) // 2, (nw - 224) // 2
        crop = resized[top:top + 224, left:left + 224].flip(-1).permute(2, 0, 1).float() / 255
        expected = (crop - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        np.testing.assert_allclose(center_crop(image, CropSpec.scaled(224)), expected.numpy(), atol=1e-6)
