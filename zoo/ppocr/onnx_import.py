"""Structured weights from PP-OCR's Paddle-exported ONNX files.

The files hold their weights as Constant nodes with Paddle's flat names (`conv2d_157.w_0`, `batch_norm2d_148.w_1`,
`learnable_affine_block_3.w_0`, `linear_2.b_0`), numbered by creation, not by place. They are given the reference
modules' names by walking the graph:

1. the flat-named tensors are listed in the order the graph's nodes first use them (a convolution's kernel, then the
   reshape of its bias; a batch norm's scale, shift, mean and variance; a matmul's matrix, then the add of its bias);
2. the configuration (channels, kernels, depth, classes) is read from the convolution and matrix shapes in that
   order (`config_from_shapes`), and the reference module built from it;
3. one forward pass of that module records the order its parameterised modules are called in, each listing its
   tensors in the same roles' order (`module_tensor_order`);
4. the two lists are zipped; every pair must agree in shape (Paddle's matrices are [in, out], transposed here),
   and the lists must be equally long. The file's own graph then checks the result end to end: tests hold the
   module to ONNX Runtime on the same file at 1e-4.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zoo.engine.checkpoint import CheckpointError
from zoo.engine.onnx_weights import read_onnx_model

from . import reference as ref
from .config import STAGE_NAMES

# Paddle's parameter names: `conv2d_157.w_0` (newer exports) or `conv2_expand_bn_scale` (older ones). What the
# exporter made up itself (shapes, scalars, temporaries) is not a parameter.
PADDLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[wb]_\d+)?$")
GENERATED = re.compile(r"^(p2o|helper|Constant@|fill_constant)")
MAX_TENSORS = 5000  # far above any PP-OCR mobile network (under 700); a bound on what a file can make us hold


@dataclass
class PaddleTensor:
    name: str
    array: np.ndarray
    op: str        # the op type of the node that first uses it


def paddle_tensors(path: str) -> tuple[list[PaddleTensor], str]:
    """The flat-named weight tensors of a Paddle export in order of first use, and the stage the graph is (det: has
    transposed convolutions, rec: has layer norms, cls: neither)."""
    model = read_onnx_model(path)
    from onnx import AttributeProto, numpy_helper
    graph = model.graph
    constants = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.output and _is_parameter_name(node.output[0]):
            attribute = next((a for a in node.attribute if a.name == "value"), None)
            if attribute is None or attribute.type != AttributeProto.TENSOR:
                raise CheckpointError(f"{path}: Constant {node.output[0]!r} holds no tensor")
            constants[node.output[0]] = attribute.t
    for init in graph.initializer:
        if _is_parameter_name(init.name):
            constants[init.name] = init
    if not constants:
        raise CheckpointError(f"{path}: no Paddle-named weights (such as 'conv2d_0.w_0'); not a PP-OCR export")
    if len(constants) > MAX_TENSORS:
        raise CheckpointError(f"{path}: {len(constants)} weight tensors, more than a PP-OCR network has "
                              f"({MAX_TENSORS})")
    ordered, seen = [], set()
    ops = {node.op_type for node in graph.node}
    for node in graph.node:
        for name in node.input:
            if name in constants and name not in seen:
                seen.add(name)
                array = numpy_helper.to_array(constants[name])
                if not np.issubdtype(array.dtype, np.floating) or array.ndim == 0:
                    continue  # an index or a scalar of the graph, not a weight
                if not np.isfinite(array).all():
                    raise CheckpointError(f"{path}: weight {name!r} has NaN or Inf values")
                ordered.append(PaddleTensor(name, np.ascontiguousarray(array, np.float32), node.op_type))
    stage = "det" if "ConvTranspose" in ops else "rec" if "ReduceMean" in ops else "cls"
    return ordered, stage


def _is_parameter_name(name: str) -> bool:
    return bool(PADDLE_NAME.match(name)) and not GENERATED.match(name)


class _Shapes:
    """A cursor over the convolution kernels and matrices of a network, in graph order."""

    def __init__(self, convs: list[tuple], linears: list[tuple], source: str):
        self.convs, self.linears, self.i, self.source = convs, linears, 0, source

    def take(self, what: str) -> tuple:
        if self.i >= len(self.convs):
            raise CheckpointError(f"{self.source}: ran out of convolutions reading {what}; not this architecture")
        self.i += 1
        return self.convs[self.i - 1]

    def peek(self) -> tuple | None:
        return self.convs[self.i] if self.i < len(self.convs) else None


def _lcnet(shapes: _Shapes, table) -> tuple[int, list]:
    stem = shapes.take("the stem")[0]
    stages, cin = [], stem
    for layout in table:
        blocks = []
        for _, se in layout:
            dw = shapes.take("a depthwise convolution")
            if dw[0] != cin or dw[1] != 1:
                raise CheckpointError(f"{shapes.source}: expected a depthwise convolution over {cin} channels, "
                                      f"found a kernel of shape {list(dw)}")
            if se:
                shapes.take("squeeze-excitation")
                shapes.take("squeeze-excitation")
            pw = shapes.take("a pointwise convolution")
            blocks.append((cin, pw[0], dw[2]))
            cin = pw[0]
        stages.append(blocks)
    return stem, stages


def config_from_shapes(stage: str, convs: list[tuple], linears: list[tuple], source: str) -> dict:
    """The reference module's configuration from the kernel shapes [out, in/groups, kh, kw] and the matrix shapes
    [out, in], both in graph order."""
    shapes = _Shapes(convs, linears, source)
    if stage == "det":
        stem, stages = _lcnet(shapes, ref.LCNET_DET)
        det_outputs = [tuple(reversed(shapes.take("a stage projection")[:2])) for _ in range(4)]
        fpn = shapes.take("the neck")[0]
        return {"stage": "det", "stem": stem, "stages": stages, "det_outputs": det_outputs, "fpn": fpn}
    if stage == "rec":
        stem, stages = _lcnet(shapes, ref.LCNET_REC)
        shapes.take("the neck's first convolution")
        dims = shapes.take("the neck's second convolution")[0]
        hidden = [o for o, i in linears if i == dims and o not in (dims, 3 * dims)]
        depth = sum(1 for o, i in linears if (o, i) == (3 * dims, dims))
        if not hidden or not depth or linears[-1][1] != dims:
            raise CheckpointError(f"{source}: the recognizer's SVTR neck does not have the expected matrices")
        return {"stage": "rec", "stem": stem, "stages": stages, "dims": dims, "hidden": hidden[0],
                "depth": depth, "classes": linears[-1][0]}
    stem = shapes.take("the stem")[0]
    blocks, cin = [], stem
    for _, _, se in ref.MOBILENET_CLS:
        expand = shapes.take("an expansion")[0]
        kernel = shapes.take("a depthwise convolution")[2]
        if se:
            shapes.take("squeeze-excitation")
            shapes.take("squeeze-excitation")
        cout = shapes.take("a projection")[0]
        blocks.append((cin, expand, cout, kernel))
        cin = cout
    last = shapes.take("the last convolution")[0]
    if len(linears) != 1:
        raise CheckpointError(f"{source}: the direction classifier has one fully connected layer, found "
                              f"{len(linears)}")
    return {"stage": "cls", "stem": stem, "blocks": blocks, "last": last, "classes": linears[0][0]}


def _roles(module: nn.Module) -> list[tuple[str, bool]]:
    """(tensor name, stored transposed by Paddle) of one parameterised module, in the order the graph uses them."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return [("weight", False)] + ([("bias", False)] if module.bias is not None else [])
    if isinstance(module, nn.BatchNorm2d):
        return [("weight", False), ("bias", False), ("running_mean", False), ("running_var", False)]
    if isinstance(module, nn.Linear):
        return [("weight", True), ("bias", False)]
    if isinstance(module, (nn.LayerNorm, ref.Affine)):
        return [("weight" if isinstance(module, nn.LayerNorm) else "scale", False), ("bias", False)]
    raise TypeError(f"no role order for {type(module).__name__}")


SAMPLE_SHAPES = {"det": (1, 3, 64, 64), "rec": (1, 3, 48, 64), "cls": (1, 3, 48, 192)}


@torch.no_grad()
def module_tensor_order(module: nn.Module, stage: str) -> list[tuple[str, bool]]:
    """(state_dict key, transposed) of every tensor of `module`, in the order one forward pass uses them."""
    names = {m: n for n, m in module.named_modules()}
    order, seen = [], set()

    def record(m, _inputs):
        if m not in seen:
            seen.add(m)
            order.extend((f"{names[m]}.{role}", t) for role, t in _roles(m))

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Linear, nn.LayerNorm, ref.Affine)
    hooks = [m.register_forward_pre_hook(record) for m in module.modules() if isinstance(m, kinds)]
    try:
        module.eval()(torch.zeros(SAMPLE_SHAPES[stage]))
    finally:
        for h in hooks:
            h.remove()
    return order


def import_paddle_onnx(path: str, stage: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(structured state_dict, configuration) of a PP-OCR ONNX file; `stage` (det, cls, rec) checks what it is."""
    tensors, found = paddle_tensors(path)
    if stage is not None and found != stage:
        raise CheckpointError(f"{path}: a {STAGE_NAMES[found]} network, but a {STAGE_NAMES[stage]} was expected")
    convs = [t.array.shape for t in tensors if t.array.ndim == 4 and t.op in ("Conv", "ConvTranspose")]
    linears = [tuple(reversed(t.array.shape)) for t in tensors if t.array.ndim == 2 and t.op == "MatMul"]
    config = config_from_shapes(found, convs, linears, path)
    try:
        module = ref.STAGES[found](config)
        order = module_tensor_order(module, found)
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: its shapes do not make a PP-OCR {found} network: "
                              f"{str(e).splitlines()[0]}") from None
    if len(order) != len(tensors):
        raise CheckpointError(f"{path}: {len(tensors)} weight tensors, but the {found} network read from its "
                              f"shapes has {len(order)}")
    expected = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {}
    for (key, transposed), tensor in zip(order, tensors):
        array = tensor.array.T if transposed else tensor.array
        if array.ndim != expected[key].ndim and array.size == expected[key].numel():
            array = array.reshape(expected[key].shape)  # some exports keep biases as [1, C, 1, 1]
        if tuple(array.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: {tensor.name} has shape {list(tensor.array.shape)}, but its place in "
                                  f"the graph is {key} of shape {list(expected[key].shape)}")
        state[key] = np.ascontiguousarray(array, np.float32)
    # BatchNorm's num_batches_tracked (not in the file, never used in eval) as 0, so the state_dict is complete
    return {k: state[k] if k in state else np.zeros((), np.float32) for k in module.state_dict()}, config


def reference_from_state(state: dict[str, np.ndarray], config: dict) -> nn.Module:
    module = ref.STAGES[config["stage"]](config)
    module.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}, strict=False)
    missing = [k for k in module.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"weights lack {missing[0]!r} of the {config['stage']} network")
    return module.eval()


