"""The TensorRT backend: only imported where the `tensorrt` package and a GPU exist (see `zoo.engine.backends`)."""
