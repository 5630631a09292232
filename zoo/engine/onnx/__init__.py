"""The ONNX backend: the zoo's network definitions written as ONNX and run by ONNX Runtime.

A third executor of the same builder code, next to TensorRT and the reference backend, and the export route.
- `network`: the INetworkDefinition builders write into (the reference backend's recorder: the same classes,
  methods, properties and shape inference, held to the same conformance test);
- `graph` and `layers`: the ONNX writer. `layers.TRANSLATORS` maps each layer class to one small function that
  spells TensorRT's semantics out in ONNX operators (padding, bitmask axes, default axes, strongly typed casts,
  shuffle's two transposes, resize modes, Q/DQ with per-channel axes);
- `plugins`: the ONNX forms of plugins, a registry keyed by plugin id that plugin packages fill;
- `runner` and `backend`: ONNX Runtime (CPU) behind the zoo's Backend interface.

Everything ONNX Runtime computes is its own reading of the ONNX operators; tests/test_onnx_*.py hold it equal to the
reference backend layer by layer and model by model, which is how either reading of TensorRT's documentation is
caught when it is wrong.
"""
