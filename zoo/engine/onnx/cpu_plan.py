"""An INT8 model as ONNX Runtime's CPU kernels run it fastest, computing what the engine computes.

Applied when a model is loaded to run (never to an export, which stays the faithful translation of the network).
Models without Q/DQ pass through unchanged.

The zoo's INT8 network is the FP16 network plus Q/DQ pairs on the inputs and weights of every convolution (as
TensorRT takes explicit quantization). A CPU has no fast FP16 arithmetic, and ONNX Runtime's integer convolution
(QLinearConv) is fast only for unsigned activations and when the output is quantized too. So, exactly:

1. FP16 becomes FP32 (weights, casts, the input): TensorRT's INT8 engine keeps its unquantized layers in FP16 on
   a GPU; on a CPU, FP32 is both faster and closer to FP32 than the GPU engine is.
2. A convolution whose input and weights come from Q/DQ, and whose output (through ReLU or a clamp such as ReLU6)
   is read only by QuantizeLinear nodes of one scale, becomes one QLinearConv writing that quantized tensor, with
   the clamp applied to the integers: round(clamp(y, a, b) / s) = clamp(round(y / s), round(a / s), round(b / s))
   because rounding is monotonic, so nothing but the bias (rounded to the int32 accumulator's scale) changes.
   Activations are uint8 with zero point 128: q_u8 = q_s8 + 128 for every value, so the arithmetic is the signed
   one, on the kernels ONNX Runtime has fast (u8 x s8).
3. Everything else (a convolution feeding a residual Add, the classifier's matrix multiply) stays a float op on the
   dequantized values, as before; weights behind Q/DQ are dequantized once, here, into constants.
"""
from __future__ import annotations

import copy

import numpy as np

U8_ZERO = 128


def prepare_for_cpu(model):
    """The model to run: rewritten as above when it holds Q/DQ, else `model` itself."""
    if not any(n.op_type == "DequantizeLinear" for n in model.graph.node):
        return model
    model = copy.deepcopy(model)
    _to_fp32(model)
    _drop_identity_casts(model)
    _QuantizedConvs(model).fuse()
    _fold_constant_dequantize(model)
    _topological_sort(model.graph)  # the new nodes were appended: order first, so that pruning sees every reader
    _prune(model)
    return model


# ----------------------------------------------------------------------------------------------------------------
# 1. FP16 -> FP32


def _to_fp32(model) -> None:
    from onnx import TensorProto, numpy_helper
    graph = model.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT16:
                attribute.i = TensorProto.FLOAT
            if attribute.HasField("t") and attribute.t.data_type == TensorProto.FLOAT16:
                attribute.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(attribute.t).astype(np.float32), attribute.t.name))
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT


def _drop_identity_casts(model) -> None:
    """Casts to FP32 of values that are FP32 now (they cast to FP16 before step 1)."""
    import onnx
    from onnx import TensorProto
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    outputs = {o.name for o in model.graph.output}
    alias = {}
    keep = []
    for node in model.graph.node:
        source = alias.get(node.input[0], node.input[0]) if node.input else None
        if node.op_type == "Cast" and node.output[0] not in outputs and types.get(source) == TensorProto.FLOAT \
                and node.attribute[0].i == TensorProto.FLOAT:
            alias[node.output[0]] = source
            continue
        keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    del model.graph.node[:]
    model.graph.node.extend(keep)


# ----------------------------------------------------------------------------------------------------------------
# 2. quantized convolutions


class _QuantizedConvs:
    def __init__(self, model):
        from onnx import numpy_helper
        self.graph = model.graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.twin: dict[str, str] = {}        # int8 tensor name -> its uint8 twin (zero point 128)
        self.replaced: dict[str, float] = {}  # int8 tensors a fused convolution now writes: name -> scale
        self.removed: set[int] = set()
        self.added: list = []
        self.new_initializers: list = []

    def fuse(self) -> None:
        for node in list(self.graph.node):
            if node.op_type == "Conv":
                plan = self._match(node)
                if plan is not None:
                    self._emit(node, *plan)
        self._redirect_dequantize()
        nodes = [n for n in self.graph.node if id(n) not in self.removed] + self.added
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.new_initializers)

    # -- matching
    def _scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        return float(value) if value is not None and value.size == 1 else None

    def _zero(self, node) -> bool:
        """The Q/DQ's zero point is absent or all 0 (int8)."""
        if len(node.input) < 3 or not node.input[2]:
            return True
        value = self.constants.get(node.input[2])
        return value is not None and value.dtype == np.int8 and not value.any()

    def _only_consumer(self, name: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.graph_outputs else None

    def _match(self, conv):
        dqx = self.producer.get(conv.input[0])
        dqw = self.producer.get(conv.input[1])
        if not (dqx is not None and dqx.op_type == "DequantizeLinear" and self._zero(dqx)
                and self._scalar(dqx.input[1]) is not None):
            return None
        qx = self.producer.get(dqx.input[0])
        if qx is None or qx.op_type != "QuantizeLinear" or not self._zero(qx) or \
                self._scalar(qx.input[1]) != self._scalar(dqx.input[1]):
            return None
        weights = self._quantized_weights(dqw)
        if weights is None or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in self.constants):
            return None
        value, clamp, chain = conv.output[0], None, [conv]
        user = self._only_consumer(value)
        if user is not None and user.op_type == "Relu":
            value, clamp, chain = user.output[0], (0.0, None), chain + [user]
        elif user is not None and user.op_type == "Min" and self._scalar(user.input[1]) is not None:
            after = self._only_consumer(user.output[0])
            if after is not None and after.op_type == "Max" and self._scalar(after.input[1]) is not None:
                low, high = self._scalar(after.input[1]), self._scalar(user.input[1])
                if low <= high:
                    value, clamp, chain = after.output[0], (low, high), chain + [user, after]
        users = self.consumers.get(value, [])
        if not users or value in self.graph_outputs or any(
                u.op_type != "QuantizeLinear" or not self._zero(u) or self._scalar(u.input[1]) is None
                or u.output[0] in self.graph_outputs for u in users):
            return None
        scales = {self._scalar(u.input[1]) for u in users}
        if len(scales) != 1 or not all(weights[1]) or not self._scalar(dqx.input[1]) or not min(scales) > 0:
            return None  # a zero scale (an all-zero weight channel) has no integer form: the float path keeps it
        if len(conv.input) > 2 and conv.input[2]:  # the bias must fit the int32 accumulator at scale x * w
            bias = self.constants[conv.input[2]].astype(np.float64)
            if not np.all(np.abs(bias / (self._scalar(dqx.input[1]) * weights[1].astype(np.float64))) < 2 ** 31 - 1):
                return None
        return qx, self._scalar(dqx.input[1]), weights, clamp, chain, users, scales.pop()

    def _quantized_weights(self, dqw):
        """(int8 weights, per-output-channel scales) behind a weight DQ, or None (also for a zero scale, which
        QuantizeLinear divides by)."""
        if dqw is None or dqw.op_type != "DequantizeLinear" or not self._zero(dqw):
            return None
        scale = self.constants.get(dqw.input[1])
        source = self.producer.get(dqw.input[0])
        if scale is None or not np.all(scale):
            return None
        if dqw.input[0] in self.constants and self.constants[dqw.input[0]].dtype == np.int8:
            q = self.constants[dqw.input[0]]
        elif source is not None and source.op_type == "QuantizeLinear" and source.input[0] in self.constants \
                and self._zero(source) and np.array_equal(self.constants.get(source.input[1]), scale):
            q = _quantize(self.constants[source.input[0]], scale, _axis(source))
        else:
            return None
        if scale.size not in (1, q.shape[0]) or (scale.size > 1 and _axis(dqw) != 0):
            return None
        return q, np.broadcast_to(scale.astype(np.float32).reshape(-1), (q.shape[0],)).copy()

    # -- writing
    def _emit(self, conv, qx, x_scale, weights, clamp, chain, users, y_scale) -> None:
        from onnx import helper, numpy_helper
        name = conv.output[0]
        w_q, w_scale = weights
        x_u8 = self._twin_of(qx.output[0], qx, x_scale)
        inits = {f"{name}/w_q": w_q, f"{name}/w_scale": w_scale,
                 f"{name}/w_zero": np.zeros(w_q.shape[0], np.int8),
                 f"{name}/x_scale": np.array(x_scale, np.float32), f"{name}/y_scale": np.array(y_scale, np.float32),
                 f"{name}/u8_zero": np.array(U8_ZERO, np.uint8)}
        inputs = [x_u8, f"{name}/x_scale", f"{name}/u8_zero", f"{name}/w_q", f"{name}/w_scale", f"{name}/w_zero",
                  f"{name}/y_scale", f"{name}/u8_zero"]
        if len(conv.input) > 2 and conv.input[2]:
            bias = self.constants[conv.input[2]].astype(np.float64)
            inits[f"{name}/bias_q"] = np.round(bias / (x_scale * w_scale.astype(np.float64))).astype(np.int32)
            inputs.append(f"{name}/bias_q")
        self.new_initializers += [numpy_helper.from_array(v, k) for k, v in inits.items()]
        out = f"{name}/qlinear_u8"
        self.added.append(helper.make_node("QLinearConv", inputs, [out], name=f"{name}/qlinear",
                                           **{a.name: helper.get_attribute_value(a) for a in conv.attribute}))
        if clamp is not None:
            low, high = (_u8(v, y_scale) if v is not None else 255 for v in clamp)
            self.new_initializers += [numpy_helper.from_array(np.array(low, np.uint8), f"{name}/clamp_low"),
                                      numpy_helper.from_array(np.array(high, np.uint8), f"{name}/clamp_high")]
            self.added.append(helper.make_node("Clip", [out, f"{name}/clamp_low", f"{name}/clamp_high"],
                                               [f"{out}/clamped"], name=f"{name}/clamp"))
            out = f"{out}/clamped"
        for node in chain + users:
            self.removed.add(id(node))
        for q in users:
            self.twin[q.output[0]] = out
            self.replaced[q.output[0]] = y_scale

    def _twin_of(self, int8_name: str, q_node, scale: float) -> str:
        """The uint8 form of an int8 tensor: a fused producer's output, or a second QuantizeLinear beside it."""
        from onnx import helper, numpy_helper
        if int8_name not in self.twin:
            twin = f"{int8_name}/u8"
            zero = f"{int8_name}/u8_zero"
            self.new_initializers.append(numpy_helper.from_array(np.array(U8_ZERO, np.uint8), zero))
            self.added.append(helper.make_node("QuantizeLinear", [q_node.input[0], q_node.input[1], zero], [twin],
                                               name=f"{int8_name}/quantize_u8"))
            self.twin[int8_name] = twin
        return self.twin[int8_name]

    def _redirect_dequantize(self) -> None:
        """Readers of an int8 tensor that a fused convolution replaced read its uint8 twin instead."""
        from onnx import numpy_helper
        for node in self.graph.node:
            if id(node) in self.removed:
                continue
            for i, name in enumerate(node.input):
                if name not in self.replaced:
                    continue
                if node.op_type != "DequantizeLinear" or i != 0:
                    raise ValueError(f"{node.op_type} reads the quantized tensor {name}")
                zero = f"{name}/u8_zero_dq"
                if not any(t.name == zero for t in self.new_initializers):
                    self.new_initializers.append(numpy_helper.from_array(np.array(U8_ZERO, np.uint8), zero))
                node.input[0] = self.twin[name]
                if len(node.input) > 2:
                    node.input[2] = zero
                else:
                    node.input.append(zero)


def _axis(node) -> int:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return attribute.i
    return 1


def _quantize(values: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """QuantizeLinear's arithmetic: round half to even, saturate to int8."""
    if scale.size > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    return np.clip(np.rint(values.astype(np.float32) / scale.astype(np.float32)), -128, 127).astype(np.int8)


def _u8(value: float, scale: float) -> int:
    return int(np.clip(np.rint(np.float32(value) / np.float32(scale)) + U8_ZERO, 0, 255))


# ----------------------------------------------------------------------------------------------------------------
# 3. constant weights dequantized once; dead nodes; order


def _fold_constant_dequantize(model) -> None:
    from onnx import numpy_helper
    graph = model.graph
    folder = _QuantizedConvs(model)
    keep, added = [], []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] not in folder.graph_outputs:
            weights = folder._quantized_weights(node)
            if weights is not None and all(weights[1]):
                q, scale = weights
                shape = [-1] + [1] * (q.ndim - 1)
                added.append(numpy_helper.from_array(q.astype(np.float32) * scale.reshape(shape), node.output[0]))
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(added)


def _prune(model) -> None:
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _topological_sort(graph) -> None:
    produced = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in produced for i in n.input)]
        if not ready:
            missing = sorted({i for n in pending for i in n.input if i not in produced})
            raise ValueError(f"the rewritten graph has a cycle or undefined inputs {missing[:5]}")
        for node in ready:
            produced.update(node.output)
        ordered += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)
