"""Drawing from records (zoo.vision.draw): each kind of thing a task answers is drawn where the record says."""
from __future__ import annotations

import numpy as np

from zoo.vision.coco import COCO_NAMES
from zoo.vision.draw import (class_color, draw_boxes, draw_faces, draw_keypoints, draw_masks, draw_record,
                             draw_rotated_boxes, draw_top_classes)
from zoo.vision.masks import encode_rle
from zoo.vision.obb import corners


def test_boxes_and_class_colours():
    assert class_color(3) == class_color(3) and len({class_color(c) for c in range(80)}) == 80
    image = np.zeros((200, 300, 3), np.uint8)
    detections = [{"box": [10, 20, 110, 150], "score": 0.87, "class_id": 0, "class_name": COCO_NAMES[0]},
                  {"box": [150, 5, 290, 190], "score": 0.5, "class_id": 79, "class_name": COCO_NAMES[79]},
                  {"box": [-5, -5, 400, 400], "score": 0.3, "class_id": 2}]  # off the image: clipped, no name
    out = draw_record(image, {"detections": detections})
    assert out.shape == image.shape and (image == 0).all() and (out != 0).any()  # a copy
    assert tuple(out[100, 10]) == class_color(0)  # left edge of the first box
    assert np.array_equal(draw_record(image, {"detections": []}), image)
    assert np.array_equal(draw_boxes(image.copy(), detections), out)


def test_masks_drawn_translucent_from_their_rle():
    image = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:10] = True
    out = draw_masks(image.copy(), [{"mask": encode_rle(mask), "class_id": 0}], alpha=0.5)
    assert (out[~mask] == 100).all()
    expected = np.floor(100 * 0.5 + np.asarray(class_color(0)) * 0.5 + 0.5)
    assert np.array_equal(out[7, 7], expected.astype(np.uint8))
    other = draw_masks(image.copy(), [{"mask": encode_rle(np.ones((4, 4), bool)), "class_id": 0}])
    assert (other == 100).all()  # a mask of another size than the image is not drawn


def test_skeleton_and_plain_points_are_drawn():
    image = np.zeros((100, 100, 3), np.uint8)
    coco = np.zeros((17, 3), np.float32)
    coco[:, 0], coco[:, 1], coco[:, 2] = np.linspace(10, 90, 17), 50, 1.0
    coco[0, 2] = 0.1  # invisible: not drawn
    out = draw_keypoints(image.copy(), [{"keypoints": coco.tolist()}])
    assert out[48:53, 8:12].sum() == 0  # the invisible nose, and no limb to it
    assert out[50, 15:90].any(axis=-1).all()  # the limbs join the visible points from keypoint 1 to 16
    five = [[20, 20], [80, 80], [20, 80], [80, 20], [50, 50]]
    out = draw_keypoints(image.copy(), [{"keypoints": five}])
    assert out[20, 20].any() and out[50, 50].any() and not out[35, 35].any()  # points, no limbs


def test_rotated_boxes_are_drawn_by_their_corners():
    image = np.zeros((80, 80, 3), np.uint8)
    quad = corners(np.array([[40, 40, 40, 20, 0.5]]))[0]
    out = draw_rotated_boxes(image, [{"corners": quad.tolist(), "score": 0.9, "class_id": 2, "class_name": "c"}])
    x, y = np.round((quad[0] + quad[1]) / 2).astype(int)  # the middle of a side is on the outline
    assert out[y, x].any() and out[40, 40].sum() == 0


def test_top_classes_and_faces():
    image = np.zeros((120, 200, 3), np.uint8)
    top = [{"class_id": 3, "score": 0.7, "class_name": "cat"}, {"class_id": 1, "score": 0.2}]
    out = draw_top_classes(image.copy(), top)
    assert out[:40].any() and not out[80:].any()  # lines at the top left, nothing below them
    assert (out == np.array(class_color(3), np.uint8)).all(axis=-1).any()  # the best in its class colour
    face = {"box": [100, 50, 180, 110], "score": 0.99, "landmarks": [[120, 70], [160, 70], [140, 85], [125, 100],
                                                                     [155, 100]]}
    out = draw_faces(image.copy(), [face])
    assert tuple(out[85, 140]) == (0, 255, 255) and out[80, 100].any()  # a landmark, the box's left side
    assert np.array_equal(draw_record(image, {"faces": [face], "top": top}),
                          draw_faces(draw_top_classes(image.copy(), top), [face]))
