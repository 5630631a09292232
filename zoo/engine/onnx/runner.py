"""ONNX Runtime behind the zoo's Runner interface: `OnnxRunner(model_bytes).run({"input": x}) -> {name: tensor}`.

A model file is untrusted input: before ONNX Runtime sees it, it must use only the standard ONNX domain (no custom
operator libraries) and keep every tensor inside the file (external data would make ONNX Runtime open other paths).
"""
from __future__ import annotations

import numpy as np
import torch

_STANDARD_DOMAINS = ("", "ai.onnx")


class OnnxModelError(ValueError):
    pass


def check_self_contained(data: bytes):
    """The parsed ModelProto, or OnnxModelError saying why it is refused."""
    import onnx
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise OnnxModelError(f"not a valid ONNX model ({type(e).__name__}: {e})") from None
    foreign = [o.domain for o in model.opset_import if o.domain not in _STANDARD_DOMAINS]
    if foreign or model.functions:
        raise OnnxModelError(f"the ONNX model uses operator domains {foreign or 'with local functions'}; the zoo "
                             f"runs standard ONNX operators only")
    from .contained import external_tensor
    outside = external_tensor(model)  # whatever field holds it: initializers, attributes, sparse tensors, ...
    if outside is not None:
        raise OnnxModelError(f"the ONNX model keeps tensor {outside!r} in external files; the zoo loads "
                             "self-contained models only")
    return model


class OnnxRunner:
    device = "cpu"

    def __init__(self, data: bytes, threads: int = 0):
        import onnxruntime as ort
        check_self_contained(data)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.batch_range = _batch_range(self.session.get_modelmeta().custom_metadata_map)

    def run(self, feeds: dict) -> dict[str, torch.Tensor]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"missing input {missing[0]!r} (inputs: {self.input_names})")
        arrays = {n: _numpy(feeds[n]) for n in self.input_names}
        if self.batch_range:  # the optimization profile's range, as a TensorRT engine would enforce it
            low, high = self.batch_range
            for n, a in arrays.items():
                if a.ndim and not low <= a.shape[0] <= high:
                    raise ValueError(f"input {n!r} has batch {a.shape[0]}; this model was built for batch "
                                     f"{low}..{high}")
        values = self.session.run(self.output_names, arrays)
        return {n: torch.from_numpy(_contiguous(v)) for n, v in zip(self.output_names, values)}


def _batch_range(metadata: dict) -> tuple[int, int] | None:
    """(min, max) from the writer's `batch_range` metadata ("min:opt:max"); None when absent or unreadable."""
    try:
        low, _, high = (int(v) for v in metadata["batch_range"].split(":"))
    except (KeyError, ValueError):
        return None
    return low, high


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return _contiguous(np.asarray(value))


def _contiguous(array: np.ndarray) -> np.ndarray:
    """np.ascontiguousarray would turn a rank-0 array into rank 1."""
    return array if array.flags.c_contiguous else array.copy(order="C")
