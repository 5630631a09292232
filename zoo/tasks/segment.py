"""Instance segmentation as a part: detection with the mask coefficients carried after each kept row, and per
detection a COCO RLE mask and polygons in original pixels (zoo.vision.masks: sigmoid(coefficients @ protos), cropped
to the box, upsampled, threshold 0.5, mapped back through the letterbox). Bench adds a "masks" stage."""
from __future__ import annotations

from zoo.vision.letterbox import letterbox_params
from zoo.vision.masks import encode_rle, iter_masks, mask_polygons

from .detect import Detect, batch_index, box_records


class Segment(Detect):
    name = "segment"
    stages = ("preprocess", "network", "nms", "masks")

    def extra_values(self, config) -> int:
        return config.num_masks

    def protos(self, outputs, config):
        return outputs[f"{config.output_name}.proto"]

    def image_record(self, dets, outputs, contexts, index, config, names):
        context = contexts[index]
        rows = self.scaled_rows(dets, config, context)
        record = {"file": context["file"], "detections": box_records(rows, names)}
        nm, start = config.num_masks, 0
        protos = self.protos(outputs, config)[batch_index(contexts, index)]
        for chunk in iter_masks(protos, dets[:, -nm:], dets[:, :4], config.input_size, context["letterbox"]):
            chunk = chunk.cpu().numpy()
            for det_record, mask in zip(record["detections"][start:start + len(chunk)], chunk):
                det_record["mask"] = encode_rle(mask)
                det_record["polygons"] = mask_polygons(mask)
            start += len(chunk)
        return record

    def extra_stage(self, outputs, detections, images, config) -> None:
        """Every kept detection's mask in original pixels (what `records` encodes)."""
        nm = config.num_masks
        for dets, image_protos, image in zip(detections, self.protos(outputs, config), images):
            lb = letterbox_params(image.shape[:2], config.input_size)
            for _ in iter_masks(image_protos, dets[:, -nm:], dets[:, :4], config.input_size, lb):
                pass
