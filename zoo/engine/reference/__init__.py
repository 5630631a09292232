"""The reference backend: TensorRT's network-definition API implemented on the CPU with PyTorch.

A development and validation executor, not a production path: it exists so every builder line runs (and is
checked against PyTorch) on machines without a GPU, and the same line builds a TensorRT engine on one.
Modules: `enums` (TensorRT's names), `network` (INetworkDefinition and its layers), `executor`, `serialize`, `plugin`.
"""
