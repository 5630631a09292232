"""Oriented boxes as a part: rotated NMS with ultralytics' probabilistic IoU (zoo.vision.obb) on (B, 4 + nc + 1, A)
[xywh, scores, angle]; records with centre, size, angle and corners in original pixels."""
from __future__ import annotations

import numpy as np

from zoo.engine.errors import UserError
from zoo.vision.obb import corners, obb_nms, regularize, scale_rotated

from .detect import Detect, end_to_end_rows


class OBB(Detect):
    name = "obb"

    def detections(self, outputs, config, args):
        """Per image (K, 7) [cx, cy, w, h, angle, score, class]."""
        if getattr(config, "end2end", False):  # rows [cx, cy, w, h, score, class, angle]
            rows = end_to_end_rows(self.output(outputs, config), args.conf, args.classes, args.max_det)
            return [r[:, [0, 1, 2, 3, 6, 4, 5]] for r in rows]
        return obb_nms(self.output(outputs, config), args.conf, args.iou, args.classes, args.agnostic, args.max_det)

    def agreement(self, fp32_outputs, low_outputs, config):
        raise UserError("--images agreement counts axis-aligned detections; not available for oriented boxes")

    def image_record(self, dets, outputs, contexts, index, config, names):
        context = contexts[index]
        dets = dets.float().cpu().numpy()
        rboxes = scale_rotated(regularize(dets[:, :5]) if len(dets) else np.zeros((0, 5), np.float32),
                               context["letterbox"])
        records = [{"rbox": {"cx": round(float(b[0]), 2), "cy": round(float(b[1]), 2), "w": round(float(b[2]), 2),
                             "h": round(float(b[3]), 2), "angle": round(float(b[4]), 5)},
                    "corners": [[round(float(v), 2) for v in point] for point in quad],
                    "score": round(float(det[5]), 5), "class_id": int(det[6]),
                    "class_name": names[int(det[6])] if names else str(int(det[6]))}
                   for b, quad, det in zip(rboxes, corners(rboxes), dets)]
        return {"file": context["file"], "detections": records}
