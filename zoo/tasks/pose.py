"""Pose as a part: detection with the K x D keypoint values carried after each kept row; keypoints in original
pixels (zoo.vision.keypoints), skeletons drawn from the records (zoo.vision.draw) for COCO's 17."""
from __future__ import annotations

import math

from zoo.vision.keypoints import keypoint_records, scale_keypoints

from .detect import Detect, box_records


class Pose(Detect):
    name = "pose"

    def extra_values(self, config) -> int:
        return math.prod(config.kpt_shape)

    def image_record(self, dets, outputs, contexts, index, config, names):
        context = contexts[index]
        k, d = config.kpt_shape
        rows = self.scaled_rows(dets, config, context)
        keypoints = scale_keypoints(dets[:, 6:].float().cpu().numpy().reshape(len(dets), k, d), context["letterbox"])
        records = box_records(rows, names)
        for record, points in zip(records, keypoint_records(keypoints)):
            record["keypoints"] = points
        return {"file": context["file"], "detections": records}
