"""Ops and blocks over TensorRT's network API, shared by every model of the zoo (see layers/core.py for naming)."""
from .core import (activation, add, avg_pool, batch_norm, cast, concat, constant, conv2d, conv_bn, flatten,  # noqa: F401
                   global_avg_pool, is_folded, linear, max_pool, multiply, named, rename, reshape, softmax, split,
                   transpose, upsample_nearest, weight_dtype)
from .blocks import bottleneck, c3, conv_bn_act, sppf  # noqa: F401
from .yolov8_blocks import attention, c2f, c2psa, c3k, c3k2, dwconv, psa_block  # noqa: F401
from .core import conv2d_arrays  # noqa: F401  (a convolution from arrays the builder derived)
from .core import conv_transpose2d  # noqa: F401  (nn.ConvTranspose2d)
from .blocks import classify  # noqa: F401  (YOLO's Classify head)
