"""TensorRT layers as ONNX nodes: one function per layer class, in the TRANSLATORS table at the end.

A translation `f(g, layer, xs, ys)` reads the layer's recorded attributes (`layer._attrs`, `layer._weights`) and
writes nodes into `g` (an OnnxGraph) that compute the output values `ys` from the input values `xs` (None where an
optional input is absent). TensorRT's semantics are spelled out, never assumed to equal ONNX's defaults:
- padding is always explicit pre/post `pads`; EXPLICIT_ROUND_UP is pooling's `ceil_mode`;
- axes given as TensorRT bitmasks become ONNX axis lists; default axes (rank - 3) are already resolved at record
  time and read back from the layer;
- strongly typed: an ONNX op that would compute in another type gets explicit Casts (quantize reads FP32);
- shuffle is Transpose -> Reshape -> Transpose, with `zero_is_placeholder` as Reshape's `allowzero`;
- resize modes map to ONNX Resize's mode / coordinate_transformation_mode / nearest_mode one by one;
- Q/DQ are QuantizeLinear/DequantizeLinear with an INT8 zero point of 0 and the per-channel `axis`.
Adding a layer type is one function here and one line in TRANSLATORS; tests/test_onnx_layers.py fails for a
reference-backend layer class that has no entry.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper

from zoo.trt_api import trt
from zoo.trt_api.plugins import onnx_form
from .graph import NUMPY_TYPES, OnnxExportError, OnnxGraph, onnx_type


_FLOATS = (trt.float32, trt.float16, trt.bfloat16)


def translate_layer(g: OnnxGraph, layer) -> None:
    translation = TRANSLATORS.get(type(layer).__name__)
    if translation is None:
        raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX form in the zoo's writer; "
                              f"add one to zoo/engine/onnx/layers.py TRANSLATORS")
    xs = [None if t is None else g.name_of(t) for t in layer._inputs]
    ys = [g.name_of(t) for t in layer._outputs]
    translation(g, layer, xs, ys)
    g.nodes += g.pending
    g.pending.clear()


def _fail(layer, message: str) -> OnnxExportError:
    return OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}): {message}")


def _np_dtype(dtype):
    return NUMPY_TYPES.get(dtype, np.float32)


# ----------------------------------------------------------------------------------------------------------------
# convolution and pooling


def _pads(layer) -> list[int]:
    """ONNX `pads`: all pre paddings, then all post paddings."""
    return [int(p) for p in layer._attrs["pre_padding"]] + [int(p) for p in layer._attrs["post_padding"]]


def _check_padding_mode(layer, ceil_allowed: bool) -> int:
    mode = layer._attrs["padding_mode"]
    if mode == trt.PaddingMode.EXPLICIT_ROUND_DOWN:
        return 0
    if mode == trt.PaddingMode.EXPLICIT_ROUND_UP and ceil_allowed:
        return 1
    raise _fail(layer, f"padding_mode {mode} has no ONNX form in the zoo's writer")


def _check_round_up_fits(layer, spatial) -> None:
    """EXPLICIT_ROUND_UP equals ROUND_DOWN when every window fits exactly; otherwise ONNX Conv cannot say it."""
    a = layer._attrs
    for i, size in enumerate(spatial):
        span = a["dilation_nd"][i] * (a["kernel_size_nd"][i] - 1) + 1
        room = size + a["pre_padding"][i] + a["post_padding"][i] - span
        if size < 0 or room % a["stride_nd"][i]:
            raise _fail(layer, f"EXPLICIT_ROUND_UP on spatial axis {i} (size {size}) needs a window beyond the "
                               f"padded input, which ONNX Conv cannot express")


def convolution(g: OnnxGraph, layer, xs, ys):
    a = layer._attrs
    x = layer._inputs[0]
    dtype = x.dtype
    shape = (a["num_output_maps"], x.shape[1] // a["num_groups"], *a["kernel_size_nd"])
    if a["padding_mode"] == trt.PaddingMode.EXPLICIT_ROUND_UP:
        _check_round_up_fits(layer, x.shape[2:])  # ONNX Conv has no ceil mode
    else:
        _check_padding_mode(layer, ceil_allowed=False)
    kernel = xs[1] if len(xs) > 1 and xs[1] is not None else \
        g.const(layer._weights["kernel"].reshape(shape), f"{layer.name}/kernel", _np_dtype(dtype))
    inputs = [xs[0], kernel]
    if len(xs) > 2 and xs[2] is not None:
        inputs.append(xs[2])
    elif "bias" in layer._weights:
        inputs.append(g.const(layer._weights["bias"].reshape(-1), f"{layer.name}/bias", _np_dtype(dtype)))
    g.node("Conv", inputs, layer.name, outputs=ys, kernel_shape=list(a["kernel_size_nd"]),
           strides=list(a["stride_nd"]), dilations=list(a["dilation_nd"]), pads=_pads(layer), group=a["num_groups"])


def deconvolution(g: OnnxGraph, layer, xs, ys):
    """ConvTranspose: the same kernel layout (in, out / groups, *k) and output size (I-1)*S + D*(K-1) + 1 - pads."""
    a = layer._attrs
    x = layer._inputs[0]
    _check_padding_mode(layer, ceil_allowed=False)
    shape = (x.shape[1], a["num_output_maps"] // a["num_groups"], *a["kernel_size_nd"])
    inputs = [xs[0], g.const(layer._weights["kernel"].reshape(shape), f"{layer.name}/kernel", _np_dtype(x.dtype))]
    if "bias" in layer._weights:
        inputs.append(g.const(layer._weights["bias"].reshape(-1), f"{layer.name}/bias", _np_dtype(x.dtype)))
    g.node("ConvTranspose", inputs, layer.name, outputs=ys, kernel_shape=list(a["kernel_size_nd"]),
           strides=list(a["stride_nd"]), dilations=list(a["dilation_nd"]), pads=_pads(layer), group=a["num_groups"])


def pooling(g: OnnxGraph, layer, xs, ys):
    a = layer._attrs
    kind, window = a["type"], [int(k) for k in a["window_size_nd"]]
    ceil = _check_padding_mode(layer, ceil_allowed=True)
    common = dict(kernel_shape=window, strides=list(a["stride_nd"]), pads=_pads(layer), ceil_mode=ceil)
    if kind == trt.PoolingType.MAX:
        g.node("MaxPool", [xs[0]], layer.name, outputs=ys, **common)
    elif kind == trt.PoolingType.AVERAGE:
        g.node("AveragePool", [xs[0]], layer.name, outputs=ys,
               count_include_pad=0 if a["average_count_excludes_padding"] else 1, **common)
    else:
        raise _fail(layer, f"pooling type {kind} has no ONNX form in the zoo's writer")


# ----------------------------------------------------------------------------------------------------------------
# pointwise


def _computed_in_fp32(g: OnnxGraph, layer, xs, ys):
    """(inputs, outputs, dtype) for a translation of several nodes: a layer that TensorRT computes in one kernel
    rounds once, so with FP16 (or BF16) input the nodes run in FP32 between a Cast up and a Cast down."""
    dtype = layer._inputs[0].dtype
    if dtype == trt.float32 or dtype not in _FLOATS:
        return xs, ys, dtype
    up = [g.op("Cast", [x], f"{layer.name}/to_fp32_{i}", to=onnx_type(trt.float32)) for i, x in enumerate(xs)]
    inner = [g.fresh(f"{layer.name}/fp32_{i}") for i in range(len(ys))]
    for i, (value, out) in enumerate(zip(inner, ys)):  # after the body: translate_layer appends g.pending
        g.pending.append(helper.make_node("Cast", [value], [out], name=g.node_name(f"{layer.name}/to_{i}"),
                                          to=onnx_type(dtype)))
    return up, inner, trt.float32


def scale(g: OnnxGraph, layer, xs, ys):
    """TensorRT's scale: (x * scale + shift) ^ power, with the coefficients laid out by mode."""
    x = layer._inputs[0]
    rank, axis, mode = len(x.shape), layer._attrs["channel_axis"], layer._attrs["mode"]
    xs, ys, dtype = _computed_in_fp32(g, layer, xs, ys)
    if mode == trt.ScaleMode.UNIFORM:
        view = (1,) * rank
    elif mode == trt.ScaleMode.CHANNEL:
        view = tuple(-1 if i == axis else 1 for i in range(rank))
    else:
        view = (1,) * axis + tuple(x.shape[axis:])
    y = xs[0]
    steps = [("scale", "Mul"), ("shift", "Add"), ("power", "Pow")]
    present = [(k, op) for k, op in steps if k in layer._weights]
    if not present:
        g.node("Identity", [y], layer.name, outputs=ys)
        return
    for i, (key, op) in enumerate(present):
        c = g.const(layer._weights[key].reshape(view), f"{layer.name}/{key}", _np_dtype(dtype))
        out = ys if i == len(present) - 1 else None
        y = g.node(op, [y, c], f"{layer.name}/{key}", outputs=out)[0]


_COMPOSITE_ACTIVATIONS = ("CLIP", "SOFTPLUS", "SCALED_TANH", "GELU_ERF", "GELU_TANH")


def activation(g: OnnxGraph, layer, xs, ys):
    kind, alpha, beta = layer._attrs["type"].name, layer._attrs["alpha"], layer._attrs["beta"]
    dtype = layer._inputs[0].dtype
    if kind in _COMPOSITE_ACTIVATIONS:
        xs, ys, dtype = _computed_in_fp32(g, layer, xs, ys)
    x, name = xs[0], layer.name

    def c(v, what):
        return g.scalar_like(v, dtype, f"{name}/{what}")

    simple = {"RELU": "Relu", "SIGMOID": "Sigmoid", "TANH": "Tanh", "SOFTSIGN": "Softsign"}
    if kind in simple:
        g.node(simple[kind], [x], name, outputs=ys)
    elif kind == "LEAKY_RELU":
        g.node("LeakyRelu", [x], name, outputs=ys, alpha=alpha)
    elif kind == "ELU":
        g.node("Elu", [x], name, outputs=ys, alpha=alpha)
    elif kind == "SELU":
        g.node("Selu", [x], name, outputs=ys, alpha=alpha, gamma=beta)
    elif kind == "THRESHOLDED_RELU":
        g.node("ThresholdedRelu", [x], name, outputs=ys, alpha=alpha)
    elif kind == "HARD_SIGMOID":
        g.node("HardSigmoid", [x], name, outputs=ys, alpha=alpha, beta=beta)
    elif kind == "CLIP":  # max(alpha, min(beta, x)): alpha wins when alpha > beta (ONNX Clip lets max win)
        g.node("Max", [g.op("Min", [x, c(beta, "beta")], f"{name}/min"), c(alpha, "alpha")], name, outputs=ys)
    elif kind == "SOFTPLUS":  # alpha * log(1 + exp(beta * x))
        inner = g.op("Softplus", [g.op("Mul", [x, c(beta, "beta")], f"{name}/beta_x")], f"{name}/softplus")
        g.node("Mul", [inner, c(alpha, "alpha")], name, outputs=ys)
    elif kind == "SCALED_TANH":  # alpha * tanh(beta * x)
        inner = g.op("Tanh", [g.op("Mul", [x, c(beta, "beta")], f"{name}/beta_x")], f"{name}/tanh")
        g.node("Mul", [inner, c(alpha, "alpha")], name, outputs=ys)
    elif kind == "GELU_ERF":  # 0.5 x (1 + erf(x / sqrt 2))
        erf = g.op("Erf", [g.op("Mul", [x, c(1 / math.sqrt(2), "rsqrt2")], f"{name}/scaled")], f"{name}/erf")
        half_x = g.op("Mul", [x, c(0.5, "half")], f"{name}/half_x")
        g.node("Mul", [half_x, g.op("Add", [erf, c(1.0, "one")], f"{name}/one_plus")], name, outputs=ys)
    elif kind == "GELU_TANH":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x], f"{name}/x2"), x], f"{name}/x3")
        inner = g.op("Add", [x, g.op("Mul", [cube, c(0.044715, "k")], f"{name}/kx3")], f"{name}/sum")
        t = g.op("Tanh", [g.op("Mul", [inner, c(math.sqrt(2 / math.pi), "s")], f"{name}/scaled")], f"{name}/tanh")
        half_x = g.op("Mul", [x, c(0.5, "half")], f"{name}/half_x")
        g.node("Mul", [half_x, g.op("Add", [t, c(1.0, "one")], f"{name}/one_plus")], name, outputs=ys)
    else:
        raise _fail(layer, f"activation {kind} has no ONNX form in the zoo's writer")


_UNARY = {"EXP": "Exp", "LOG": "Log", "SQRT": "Sqrt", "RECIP": "Reciprocal", "ABS": "Abs", "NEG": "Neg",
          "SIN": "Sin", "COS": "Cos", "TAN": "Tan", "SINH": "Sinh", "COSH": "Cosh", "ASIN": "Asin", "ACOS": "Acos",
          "ATAN": "Atan", "ASINH": "Asinh", "ACOSH": "Acosh", "ATANH": "Atanh", "CEIL": "Ceil", "FLOOR": "Floor",
          "ERF": "Erf", "NOT": "Not", "SIGN": "Sign", "ROUND": "Round", "ISINF": "IsInf", "ISNAN": "IsNaN"}


def unary(g: OnnxGraph, layer, xs, ys):
    op = layer._attrs["op"].name
    if op not in _UNARY:
        raise _fail(layer, f"unary op {op} has no ONNX form in the zoo's writer")
    g.node(_UNARY[op], [xs[0]], layer.name, outputs=ys)  # ROUND: ONNX Round is half-to-even, as TensorRT's


_ELEMENTWISE = {"SUM": "Add", "PROD": "Mul", "MAX": "Max", "MIN": "Min", "SUB": "Sub", "DIV": "Div", "POW": "Pow",
                "AND": "And", "OR": "Or", "XOR": "Xor", "EQUAL": "Equal", "GREATER": "Greater", "LESS": "Less"}
def elementwise(g: OnnxGraph, layer, xs, ys):
    op, name = layer._attrs["op"].name, layer.name
    a, b = xs
    if op == "FLOOR_DIV":
        if layer._inputs[0].dtype in _FLOATS:
            (a, b), out, _ = _computed_in_fp32(g, layer, xs, ys)
            g.node("Floor", [g.op("Div", [a, b], f"{name}/div")], name, outputs=out)
        else:  # integer division rounds toward zero in ONNX; floor(a/b) = (a - mod(a, b)) / b, mod with b's sign
            exact = g.op("Sub", [a, g.op("Mod", [a, b], f"{name}/mod", fmod=0)], f"{name}/exact")
            g.node("Div", [exact, b], name, outputs=ys)
    elif op in _ELEMENTWISE:
        g.node(_ELEMENTWISE[op], [a, b], name, outputs=ys)
    else:
        raise _fail(layer, f"elementwise op {op} has no ONNX form in the zoo's writer")


def parametric_relu(g: OnnxGraph, layer, xs, ys):
    # ONNX PRelu is TensorRT's: x where x >= 0, else slope * x, the slopes broadcasting into the input
    g.node("PRelu", xs, layer.name, outputs=ys)


def select(g: OnnxGraph, layer, xs, ys):
    g.node("Where", xs, layer.name, outputs=ys)


def cast(g: OnnxGraph, layer, xs, ys):
    g.node("Cast", [xs[0]], layer.name, outputs=ys, to=onnx_type(layer._attrs["to_type"]))


def identity(g: OnnxGraph, layer, xs, ys):
    g.node("Identity", [xs[0]], layer.name, outputs=ys)


# ----------------------------------------------------------------------------------------------------------------
# shapes and data movement


def concatenation(g: OnnxGraph, layer, xs, ys):
    g.node("Concat", xs, layer.name, outputs=ys, axis=layer._attrs["axis"])


def shuffle(g: OnnxGraph, layer, xs, ys):
    """first_transpose -> reshape (0 copies the input dimension when zero_is_placeholder) -> second_transpose."""
    a, name = layer._attrs, layer.name
    rank = len(layer._inputs[0].shape)
    steps = []
    perm1 = list(a["first_transpose"])[:rank]
    if perm1 != list(range(rank)):
        steps.append(("Transpose", dict(perm=perm1), []))
    out_rank = rank
    if a.get("reshape_dims") is not None:
        dims = list(a["reshape_dims"])
        out_rank = len(dims)
        steps.append(("Reshape", dict(allowzero=0 if a["zero_is_placeholder"] else 1),
                      [g.int64s(dims, f"{name}/reshape_dims")]))
    perm2 = list(a["second_transpose"])[:out_rank]
    if perm2 != list(range(out_rank)):
        steps.append(("Transpose", dict(perm=perm2), []))
    if not steps:
        steps.append(("Identity", {}, []))
    y = xs[0]
    for i, (op, attrs, extra) in enumerate(steps):
        y = g.node(op, [y, *extra], f"{name}/{op.lower()}{i}" if i < len(steps) - 1 else name,
                   outputs=ys if i == len(steps) - 1 else None, **attrs)[0]


_INT64_MIN = np.iinfo(np.int64).min


def slice_(g: OnnxGraph, layer, xs, ys):
    """TensorRT's (start, shape, stride) as ONNX's (starts, ends, axes, steps); a negative stride ends before 0."""
    a, name = layer._attrs, layer.name
    starts, ends, steps = [], [], []
    for s, n, st in zip(a["start"], a["shape"], a["stride"]):
        end = s + (n - 1) * st + (1 if st > 0 else -1) if n > 0 else s
        if end < 0:  # ONNX reads a negative end from the back: "before index 0" is INT64_MIN
            end = _INT64_MIN
        starts.append(s)
        ends.append(end)
        steps.append(st)
    rank = len(starts)
    g.node("Slice", [xs[0], g.int64s(starts, f"{name}/starts"), g.int64s(ends, f"{name}/ends"),
                     g.int64s(range(rank), f"{name}/axes"), g.int64s(steps, f"{name}/steps")], name, outputs=ys)


def padding(g: OnnxGraph, layer, xs, ys):
    """Zeros around the two innermost axes: ONNX Pad (constant 0), whose negative pads trim as TensorRT's do."""
    a, name = layer._attrs, layer.name
    lead = [0] * (len(layer._inputs[0].shape) - 2)
    pads = lead + [int(p) for p in a["pre_padding_nd"]] + lead + [int(p) for p in a["post_padding_nd"]]
    g.node("Pad", [xs[0], g.int64s(pads, f"{name}/pads")], name, outputs=ys, mode="constant")


def resize(g: OnnxGraph, layer, xs, ys):
    a, name = layer._attrs, layer.name
    x = layer._inputs[0]
    mode, transform = a["resize_mode"], a["coordinate_transformation"]
    attrs = dict(mode={trt.InterpolationMode.NEAREST: "nearest", trt.InterpolationMode.LINEAR: "linear",
                       trt.InterpolationMode.CUBIC: "cubic"}[mode],
                 coordinate_transformation_mode={
                     trt.ResizeCoordinateTransformation.ASYMMETRIC: "asymmetric",
                     trt.ResizeCoordinateTransformation.HALF_PIXEL: "half_pixel",
                     trt.ResizeCoordinateTransformation.ALIGN_CORNERS: "align_corners"}[transform],
                 exclude_outside=int(a["exclude_outside"]), cubic_coeff_a=float(a["cubic_coeff"]))
    if mode == trt.InterpolationMode.NEAREST:
        rounding = {trt.ResizeRoundMode.FLOOR: "floor", trt.ResizeRoundMode.CEIL: "ceil",
                    trt.ResizeRoundMode.HALF_DOWN: "round_prefer_floor",
                    trt.ResizeRoundMode.HALF_UP: "round_prefer_ceil"}
        attrs["nearest_mode"] = rounding[a["nearest_rounding"]]
    if a["selector_for_single_pixel"] != trt.ResizeSelector.FORMULA:
        raise _fail(layer, f"selector_for_single_pixel {a['selector_for_single_pixel']} has no ONNX form")
    if a.get("scales") is not None:
        g.node("Resize", [xs[0], "", g.const(np.asarray(a["scales"], np.float32), f"{name}/scales")], name,
               outputs=ys, **attrs)
        return
    target = list(a["shape"])
    if any(d < 0 for d in target):  # a dynamic dimension keeps the input's size (resize is spatial only)
        known = [d for d in x.shape]
        if any(t < 0 and k >= 0 for t, k in zip(target, known)):
            raise _fail(layer, f"resize shape {tuple(target)} has a -1 where the input is static")
        shape = g.op("Shape", [xs[0]], f"{name}/input_shape")
        keep = g.int64s([1 if t < 0 else 0 for t in target], f"{name}/dynamic")
        fixed = g.int64s([max(t, 0) for t in target], f"{name}/fixed")
        sizes = g.op("Add", [g.op("Mul", [shape, keep], f"{name}/dynamic_sizes"), fixed], f"{name}/sizes")
    else:
        sizes = g.int64s(target, f"{name}/sizes")
    g.node("Resize", [xs[0], "", "", sizes], name, outputs=ys, **attrs)


def matrix_multiply(g: OnnxGraph, layer, xs, ys):
    """TRANSPOSE swaps the last two axes; VECTOR operands are unsqueezed into matrices and squeezed back."""
    name, ops = layer.name, (layer._attrs["op0"], layer._attrs["op1"])
    operands = []
    for i, (x, op, t) in enumerate(zip(xs, ops, layer._inputs)):
        rank = len(t.shape)
        if op == trt.MatrixOperation.TRANSPOSE:
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            x = g.op("Transpose", [x], f"{name}/transpose{i}", perm=perm)
        elif op == trt.MatrixOperation.VECTOR:
            x = g.op("Unsqueeze", [x, g.int64s([-2 if i == 0 else -1], f"{name}/vec{i}")], f"{name}/vector{i}")
        operands.append(x)
    squeeze = [axis for axis, op in ((-2, ops[0]), (-1, ops[1])) if op == trt.MatrixOperation.VECTOR]
    if not squeeze:
        g.node("MatMul", operands, name, outputs=ys)
        return
    y = g.op("MatMul", operands, f"{name}/matmul")
    if len(squeeze) == 2:
        squeeze = [-2, -1]  # (..., 1, 1)
    g.node("Squeeze", [y, g.int64s(squeeze, f"{name}/squeeze_axes")], name, outputs=ys)


def constant(g: OnnxGraph, layer, xs, ys):
    from onnx import helper, numpy_helper
    array = layer._weights["weights"].reshape(tuple(layer._attrs["shape"]))
    g.nodes.append(helper.make_node("Constant", [], ys, name=g.node_name(layer.name),
                                    value=numpy_helper.from_array(np.array(array, order="C"))))  # keeps rank 0


_REDUCE = {"SUM": "ReduceSum", "AVG": "ReduceMean", "MAX": "ReduceMax", "MIN": "ReduceMin", "PROD": "ReduceProd"}


def _axes(mask: int, rank: int) -> list[int]:
    return [axis for axis in range(rank) if mask >> axis & 1]


def reduce(g: OnnxGraph, layer, xs, ys):
    op, name = layer._attrs["op"].name, layer.name
    if op not in _REDUCE:
        raise _fail(layer, f"reduce op {op} has no ONNX form in the zoo's writer")
    axes = _axes(layer._attrs["axes"], len(layer._inputs[0].shape))
    keep = int(layer._attrs["keep_dims"])
    if op == "SUM":  # opset 13+: ReduceSum takes its axes as an input; the others as an attribute until opset 18
        g.node("ReduceSum", [xs[0], g.int64s(axes, f"{name}/axes")], name, outputs=ys, keepdims=keep)
    else:
        g.node(_REDUCE[op], [xs[0]], name, outputs=ys, axes=axes, keepdims=keep)


def normalization(g: OnnxGraph, layer, xs, ys):
    """(x - mean) / sqrt(biased var + eps) * S + B over the axes of the bitmask, written out (ONNX's
    LayerNormalization covers trailing axes only); one rounding, as TensorRT's single kernel, via FP32."""
    if layer._attrs["num_groups"] != 1:
        raise _fail(layer, "group normalization has no ONNX form in the zoo's writer")
    name = layer.name
    (x, scale_, bias), (y,), _ = _computed_in_fp32(g, layer, xs, ys)
    axes = _axes(layer._attrs["axes"], len(layer._inputs[0].shape))
    centred = g.op("Sub", [x, g.op("ReduceMean", [x], f"{name}/mean", axes=axes, keepdims=1)], f"{name}/centred")
    var = g.op("ReduceMean", [g.op("Mul", [centred, centred], f"{name}/square")], f"{name}/var", axes=axes,
               keepdims=1)
    eps = g.const(np.array(layer._attrs["epsilon"], np.float32), f"{name}/epsilon", np.float32)
    std = g.op("Sqrt", [g.op("Add", [var, eps], f"{name}/var_eps")], f"{name}/std")
    normalized = g.op("Div", [centred, std], f"{name}/normalized")
    g.node("Add", [g.op("Mul", [normalized, scale_], f"{name}/scaled"), bias], name, outputs=[y])


def softmax(g: OnnxGraph, layer, xs, ys):
    axes = _axes(layer._attrs["axes"], len(layer._inputs[0].shape))
    g.node("Softmax", [xs[0]], layer.name, outputs=ys, axis=axes[0])  # opset 13+: one axis, as TensorRT's


def topk(g: OnnxGraph, layer, xs, ys):
    a, name = layer._attrs, layer.name
    axis = _axes(a["axes"], len(layer._inputs[0].shape))[0]
    k = g.int64s([a["k"]], f"{name}/k")
    largest = int(a["op"] == trt.TopKOperation.MAX)
    if a["indices_type"] == trt.int64:
        g.node("TopK", [xs[0], k], name, outputs=ys, axis=axis, largest=largest, sorted=1)
        return
    indices = g.fresh(f"{name}/indices_int64")
    g.node("TopK", [xs[0], k], name, outputs=[ys[0], indices], axis=axis, largest=largest, sorted=1)
    g.node("Cast", [indices], f"{name}/indices", outputs=[ys[1]], to=onnx_type(a["indices_type"]))


def gather(g: OnnxGraph, layer, xs, ys):
    a = layer._attrs
    if a["mode"] != trt.GatherMode.DEFAULT or a["num_elementwise_dims"] not in (0, 1):
        raise _fail(layer, f"gather mode {a['mode']} with {a['num_elementwise_dims']} elementwise dims has no ONNX "
                           f"form in the zoo's writer")
    if a["num_elementwise_dims"]:
        batched_gather(g, layer, xs, ys)
        return
    g.node("Gather", xs, layer.name, outputs=ys, axis=a["axis"])


def batched_gather(g: OnnxGraph, layer, xs, ys):
    """One elementwise (batch) dim, indices (B, k): GatherElements on the indices unsqueezed to the data's rank and
    expanded over its other static dims (B, ..., k at axis, ...)."""
    data, axis = layer._inputs[0].shape, layer._attrs["axis"]
    if len(layer._inputs[1].shape) != 2 or any(d < 0 for i, d in enumerate(data) if i not in (0, axis)):
        raise _fail(layer, "a batched gather needs indices (B, k) and static data dims besides batch and axis")
    name = layer.name
    others = [i for i in range(1, len(data)) if i != axis]
    indices = g.op("Unsqueeze", [xs[1], g.int64s(others, f"{name}/axes")], f"{name}/unsqueeze") if others else xs[1]
    sizes = [1 if i in (0, axis) else d for i, d in enumerate(data)]
    indices = g.op("Expand", [indices, g.int64s(sizes, f"{name}/sizes")], f"{name}/expand")
    g.node("GatherElements", [xs[0], indices], name, outputs=ys, axis=axis)


# ----------------------------------------------------------------------------------------------------------------
# quantization and plugins


def _scale_axis(layer) -> dict:
    scale = layer._inputs[1]
    return {} if int(np.prod(scale.shape)) == 1 else {"axis": layer._attrs["axis"]}


def _scale_shape(layer) -> tuple:
    """ONNX wants a scalar (per tensor) or a 1-D scale (per channel); TensorRT allows any shape of one value."""
    return tuple(layer._inputs[1].shape) if _scale_axis(layer) else ()


def _scale_and_zero_point(g: OnnxGraph, layer) -> list[str]:
    """The scale as an initializer (the build-time constant the reference backend insists on; TensorRT's ONNX parser
    wants Q/DQ scales as initializers too) and an INT8 zero point of 0 (TensorRT's quantization is symmetric)."""
    scale = layer._inputs[1]._layer._weights["weights"].astype(np.float32).reshape(_scale_shape(layer))
    return [g.const(scale, f"{layer.name}/scale"),
            g.const(np.zeros(_scale_shape(layer), np.int8), f"{layer.name}/zero_point")]


def quantize(g: OnnxGraph, layer, xs, ys):
    """q = clamp(round_half_even(x / scale), -128, 127), in FP32 (an FP16 input is cast up first)."""
    x = xs[0]
    if layer._inputs[0].dtype != trt.float32:
        x = g.op("Cast", [x], f"{layer.name}/to_fp32", to=onnx_type(trt.float32))
    g.node("QuantizeLinear", [x, *_scale_and_zero_point(g, layer)], layer.name, outputs=ys, **_scale_axis(layer))


def dequantize(g: OnnxGraph, layer, xs, ys):
    """x = q * scale in FP32, then cast to the layer's output type."""
    name, to_type = layer.name, layer._attrs["to_type"]
    inputs = [xs[0], *_scale_and_zero_point(g, layer)]
    if to_type == trt.float32:
        g.node("DequantizeLinear", inputs, name, outputs=ys, **_scale_axis(layer))
        return
    y = g.op("DequantizeLinear", inputs, f"{name}/fp32", **_scale_axis(layer))
    g.node("Cast", [y], name, outputs=ys, to=onnx_type(to_type))


def plugin(g: OnnxGraph, layer, xs, ys):
    op_id = layer._attrs["op_id"]
    specs = [(tuple(t.shape), t.dtype) for t in layer._inputs]
    onnx_form(op_id, layer.name)(g, xs, ys, specs=specs, name=layer.name, **layer._plugin_attrs())


TRANSLATORS = {
    "IConvolutionLayer": convolution,
    "IDeconvolutionLayer": deconvolution,
    "IPoolingLayer": pooling,
    "IScaleLayer": scale,
    "IActivationLayer": activation,
    "IUnaryLayer": unary,
    "IElementWiseLayer": elementwise,
    "ISelectLayer": select,
    "IParametricReLULayer": parametric_relu,
    "INormalizationLayer": normalization,
    "IConcatenationLayer": concatenation,
    "IResizeLayer": resize,
    "IShuffleLayer": shuffle,
    "ISliceLayer": slice_,
    "IPaddingLayer": padding,
    "IMatrixMultiplyLayer": matrix_multiply,
    "IConstantLayer": constant,
    "IReduceLayer": reduce,
    "ISoftMaxLayer": softmax,
    "ITopKLayer": topk,
    "IGatherLayer": gather,
    "ICastLayer": cast,
    "IIdentityLayer": identity,
    "IQuantizeLayer": quantize,
    "IDequantizeLayer": dequantize,
    "IPluginV3Layer": plugin,
}
