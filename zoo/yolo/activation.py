"""The `activation:` key of a layer table (yolov6 writes `torch.nn.ReLU()`): which activation a Conv's `act=True`
means for the whole table. Read as data, never evaluated: the text must be `nn.<Class>()` or `torch.nn.<Class>()`
with a class of a small allow-list and no arguments, and becomes the activation's name in zoo.yolo.blocks.conv."""
from __future__ import annotations

import re

from zoo.yolo.registry import TableError

# torch.nn class -> the name zoo.yolo.blocks.conv (and layers.activation) knows it by
TABLE_ACTIVATIONS = {"SiLU": "silu", "ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
_SPEC = re.compile(r"(?:torch\.)?nn\.([A-Za-z][A-Za-z0-9]*)\(\s*\)")


def table_activation(text, where: str = "table") -> str:
    """`torch.nn.ReLU()` -> "relu"; anything else is one line naming the key, the text and what is allowed."""
    match = _SPEC.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or match.group(1) not in TABLE_ACTIVATIONS:
        allowed = ", ".join(f"nn.{name}()" for name in TABLE_ACTIVATIONS)
        raise TableError(f"{where}: activation {text!r} is not one of {allowed} (written as data, optionally "
                         f"prefixed with torch.)")
    return TABLE_ACTIVATIONS[match.group(1)]


def default_activation(table: dict, where: str = "table") -> str:
    """What `act=True` means in `table`: its `activation` key read as above, SiLU when it has none."""
    return table_activation(table["activation"], where) if "activation" in table else "silu"
