"""Writing checkpoints the way ultralytics and YOLOv5 do: torch.save of {'model': <pickled model, FP16>, ...} whose
model class lives in an upstream module path that exists only while saving, so loading them must go through the
restricted unpickler's stand-ins, as a user's real checkpoint would."""
import sys
import types

import torch


def save_upstream_checkpoint(module, path, module_path: str, class_name: str, **attributes) -> None:
    """Pickle `module` as `<module_path>.<class_name>` with extra attributes (names, yaml, ...), in FP16."""
    parts = module_path.split(".")
    fakes = {".".join(parts[:i + 1]): types.ModuleType(".".join(parts[:i + 1])) for i in range(len(parts))}
    for name, fake in fakes.items():
        fake.__path__ = []
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(fakes[parent], child, fake)
    cls = type(class_name, (type(module),), {"__module__": module_path})
    setattr(fakes[module_path], class_name, cls)
    saved = {name: sys.modules.pop(name, None) for name in fakes}
    sys.modules.update(fakes)
    try:
        module.__class__ = cls
        for key, value in attributes.items():
            setattr(module, key, value)
        torch.save({"model": module.half(), "ema": None, "optimizer": None, "epoch": -1}, path)
    finally:
        for name, previous in saved.items():
            sys.modules.pop(name)
            if previous is not None:
                sys.modules[name] = previous
