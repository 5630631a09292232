"""The ONNX model as ONNX Runtime's CPU kernels run it fastest, computing what the engine computes.

Applied when a model is loaded to run (never to an export, which stays the faithful translation).
"""
from __future__ import annotations


def prepare_for_cpu(model):
    return model
