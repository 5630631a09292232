"""TensorRT's enums and dtype aliases for machines without the `tensorrt` package.

Member names are TensorRT 10/11's own (see tests/data/trt-api); integer values are not reproduced because TensorRT
itself changed them between 10 and 11, and the zoo only ever uses members by name. When `tensorrt` imports,
`zoo.trt_api.trt` is the real module and this namespace is not used.
"""
from enum import Enum


def _enum(name: str, members: str) -> type[Enum]:
    return Enum(name, [(m.strip(), i) for i, m in enumerate(members.split(","))], module=__name__)


ActivationType = _enum("ActivationType", "RELU, SIGMOID, TANH, LEAKY_RELU, ELU, SELU, SOFTSIGN, SOFTPLUS, CLIP, "
                       "HARD_SIGMOID, SCALED_TANH, THRESHOLDED_RELU, GELU_ERF, GELU_TANH")
DataType = _enum("DataType", "FLOAT, HALF, BF16, INT8, INT32, INT64, BOOL, UINT8, FP8, INT4, FP4, E8M0")
ElementWiseOperation = _enum("ElementWiseOperation", "SUM, PROD, MAX, MIN, SUB, DIV, POW, FLOOR_DIV, AND, OR, XOR, "
                             "EQUAL, GREATER, LESS")
GatherMode = _enum("GatherMode", "DEFAULT, ELEMENT, ND")
InterpolationMode = _enum("InterpolationMode", "NEAREST, LINEAR, CUBIC")
LayerType = _enum("LayerType", "CONVOLUTION, GRID_SAMPLE, NMS, ACTIVATION, POOLING, LRN, SCALE, SOFTMAX, "
                  "DECONVOLUTION, CONCATENATION, ELEMENTWISE, PLUGIN, UNARY, PADDING, SHUFFLE, REDUCE, TOPK, GATHER, "
                  "MATRIX_MULTIPLY, RAGGED_SOFTMAX, CONSTANT, IDENTITY, CAST, PLUGIN_V2, SLICE, SHAPE, "
                  "PARAMETRIC_RELU, RESIZE, TRIP_LIMIT, RECURRENCE, ITERATOR, LOOP_OUTPUT, SELECT, ASSERTION, FILL, "
                  "QUANTIZE, DEQUANTIZE, CONDITION, CONDITIONAL_INPUT, CONDITIONAL_OUTPUT, SCATTER, EINSUM, ONE_HOT, "
                  "NON_ZERO, REVERSE_SEQUENCE, NORMALIZATION, PLUGIN_V3, SQUEEZE, UNSQUEEZE, CUMULATIVE, "
                  "DYNAMIC_QUANTIZE, ATTENTION_INPUT, ATTENTION_OUTPUT, ROTARY_EMBEDDING, KV_CACHE_UPDATE, MOE, "
                  "DIST_COLLECTIVE")
MatrixOperation = _enum("MatrixOperation", "NONE, TRANSPOSE, VECTOR")
MemoryPoolType = _enum("MemoryPoolType", "WORKSPACE, DLA_MANAGED_SRAM, DLA_LOCAL_DRAM, DLA_GLOBAL_DRAM, TACTIC_DRAM, "
                       "TACTIC_SHARED_MEMORY")
NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag",
                                      "STRONGLY_TYPED, PREFER_AOT_PYTHON_PLUGINS, PREFER_JIT_PYTHON_PLUGINS")
PaddingMode = _enum("PaddingMode", "EXPLICIT_ROUND_DOWN, EXPLICIT_ROUND_UP, SAME_UPPER, SAME_LOWER")
PoolingType = _enum("PoolingType", "MAX, AVERAGE, MAX_AVERAGE_BLEND")
ReduceOperation = _enum("ReduceOperation", "SUM, PROD, MAX, MIN, AVG, NONE")
ResizeCoordinateTransformation = _enum("ResizeCoordinateTransformation", "ALIGN_CORNERS, ASYMMETRIC, HALF_PIXEL")
ResizeRoundMode = _enum("ResizeRoundMode", "HALF_UP, HALF_DOWN, FLOOR, CEIL")
ResizeSelector = _enum("ResizeSelector", "FORMULA, UPPER")
SampleMode = _enum("SampleMode", "STRICT_BOUNDS, WRAP, CLAMP, FILL, REFLECT")
ScaleMode = _enum("ScaleMode", "UNIFORM, CHANNEL, ELEMENTWISE")
TensorIOMode = _enum("TensorIOMode", "NONE, INPUT, OUTPUT")
TensorLocation = _enum("TensorLocation", "DEVICE, HOST")
TopKOperation = _enum("TopKOperation", "MAX, MIN")
UnaryOperation = _enum("UnaryOperation", "EXP, LOG, SQRT, RECIP, ABS, NEG, SIN, COS, TAN, SINH, COSH, ASIN, ACOS, "
                       "ATAN, ASINH, ACOSH, ATANH, CEIL, FLOOR, ERF, NOT, SIGN, ROUND, ISINF, ISNAN")

# TensorRT's module-level dtype aliases (trt.float32 is trt.DataType.FLOAT, ...).
float32, float16, bfloat16 = DataType.FLOAT, DataType.HALF, DataType.BF16
int8, int32, int64, uint8, bool = DataType.INT8, DataType.INT32, DataType.INT64, DataType.UINT8, DataType.BOOL  # noqa: A001
fp8 = DataType.FP8

__version__ = "reference"

# trt.Dims and trt.Weights, TensorRT's value types (zoo.trt_api.values)
from .values import Dims, Weights  # noqa: E402,F401
