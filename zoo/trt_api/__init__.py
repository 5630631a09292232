"""The TensorRT API facade: the one place that decides where TensorRT's names come from.

Builders, `layers/` and `plugins/` write `from zoo.trt_api import trt` and use `trt.ActivationType.RELU`,
`trt.float16`, ... When the `tensorrt` package imports, `trt` is that module, and every backend uses its enums (the
reference backend accepts them too). Otherwise `trt` is `names`, the same member names without TensorRT.
`plugins` is the other half of the facade: the registries through which a plugin package declares its op to the
reference and ONNX backends, as `tensorrt.plugin` does for TensorRT.

This package sits below everything but `wts/`: it imports nothing of the runtime, so `layers/` and `plugins/` can
use it without depending on the backends that execute them (see docs/architecture.md).
"""
from . import names, values

try:
    import tensorrt as trt  # noqa: F401

    HAVE_TENSORRT = True
except ImportError:  # no TensorRT on this machine: the reference names
    trt = names

    HAVE_TENSORRT = False
values.use(trt)  # the reference backend's Weights speak the dtypes of the names in use


def is_tensorrt_network(net) -> bool:
    """Whether `net` is TensorRT's own INetworkDefinition (or a wrapper of one), not one of the zoo's recorders: the
    reference backend's and the ONNX backend's networks say so with `_zoo_recorder`."""
    return not getattr(net, "_zoo_recorder", False)
