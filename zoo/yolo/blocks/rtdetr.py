"""RTDETRDecoder: RT-DETR's head, as a head block of the walker (facts: docs/rtdetr.md, upstream `nn/modules/head.py`
and `transformer.py`). Its eval computation, which both the reference module and the network do:

1. input_proj.i: 1x1 conv (no bias) + BatchNorm (eps 1e-5) per level to hd channels; each map flattened row-major
   to tokens and the levels concatenated: feats (B, A, hd).
2. anchors per level i of an H x W map: ((x + 0.5) / W, (y + 0.5) / H, 0.05 * 2^i, 0.05 * 2^i) as logits; an anchor
   with any value outside (0.01, 0.99) is invalid: its features are zeroed and its logit is +inf.
3. enc_output (Linear, LayerNorm) of the masked features; enc_score_head logits; the K = min(nq, A) anchors whose
   best class logit is highest (top-k), their features and anchors gathered; refer = enc_bbox_head(features) +
   anchor logits; the embeddings are those features.
4. decoder layers 0 .. eval_idx: with boxes b = sigmoid(refer) (then the refined boxes), pos = query_pos_head(b);
   self-attention (q = k = embed + pos, v = embed) + norm1; multi-scale deformable attention of embed + pos over
   value_proj(feats) at sampling points b_xy + offset / ndp * b_wh / 2 + norm2; FFN (ReLU) + norm3. After each layer
   the boxes are refined: sigmoid(dec_bbox_head.i(embed) + inverse_sigmoid(b)).
5. At eval_idx: scores = sigmoid(dec_score_head(embed)) (B, K, nc); the top min(nq, K * nc) (query, class) pairs by
   score; output (B, k, 6) [cx, cy, w, h, score, class], boxes normalised to the input.

On the network the top-k selections are TopK layers and the gathers are matrix multiplies with a one-hot matrix
built from the top-k indices (an EQUAL against a constant 0..A-1): exact, with a dynamic batch, and made of layers
every executor has. Invalid anchors get a large finite logit (1e4) instead of +inf there (0 * inf would be NaN in
the one-hot product; sigmoid(1e4) is exactly 1, as sigmoid(inf) is). The anchors and the valid mask are constants
for the engine's input size. The deformable attention is `plugins.ms_deform_attn` in the form `Options.attention`.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import layers
from plugins.ms_deform_attn import add_ms_deform_attn, ms_deform_attn_reference
from layers.core import shuffle as core_shuffle
from layers.transformer import layer_norm, multi_head_attention
from zoo.trt_api import trt
from zoo.yolo.registry import Block, TableError, options, register

INVALID_LOGIT = 1e4     # the network's stand-in for upstream's +inf logit of an invalid anchor
EPS = 1e-5              # inverse_sigmoid's clamp
DECODER_FP32 = True      # FP16 builds: the decoder after input_proj in FP32 (docs/rtdetr.md, Precision)


# ------------------------------------------------------------------------------------------- reference modules


def inverse_sigmoid(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def anchor_logits(shapes, grid_size: float = 0.05, eps: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """((1, A, 4) FP32 anchor logits with +inf where invalid, (1, A, 1) valid mask) for level shapes ((H, W), ...)."""
    anchors = []
    for i, (h, w) in enumerate(shapes):
        gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        xy = torch.stack([(gx + 0.5) / w, (gy + 0.5) / h], -1)
        wh = torch.full_like(xy, grid_size * 2.0 ** i)
        anchors.append(torch.cat([xy, wh], -1).view(1, h * w, 4))
    anchors = torch.cat(anchors, 1)
    valid = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
    logits = torch.log(anchors / (1 - anchors)).masked_fill(~valid, float("inf"))
    return logits.numpy(), valid.numpy()


class MLP(nn.Module):
    """Linear layers with ReLU between them (`layers.<i>`)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim, *h], [*h, output_dim]))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class MSDeformAttn(nn.Module):
    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, boxes, value, shapes):
        """query (B, Q, C), boxes (B, Q, 4) normalised cxcywh, value (B, A, C)."""
        b, q = query.shape[:2]
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value).view(b, value.shape[1], m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(b, q, m, n_levels, n_points, 2)
        weights = F.softmax(self.attention_weights(query).view(b, q, m, n_levels * n_points), -1)
        boxes = boxes[:, :, None, None, None, :]
        locations = boxes[..., :2] + offsets / n_points * boxes[..., 2:] * 0.5
        inputs = (value, locations, weights.view(b, q, m, n_levels, n_points))
        if value.dtype == torch.float64:  # the op is FP32/FP16; random weights calibrate BatchNorm in float64
            inputs = tuple(t.float() for t in inputs)
        return self.output_proj(ms_deform_attn_reference(*inputs, shapes).to(value.dtype))


class DecoderLayer(nn.Module):
    """Upstream's DeformableTransformerDecoderLayer (post-norm, ReLU feed-forward)."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, n_levels: int, n_points: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)  # same weights as upstream's
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.act = nn.ReLU()
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, embed, boxes, feats, shapes, query_pos):
        q = embed + query_pos
        embed = self.norm1(embed + self.self_attn(q, q, embed)[0])
        embed = self.norm2(embed + self.cross_attn(embed + query_pos, boxes, feats, shapes))
        return self.norm3(embed + self.linear2(self.act(self.linear1(embed))))


class Decoder(nn.Module):
    """Holds the layers (`decoder.layers.<i>`); RTDETRDecoder runs them (the heads live beside, not inside)."""

    def __init__(self, hd: int, nh: int, d_ffn: int, n_levels: int, ndp: int, ndl: int, eval_idx: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(hd, nh, d_ffn, n_levels, ndp) for _ in range(ndl))
        self.eval_idx = eval_idx if eval_idx >= 0 else ndl + eval_idx


class RTDETRDecoder(nn.Module):
    """Eval output (B, min(nq, K * nc), 6): [cx, cy, w, h, score, class], boxes normalised, scores descending."""

    def __init__(self, nc: int = 80, ch=(512, 1024, 2048), hd: int = 256, nq: int = 300, ndp: int = 4, nh: int = 8,
                 ndl: int = 6, d_ffn: int = 1024, dropout: float = 0.0, act=None, eval_idx: int = -1, nd: int = 100,
                 label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0, learnt_init_query: bool = False):
        super().__init__()
        if learnt_init_query or act is not None or dropout:
            raise TableError("RTDETRDecoder: learnt_init_query, another activation or dropout is not supported")
        self.hidden_dim, self.nhead, self.nl, self.nc, self.num_queries = hd, nh, len(ch), nc, nq
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(x, hd, 1, bias=False), nn.BatchNorm2d(hd))
                                        for x in ch)
        self.decoder = Decoder(hd, nh, d_ffn, len(ch), ndp, ndl, eval_idx)
        self.denoising_class_embed = nn.Embedding(nc, hd)   # training only (denoising queries)
        self.query_pos_head = MLP(4, 2 * hd, hd, num_layers=2)
        self.enc_output = nn.Sequential(nn.Linear(hd, hd), nn.LayerNorm(hd))
        self.enc_score_head = nn.Linear(hd, nc)
        self.enc_bbox_head = MLP(hd, hd, 4, num_layers=3)
        self.dec_score_head = nn.ModuleList(nn.Linear(hd, nc) for _ in range(ndl))
        self.dec_bbox_head = nn.ModuleList(MLP(hd, hd, 4, num_layers=3) for _ in range(ndl))

    def encoder_input(self, xs):
        maps = [proj(x) for proj, x in zip(self.input_proj, xs)]
        return torch.cat([m.flatten(2).permute(0, 2, 1) for m in maps], 1), [tuple(m.shape[2:]) for m in maps]

    def forward(self, xs):
        feats, shapes = self.encoder_input(xs)
        b = feats.shape[0]
        anchors, valid = (torch.from_numpy(a).to(feats) for a in anchor_logits(shapes))
        features = self.enc_output(valid * feats)
        enc_scores = self.enc_score_head(features)
        k = min(self.num_queries, features.shape[1])
        index = enc_scores.max(-1).values.topk(k, dim=1).indices                       # (B, K)
        embed = features.gather(1, index[..., None].expand(-1, -1, features.shape[-1]))
        refer = self.enc_bbox_head(embed) + anchors.expand(b, -1, -1).gather(1, index[..., None].expand(-1, -1, 4))
        boxes = refer.sigmoid()
        for i, layer in enumerate(self.decoder.layers[:self.decoder.eval_idx + 1]):
            embed = layer(embed, boxes, feats, shapes, self.query_pos_head(boxes))
            boxes = torch.sigmoid(self.dec_bbox_head[i](embed) + inverse_sigmoid(boxes))
        scores = self.dec_score_head[self.decoder.eval_idx](embed).sigmoid()
        top = min(self.num_queries, scores.shape[1] * self.nc)
        values, flat = scores.flatten(1).topk(top, dim=1)
        query = torch.div(flat, self.nc, rounding_mode="floor")
        picked = boxes.gather(1, query[..., None].expand(-1, -1, 4))
        return torch.cat([picked, values[..., None], (flat - query * self.nc)[..., None].float()], -1)


# ----------------------------------------------------------------------------------------------- the network


def _constant(net, array: np.ndarray, name: str, dtype):
    return layers.constant(net, np.ascontiguousarray(array, dtype), name)


def mlp(net, weights, prefix: str, x, hidden: int, out: int, num_layers: int, name: str | None = None):
    """MLP on the network, named as the module's outputs: `prefix` on its first call, `name` (`prefix#k`) on the
    k-th, so that every layer of a reused MLP keeps a distinct name."""
    name = name or prefix
    suffix = name[len(prefix):]
    for i in range(num_layers):
        last = i == num_layers - 1
        key = f"{prefix}.layers.{i}"
        w = weights.take(f"{key}.weight", (out if last else hidden, x.shape[-1]))
        x = layers.linear_from_arrays(net, weights, f"{key}{suffix}", x, w, weights.take(f"{key}.bias", (len(w),)))
        if not last:
            x = layers.activation(net, x, "relu", f"{prefix}/relu{i}{suffix}")
    return layers.rename(x, name)


def _gather_rows(net, data, index, count: int, name: str):
    """data (B or 1, N, C) rows picked by index (B, K) int32 -> (B, K, C): a one-hot (B, K, N) matrix times data."""
    columns = _constant(net, np.arange(count, dtype=np.int32).reshape(1, 1, count), f"{name}/columns", np.int32)
    rows = core_shuffle(net, index, f"{name}/index", reshape=(0, 0, 1))
    hit = layers.named(net.add_elementwise(rows, columns, trt.ElementWiseOperation.EQUAL), f"{name}/equal")
    one_hot = layers.cast(net, hit, data.dtype, f"{name}/one_hot")
    return layers.named(net.add_matrix_multiply(one_hot, trt.MatrixOperation.NONE, data, trt.MatrixOperation.NONE),
                        name)


def _topk(net, x, k: int, name: str):
    """Top k along the last axis of (B, N): (values, int32 indices)."""
    layer = net.add_topk(x, trt.TopKOperation.MAX, k, 1 << (len(x.shape) - 1))
    layer.name = name
    values, indices = layer.get_output(0), layer.get_output(1)
    values.name, indices.name = f"{name}/values", f"{name}/indices"
    return values, indices


def _scalar(net, value: float, rank: int, dtype, name: str):
    return _constant(net, np.full((1,) * rank, value), name, dtype)


def _elementwise(net, a, b, op, name: str):
    return layers.named(net.add_elementwise(a, b, op), name)


def _clip(net, x, low: float, high: float, name: str):
    layer = net.add_activation(x, trt.ActivationType.CLIP)
    layer.alpha, layer.beta = low, high
    return layers.named(layer, name)


def _inverse_sigmoid(net, x, name: str):
    """log(clamp(x, eps, 1) / clamp(1 - x, eps, 1)): upstream's inverse_sigmoid for x in [0, 1]."""
    dtype = layers.weight_dtype(x)
    one = _scalar(net, 1.0, len(x.shape), dtype, f"{name}/one")
    top = _clip(net, x, EPS, 1.0, f"{name}/x")
    bottom = _clip(net, _elementwise(net, one, x, trt.ElementWiseOperation.SUB, f"{name}/1-x"), EPS, 1.0,
                   f"{name}/1-x_clamped")
    ratio = _elementwise(net, top, bottom, trt.ElementWiseOperation.DIV, f"{name}/ratio")
    return layers.named(net.add_unary(ratio, trt.UnaryOperation.LOG), name)


def _sigmoid(net, x, name: str):
    return layers.activation(net, x, "sigmoid", name)


def ms_deform_attn(net, weights, prefix: str, query, boxes, value, shapes, n_heads: int, n_levels: int,
                   n_points: int):
    """MSDeformAttn on the network: query (B, Q, C), boxes (B, Q, 4), value (B, A, C) -> (B, Q, C)."""
    c = query.shape[-1]
    dtype = layers.weight_dtype(query)
    m, d = n_heads, c // n_heads
    v = layers.linear(net, weights, f"{prefix}.value_proj", value, c)
    v = layers.reshape(net, v, (0, 0, m, d), f"{prefix}/value_heads")
    offsets = layers.linear(net, weights, f"{prefix}.sampling_offsets", query, m * n_levels * n_points * 2)
    offsets = layers.reshape(net, offsets, (0, 0, m, n_levels, n_points, 2), f"{prefix}/offsets")
    logits = layers.linear(net, weights, f"{prefix}.attention_weights", query, m * n_levels * n_points)
    logits = layers.reshape(net, logits, (0, 0, m, n_levels * n_points), f"{prefix}/logits")
    attention = layers.softmax(net, logits, f"{prefix}/softmax", axis=3)
    attention = layers.reshape(net, attention, (0, 0, m, n_levels, n_points), f"{prefix}/attention")
    xy, wh = layers.split(net, boxes, (2, 2), (f"{prefix}/xy", f"{prefix}/wh"), axis=2)
    xy = layers.reshape(net, xy, (0, 0, 1, 1, 1, 2), f"{prefix}/xy6")
    wh = layers.reshape(net, wh, (0, 0, 1, 1, 1, 2), f"{prefix}/wh6")
    step = layers.multiply(net, layers.multiply(net, offsets, _scalar(net, 1.0 / n_points, 6, dtype,
                                                                           f"{prefix}/per_point"),
                                                f"{prefix}/offsets_per_point"), wh, f"{prefix}/offsets_wh")
    step = layers.multiply(net, step, _scalar(net, 0.5, 6, dtype, f"{prefix}/half"), f"{prefix}/offsets_half")
    locations = layers.add(net, xy, step, f"{prefix}/locations")
    sampled = add_ms_deform_attn(net, v, locations, attention, spatial_shapes=tuple(shapes),
                                 name=f"{prefix}/ms_deform_attn", form=options().attention)
    return layers.linear(net, weights, f"{prefix}.output_proj", sampled, c)


def decoder_layer(net, weights, prefix: str, embed, boxes, feats, shapes, query_pos, nh: int, n_levels: int,
                  ndp: int, d_ffn: int):
    hd = embed.shape[-1]
    q = layers.add(net, embed, query_pos, f"{prefix}/with_pos")
    attn = multi_head_attention(net, weights, f"{prefix}.self_attn", embed, nh, query_key=q)
    embed = layer_norm(net, weights, f"{prefix}.norm1", layers.add(net, embed, attn, f"{prefix}/add1"))
    q = layers.add(net, embed, query_pos, f"{prefix}/with_pos2")
    cross = ms_deform_attn(net, weights, f"{prefix}.cross_attn", q, boxes, feats, shapes, nh, n_levels, ndp)
    layers.rename(cross, f"{prefix}.cross_attn")
    embed = layer_norm(net, weights, f"{prefix}.norm2", layers.add(net, embed, cross, f"{prefix}/add2"))
    y = layers.activation(net, layers.linear(net, weights, f"{prefix}.linear1", embed, d_ffn), "relu",
                          f"{prefix}/relu")
    y = layers.linear(net, weights, f"{prefix}.linear2", y, hd)
    out = layer_norm(net, weights, f"{prefix}.norm3", layers.add(net, embed, y, f"{prefix}/add3"))
    return layers.rename(out, prefix)


def encoder_input(net, weights, prefix: str, xs, hd: int):
    """input_proj per level, flattened to tokens and concatenated: ((B, A, hd), level shapes)."""
    tokens, shapes = [], []
    for i, x in enumerate(xs):
        y = layers.conv_bn(net, weights, f"{prefix}.input_proj.{i}.0", f"{prefix}.input_proj.{i}.1", x, hd, 1, 1, 0,
                           1, 1e-5)
        layers.rename(y, f"{prefix}.input_proj.{i}")
        h, w = x.shape[2:]
        shapes.append((h, w))
        tokens.append(core_shuffle(net, y, f"{prefix}/tokens{i}", reshape=(0, hd, h * w), second=(0, 2, 1)))
    return layers.concat(net, tokens, f"{prefix}/feats", axis=1), shapes


def rtdetr_decoder(net, weights, prefix: str, xs, nc: int = 80, ch=(512, 1024, 2048), hd: int = 256, nq: int = 300,
                   ndp: int = 4, nh: int = 8, ndl: int = 6, d_ffn: int = 1024, dropout: float = 0.0, act=None,
                   eval_idx: int = -1, *_training):
    xs = list(xs)
    if len(xs) != len(ch):
        raise TableError(f"{prefix}: RTDETRDecoder takes {len(ch)} levels, the row gives {len(xs)}")
    if eval_idx not in (-1, ndl - 1):
        raise TableError(f"{prefix}: RTDETRDecoder with eval_idx {eval_idx} (not the last decoder layer) is not "
                         "supported")
    eval_idx = ndl - 1
    feats, shapes = encoder_input(net, weights, prefix, xs, hd)
    if DECODER_FP32 and feats.dtype != trt.float32:  # the FP32 tensor keeps the name (INT8 scales are by name)
        feats = layers.cast(net, layers.rename(feats, f"{prefix}/feats_fp16"), trt.float32, f"{prefix}/feats")
    dtype = layers.weight_dtype(feats)
    count = sum(h * w for h, w in shapes)
    logits, valid = anchor_logits(shapes)
    anchors = _constant(net, np.where(np.isinf(logits), INVALID_LOGIT, logits), f"{prefix}/anchors", dtype)
    masked = layers.multiply(net, feats, _constant(net, valid, f"{prefix}/valid_mask", dtype), f"{prefix}/masked")
    features = layers.linear(net, weights, f"{prefix}.enc_output.0", masked, hd)
    features = layer_norm(net, weights, f"{prefix}.enc_output.1", features)
    layers.rename(features, f"{prefix}.enc_output")
    enc_scores = layers.linear(net, weights, f"{prefix}.enc_score_head", features, nc)
    best = layers.named(net.add_reduce(enc_scores, trt.ReduceOperation.MAX, 1 << 2, False), f"{prefix}/best_class")
    k = min(nq, count)
    _, index = _topk(net, best, k, f"{prefix}/query_topk")
    embed = _gather_rows(net, features, index, count, f"{prefix}/query_features")
    top_anchors = _gather_rows(net, anchors, index, count, f"{prefix}/query_anchors")
    refer = layers.add(net, mlp(net, weights, f"{prefix}.enc_bbox_head", embed, hd, 4, 3), top_anchors,
                       f"{prefix}/refer")
    boxes = _sigmoid(net, refer, f"{prefix}/boxes0")
    for i in range(eval_idx + 1):
        call = "" if i == 0 else f"#{i + 1}"
        pos = mlp(net, weights, f"{prefix}.query_pos_head", boxes, 2 * hd, hd, 2, f"{prefix}.query_pos_head{call}")
        embed = decoder_layer(net, weights, f"{prefix}.decoder.layers.{i}", embed, boxes, feats, shapes, pos, nh,
                              len(xs), ndp, d_ffn)
        delta = mlp(net, weights, f"{prefix}.dec_bbox_head.{i}", embed, hd, 4, 3)
        boxes = _sigmoid(net, layers.add(net, delta, _inverse_sigmoid(net, boxes, f"{prefix}/inverse{i}"),
                                         f"{prefix}/refine{i}"), f"{prefix}/boxes{i + 1}")
    scores = _sigmoid(net, layers.linear(net, weights, f"{prefix}.dec_score_head.{eval_idx}", embed, nc),
                      f"{prefix}/scores")
    _read_training_weights(weights, prefix, nc, hd, ndl)
    return [postprocess(net, prefix, boxes, scores, k, nq, nc)]


def postprocess(net, prefix: str, boxes, scores, k: int, nq: int, nc: int):
    """The top (query, class) pairs of scores (B, K, nc) -> (B, top, 6) FP32 [cx, cy, w, h, score, class]."""
    top = min(nq, k * nc)
    flat = layers.reshape(net, scores, (0, k * nc), f"{prefix}/flat_scores")
    values, index = _topk(net, flat, top, f"{prefix}/topk")
    classes = _constant(net, np.full((1, 1), nc, np.int32), f"{prefix}/nc", np.int32)
    query = _elementwise(net, index, classes, trt.ElementWiseOperation.FLOOR_DIV, f"{prefix}/query")
    cls = _elementwise(net, index, _elementwise(net, query, classes, trt.ElementWiseOperation.PROD,
                                                f"{prefix}/query_start"), trt.ElementWiseOperation.SUB,
                       f"{prefix}/class")
    picked = _gather_rows(net, boxes, query, k, f"{prefix}/picked_boxes")
    parts = [picked, layers.reshape(net, values, (0, 0, 1), f"{prefix}/score"),
             layers.reshape(net, layers.cast(net, cls, boxes.dtype, f"{prefix}/class_float"), (0, 0, 1),
                            f"{prefix}/class_column")]
    return layers.concat(net, parts, prefix, axis=2)


def _read_training_weights(weights, prefix: str, nc: int, hd: int, ndl: int) -> None:
    """Weights only training uses (the denoising embeddings, the score heads of the layers before the last): read
    so that a checkpoint is still checked key by key and shape by shape."""
    weights.take(f"{prefix}.denoising_class_embed.weight", (nc, hd))
    for i in range(ndl - 1):
        weights.take(f"{prefix}.dec_score_head.{i}.weight", (nc, hd))
        weights.take(f"{prefix}.dec_score_head.{i}.bias", (nc,))


def decoder_resolve(row) -> tuple[list, int]:
    """[nc, hd, nq, ndp, nh, ndl, d_ffn, ...] -> (nc, [channels of the inputs], hd, ...)."""
    if not row.args or not isinstance(row.args[0], int) or row.args[0] < 1:
        raise TableError(f"{row.where()}: RTDETRDecoder's first argument is the class count, got {row.args!r}")
    args = [row.args[0], list(row.inputs), *row.args[1:]]
    hd, nh = (args[2] if len(args) > 2 else 256), (args[5] if len(args) > 5 else 8)
    if hd % nh or hd % 4:
        raise TableError(f"{row.where()}: hidden size {hd} does not split into {nh} heads")
    return args, 6


register(Block("RTDETRDecoder", RTDETRDecoder, rtdetr_decoder, resolve=decoder_resolve, head=True))
