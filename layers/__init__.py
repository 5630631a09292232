"""Ops and blocks over TensorRT's network API, shared by every model of the zoo (see layers/core.py for naming)."""
from .core import (activation, add, avg_pool, batch_norm, cast, channel_affine, concat, constant,  # noqa: F401
                   conv2d, conv_bn, flatten, global_avg_pool, is_folded, linear, linear_from_arrays, max_pool,
                   multiply, named, prelu, rename, reshape, softmax, split, transpose, upsample_nearest, weight_dtype)
from .pooling import adaptive_avg_pool  # noqa: F401
from .shuffle import channel_shuffle, channel_split  # noqa: F401
from .transformer import (attention_over_columns, layer_norm, layer_norm_2d, multi_head_attention,  # noqa: F401
                          prepend_token, token)
from .heads import vgg_head  # noqa: F401
from .inception import basic_conv2d, mark_auxiliary_used, transform_input  # noqa: F401
from .core import conv2d_arrays  # noqa: F401  (a convolution from arrays the builder derived)
from .core import conv_transpose2d  # noqa: F401  (nn.ConvTranspose2d)
from .core import batch_norm_affine, conv_bn_arrays  # noqa: F401  (FP32 arrays, for re-parameterised blocks)
from .core import clamp, upsample_linear  # noqa: F401  (dense heads: clamp, bilinear upsampling)
