"""Tasks as parts a model is composed with: detect, segment, pose, obb, classify, semantic, depth (later: faces,
text). A part owns what is the task's and not the network's: the input pre-processing for images, the head's output
layout and its post-processing (NMS, top-k), the JSON records and the drawing, the agreement metric of
`validate --precision`, the stages of `bench --source` and the kind of outputs a Triton ensemble returns.

A part reads its model's configuration through a few attributes (`input_size`, `output_name`, `num_classes`,
`class_names`, and its own: `num_masks`, `kpt_shape`), so it serves any family whose head has its layout.
"""
from __future__ import annotations


def part(task: str, **options):
    """The part of `task`; `options` are its own (detect: objectness, nms_defaults; classify: yolov5)."""
    from .classify import Classify
    from .depth import Depth
    from .detect import Detect
    from .obb import OBB
    from .pose import Pose
    from .segment import Segment
    from .semantic import Semantic
    parts = {"detect": Detect, "segment": Segment, "pose": Pose, "obb": OBB, "classify": Classify,
             "semantic": Semantic, "depth": Depth}
    if task not in parts:
        raise ValueError(f"unknown task {task!r} (known: {sorted(parts)})")
    return parts[task](**options)
