"""The one place that decides where TensorRT's names come from.

Builders and `layers/` write `from zoo.engine.api import trt` and use `trt.ActivationType.RELU`, `trt.float16`, ...
When the `tensorrt` package imports, `trt` is that module, and both backends use its enums (the reference backend
accepts them too). Otherwise `trt` is the reference backend's namespace, with the same member names.
"""
try:
    import tensorrt as trt  # noqa: F401

    HAVE_TENSORRT = True
except ImportError:  # no TensorRT on this machine: the reference backend's names
    from .reference import enums as trt  # noqa: F401

    HAVE_TENSORRT = False
