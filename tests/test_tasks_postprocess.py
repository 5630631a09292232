"""Post-processing of the YOLO tasks beyond boxes, each against an independent reference:

- masks: the torch path against the numpy reference (its own bilinear resampling); the synthetic-scene round trip
  where a shape drawn in the original image must come back as the mask after the letterbox (wide, tall, tiny);
- COCO RLE against hand-derived strings and by round trip; polygons of a rectangle;
- keypoints and rotated boxes: drawn in the original, letterboxed with OpenCV, measured in the letterboxed image
  (moments, minAreaRect) and mapped back;
- probiou and rotated NMS: torch against a float64 loop, on random boxes with tied scores; rotation invariance;
- YOLO classification pre-processing: torch against the OpenCV versions; crops and normalisation checked by hand.
"""
import math

import cv2
import numpy as np
import pytest
import torch

from zoo.vision.keypoints import scale_keypoints, unletterbox_points
from zoo.vision.letterbox import apply_letterbox, letterbox_params
from zoo.vision.masks import (assemble_masks, assemble_masks_reference, decode_rle, encode_rle,
                              mask_polygons, mask_probabilities, mask_probabilities_reference, rle_counts)
from zoo.vision.obb import (corners, obb_nms, probiou, probiou_reference, regularize, rotated_nms,
                            rotated_nms_reference, scale_rotated)
from zoo.vision.yolo_classify import (center_crop_torch, ultralytics_classify_input, ultralytics_spec,
                                      yolov5_classify_input, yolov5_classify_torch)
from zoo.vision.synthetic import draw_scene

INPUT = (128, 128)
SHAPES = {"wide": (60, 400), "tall": (400, 60), "tiny": (12, 18), "odd": (151, 203)}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hw", [(75, 300), (128, 128), (200, 40), (9, 13)])
def test_mask_torch_path_equals_numpy_reference(hw, device):
    g = torch.Generator().manual_seed(hw[0])
    protos, coefficients = torch.randn(32, 32, 32, generator=g), torch.randn(6, 32, generator=g) * 0.3
    boxes = torch.tensor([[10, 20, 90, 100], [0, 0, 128, 128], [50.5, 3.2, 70.7, 60.1], [1, 1, 2, 2],
                          [30, 30, 31, 100], [120, 0, 200, 300]], dtype=torch.float32)
    lb = letterbox_params(hw, INPUT)
    got = mask_probabilities(protos.to(device), coefficients.to(device), boxes.to(device), INPUT, lb).cpu().numpy()
    ref = mask_probabilities_reference(protos.numpy(), coefficients.numpy(), boxes.numpy(), INPUT, lb)
    assert got.shape == ref.shape == (6, *hw)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    masks = assemble_masks(protos.to(device), coefficients.to(device), boxes.to(device), INPUT, lb).cpu().numpy()
    ref_masks = assemble_masks_reference(protos.numpy(), coefficients.numpy(), boxes.numpy(), INPUT, lb)
    undecided = np.abs(ref - 0.5) < 1e-5  # a threshold tie may go either way at float32 rounding
    assert np.array_equal(masks[~undecided], ref_masks[~undecided])
    assert masks[3].sum() <= hw[0] * hw[1] and not masks[:, :, :].all()  # the crop bites


def _drawn_shape(h, w, kind, seed=0):
    """A filled shape in an (h, w) image, away from the borders, as a boolean mask."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((h, w), np.uint8)
    cx, cy = int(w * rng.uniform(0.35, 0.65)), int(h * rng.uniform(0.35, 0.65))
    ax, ay = max(int(w * 0.3), 2), max(int(h * 0.3), 2)
    if kind == "ellipse":
        cv2.ellipse(canvas, (cx, cy), (ax, ay), 20, 0, 360, 255, -1)
    else:
        cv2.rectangle(canvas, (cx - ax, cy - ay), (cx + ax, cy + ay), 255, -1)
    return canvas > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["rectangle", "ellipse"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_mask_round_trip_covers_the_drawn_shape(name, kind, device):
    """A "network" whose single prototype is the letterboxed shape seen at 1/4 resolution: the mask that comes
    back in original pixels must be the shape, up to one prototype cell (4 input pixels) at its boundary."""
    h, w = SHAPES[name]
    shape = _drawn_shape(h, w, kind)
    lb = letterbox_params((h, w), INPUT)
    seen = apply_letterbox(np.repeat(shape[..., None].astype(np.uint8) * 255, 3, 2), lb, color=0)[..., 0] / 255.0
    cell = cv2.resize(seen.astype(np.float32), (INPUT[1] // 4, INPUT[0] // 4), interpolation=cv2.INTER_AREA)
    protos = torch.zeros(32, *cell.shape)
    protos[0] = torch.from_numpy((cell - 0.5) * 40)
    protos[1:] = torch.randn(31, *cell.shape, generator=torch.Generator().manual_seed(1)) * 5  # ignored
    coefficients = torch.zeros(1, 32)
    coefficients[0, 0] = 1.0
    ys, xs = np.nonzero(seen > 0)
    box = torch.tensor([[xs.min() - 4, ys.min() - 4, xs.max() + 5, ys.max() + 5]], dtype=torch.float32)
    mask = assemble_masks(protos.to(device), coefficients.to(device), box.to(device), INPUT, lb)[0].cpu().numpy()
    assert mask.shape == (h, w)
    band = 4 * w / lb.new_w + 1.0  # one prototype cell, in original pixels
    # the image border counts as the shape's boundary too: beyond it lies the padding
    inside = cv2.distanceTransform(np.pad(shape, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    outside = cv2.distanceTransform((~shape).astype(np.uint8), cv2.DIST_L2, 3)
    assert mask[inside > band].all(), "pixels deep inside the shape are missing from the mask"
    assert not mask[outside > band].any(), "mask pixels far outside the shape (misplaced or padding not removed)"
    iou = (mask & shape).sum() / (mask | shape).sum()
    assert iou > (0.9 if band < 3 else 0.6), iou


# ---------------------------------------------------------------------------------------------------- RLE, polygons


def test_rle_hand_derived_examples():
    m = np.zeros((4, 5), bool)
    m[1:3, 2:4] = True  # column-major: 9 zeros, 2 ones, 2 zeros, 2 ones, 5 zeros
    assert rle_counts(m) == [9, 2, 2, 2, 5]
    assert encode_rle(m) == {"size": [4, 5], "counts": "92203"}  # from the 4th count on: minus the count two back
    assert encode_rle(np.ones((10, 10), bool))["counts"] == "0T3"  # 100 = 4 + 3 * 32: '4'|0x20 -> 'T', then '3'
    # a negative difference: counts [5, 10, 3, 2] -> 2 - 10 = -8 -> 24 in 5 bits with the sign bit set -> 'H'
    m = np.zeros(20, bool)
    m[5:15] = True
    m[18:20] = True
    assert rle_counts(m.reshape(20, 1)) == [5, 10, 3, 2]
    assert encode_rle(m.reshape(20, 1))["counts"] == "5:3H"


def test_rle_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (7, 3), (64, 50), (300, 2)]:
        for density in (0.0, 0.05, 0.5, 1.0):
            mask = rng.random((h, w)) < density
            rle = encode_rle(mask)
            assert sum(rle_counts(mask)) == h * w
            assert np.array_equal(decode_rle(rle), mask)


def test_polygon_of_a_rectangle():
    mask = np.zeros((20, 30), bool)
    mask[4:9, 10:21] = True
    (poly,) = mask_polygons(mask)
    points = np.asarray(poly).reshape(-1, 2)
    assert {tuple(p) for p in points} == {(10, 4), (20, 4), (20, 8), (10, 8)}


# ---------------------------------------------------------------------------------------------------- keypoints


def _centroid(binary: np.ndarray) -> np.ndarray:
    m = cv2.moments(binary.astype(np.float32))
    return np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]])


@pytest.mark.parametrize("name", list(SHAPES))
def test_keypoints_survive_the_letterbox(name):
    """Discs drawn around keypoints in the original image; their centroids measured in the letterboxed image,
    mapped back, land on the keypoints (continuous coordinates: pixel (i, j) covers [j, j+1) x [i, i+1))."""
    h, w = SHAPES[name]
    lb = letterbox_params((h, w), INPUT)
    rng = np.random.default_rng(1)
    truth, measured = [], []
    for _ in range(3):
        canvas = np.zeros((h * 8, w * 8), np.uint8)  # draw at 8x, then area-downsample: sub-pixel centres
        r = max(min(h, w) // 6, 1) * 8
        cx, cy = rng.uniform(r, w * 8 - r), rng.uniform(r, h * 8 - r)
        cv2.circle(canvas, (int(cx), int(cy)), r, 255, -1)
        image = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
        truth.append(_centroid(image) + 0.5)  # centroid of pixel centres -> continuous coordinates
        boxed = apply_letterbox(np.repeat(image[..., None], 3, 2), lb, color=0)[..., 0]
        measured.append(_centroid(boxed) + 0.5)
    points = np.asarray(measured, np.float32)[None]
    back = scale_keypoints(np.concatenate([points, np.ones((1, 3, 1), np.float32)], 2), lb)
    tolerance = 0.5 * w / lb.new_w + 0.1  # bilinear resampling moves a centroid by under half an input pixel
    np.testing.assert_allclose(back[0, :, :2], np.asarray(truth), atol=tolerance)
    assert np.array_equal(back[0, :, 2], np.ones(3, np.float32))


def test_keypoint_mapping_inverts_the_letterbox_geometry_and_clips():
    lb = letterbox_params((60, 400), INPUT)
    xy = np.array([[lb.pad_left, lb.pad_top], [lb.pad_left + lb.new_w, lb.pad_top + lb.new_h], [0, 0]], np.float32)
    back = unletterbox_points(xy, lb)
    np.testing.assert_allclose(back, [[0, 0], [400, 60], [0, 0]], atol=1e-4)  # the padding corner clips to 0


# ---------------------------------------------------------------------------------------------------- rotated boxes


def _random_rboxes(n, seed):
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([rng.uniform(0, 60, (n, 2)), rng.uniform(2, 30, (n, 2)), rng.uniform(-3.2, 3.2, (n, 1))],
                           1)
    return boxes, np.round(rng.uniform(0, 1, n), 1)  # one decimal: many tied scores


def test_probiou_torch_equals_the_float64_loop():
    boxes, _ = _random_rboxes(30, 0)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 5e-5)):
        got = probiou(torch.tensor(boxes, dtype=dtype), torch.tensor(boxes, dtype=dtype)).double().numpy()
        np.testing.assert_allclose(got, probiou_reference(boxes, boxes), atol=tol, rtol=0)


def test_probiou_properties():
    a = np.array([[10.0, 20.0, 8.0, 4.0, 0.3]])
    # identical boxes: the distance clamps at eps, so iou = 1 - sqrt(1 - exp(-eps) + eps)
    assert probiou_reference(a, a)[0, 0] == pytest.approx(1 - math.sqrt(1 - math.exp(-1e-7) + 1e-7), abs=1e-9)
    far = a + [[500, 0, 0, 0, 0]]
    assert probiou_reference(a, far)[0, 0] == pytest.approx(1 - math.sqrt(1 + 1e-7), abs=1e-6)
    turned = np.array([[10.0, 20.0, 4.0, 8.0, 0.3 + math.pi / 2]])  # the same rectangle, described otherwise
    assert probiou_reference(a, turned)[0, 0] == pytest.approx(probiou_reference(a, a)[0, 0], abs=1e-6)
    boxes, _ = _random_rboxes(8, 3)
    theta = 0.7  # rotate every box about the origin: the overlap of each pair is unchanged
    c, s = math.cos(theta), math.sin(theta)
    rotated = boxes.copy()
    rotated[:, 0], rotated[:, 1] = c * boxes[:, 0] - s * boxes[:, 1], s * boxes[:, 0] + c * boxes[:, 1]
    rotated[:, 4] += theta
    np.testing.assert_allclose(probiou_reference(rotated, rotated), probiou_reference(boxes, boxes), atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(2))
def test_rotated_nms_equals_the_reference_with_ties(seed, device):
    boxes, scores = _random_rboxes(40, seed)
    for threshold in (0.1, 0.3, 0.7):
        got = rotated_nms(torch.tensor(boxes, device=device), torch.tensor(scores, device=device), threshold)
        assert got.cpu().tolist() == rotated_nms_reference(boxes, scores, threshold).tolist()


def test_obb_nms_keeps_classes_apart_and_orders_by_score():
    # (1, 4 + 2 classes + angle, 4 anchors): two overlapping boxes per class
    cols = [[50, 50, 20, 10, 0.9, 0.0, 0.1], [51, 50, 20, 10, 0.8, 0.0, 0.1],
            [50, 50, 20, 10, 0.0, 0.7, 0.1], [90, 90, 6, 6, 0.1, 0.2, 0.0]]
    pred = torch.tensor(cols, dtype=torch.float32).T[None]
    (out,) = obb_nms(pred, conf_thres=0.25, iou_thres=0.5)
    assert out[:, 5].tolist() == pytest.approx([0.9, 0.7]) and out[:, 6].tolist() == [0, 1]
    (agnostic,) = obb_nms(pred, conf_thres=0.25, iou_thres=0.5, agnostic=True)
    assert len(agnostic) == 1


def test_regularize_and_corners():
    r = regularize(np.array([[0, 0, 2, 6, 0.25]], np.float32))
    np.testing.assert_allclose(r, [[0, 0, 6, 2, 0.25 + math.pi / 2]], atol=1e-6)
    np.testing.assert_allclose(regularize(np.array([[0, 0, 6, 2, -0.5]]))[0, 4], math.pi - 0.5, atol=1e-6)
    quad = corners(np.array([[10, 10, 4, 2, math.pi / 2]]))[0]
    assert {tuple(np.round(p, 5)) for p in quad} == {(11, 12), (9, 12), (9, 8), (11, 8)}


@pytest.mark.parametrize("name", list(SHAPES))
def test_rotated_box_survives_the_letterbox(name):
    """A rotated rectangle drawn in the original, measured with minAreaRect in the letterboxed image and mapped
    back, is the drawn one."""
    h, w = SHAPES[name]
    scale = 8
    side = min(h, w)  # a box that fits inside the image at any angle
    truth = np.array([w / 2 + 0.3, h / 2 - 0.2, side * 0.6, side * 0.3, 0.4], np.float32)
    canvas = np.zeros((h * scale, w * scale), np.uint8)
    cv2.fillPoly(canvas, [np.round(corners(truth[None] * [scale, scale, scale, scale, 1])[0] - 0.5).astype(np.int32)],
                 255)
    image = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    lb = letterbox_params((h, w), INPUT)
    boxed = apply_letterbox(np.repeat(image[..., None], 3, 2), lb, color=0)[..., 0]
    big = cv2.resize(boxed, (INPUT[1] * scale, INPUT[0] * scale), interpolation=cv2.INTER_LINEAR) > 127
    (cx, cy), (bw, bh), angle = cv2.minAreaRect(np.argwhere(big)[:, ::-1].astype(np.float32))
    measured = np.array([[(cx + 0.5) / scale, (cy + 0.5) / scale, bw / scale, bh / scale, math.radians(angle)]])
    back = regularize(scale_rotated(measured, lb))[0]
    want = regularize(truth[None])[0]
    pixel = w / lb.new_w  # one input pixel in original pixels
    np.testing.assert_allclose(back[:2], want[:2], atol=pixel + 0.3)
    np.testing.assert_allclose(back[2:4], want[2:4], atol=2 * pixel + 0.6)
    assert abs((back[4] - want[4] + math.pi / 2) % math.pi - math.pi / 2) < 0.1 + 2 * pixel / max(want[3], 1)


# ---------------------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hw", [(300, 500), (77, 33), (64, 64), (50, 60)])
def test_classification_preprocessing_torch_equals_opencv(hw, device):
    image = draw_scene(*hw, 3)
    size = 64
    cpu = yolov5_classify_input(image, size)[None]
    gpu = yolov5_classify_torch([image], size, device).cpu().numpy()
    # one grey level: OpenCV's uint8 bilinear uses fixed-point weights
    assert np.abs(cpu - gpu).max() <= 1.0001 / 255 / 0.224
    cpu = ultralytics_classify_input(image, size)[None]
    gpu = center_crop_torch([image], ultralytics_spec(size), device).cpu().numpy()
    assert np.abs(cpu - gpu).max() <= 1.0001 / 255
    assert np.mean(np.abs(cpu - gpu) > 1e-6) < 0.2


def test_classification_crops_and_normalisation_by_hand():
    h, w = 40, 100
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :, 0] = np.arange(w)[None, :]  # blue = column index
    image[:, :, 2] = 200                    # red constant
    # YOLOv5: centred 40x40 square (columns 30..69), no resize at size 40, RGB order, ImageNet mean/std
    x = yolov5_classify_input(image, 40)
    np.testing.assert_allclose(x[2, 0] * 0.225 + 0.406, np.arange(30, 70) / 255, atol=1e-6)
    np.testing.assert_allclose(x[0], (200 / 255 - 0.485) / 0.229, atol=1e-6)
    # ultralytics: short side to 20 (100 -> 50 columns), centre crop of 20 starts at column 15: no mean/std
    y = ultralytics_classify_input(image, 20)
    assert y.shape == (3, 20, 20)
    np.testing.assert_allclose(y[0], 200 / 255, atol=1e-6)
    resized = cv2.resize(image, (50, 20), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(y[2], resized[:, 15:35, 0] / 255, atol=1e-6)
