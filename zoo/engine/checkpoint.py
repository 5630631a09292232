"""Load the weights of a PyTorch checkpoint without running any code from it.

``load_state_dict(path)`` accepts:

- a ``.wts`` file (tensorrtx text format, flat arrays);
- a checkpoint dict with ``model`` / ``ema`` entries (ultralytics style; ``ema`` is preferred when it is not None),
  or with a ``state_dict`` entry;
- a pickled ``nn.Module`` (of any class: the class does not need to be importable);
- a plain state_dict (a dict of tensors);
- an ONNX file: its initializers under their state_dict names (zoo.engine.onnx_weights; BatchNorm usually
  folded);
- a TorchScript archive, read as data: its ``data.pkl`` goes through the same restricted unpickler, its tensor
  storages are read from the zip, and which attributes are parameters and buffers is read from the class
  declarations in ``code/`` (text, never run). ``torch.jit.load`` is never called: it runs the archive's
  ``__setstate__`` and any TorchScript it calls, which can write files.

No file can make loading allocate without bound: the storages a zip checkpoint declares may add up to at most
4 times the file's size (torch.save stores them uncompressed, so real checkpoints are about 1x) and at most
``wts.max_weight_bytes()`` ($ZOO_MAX_WEIGHT_BYTES, 4 GiB by default); the plain-data constructors the unpickler
allows refuse sizes over a million. Weights with NaN or Inf values are refused, as in ``.wts`` files.

Unpickling is safe: ``torch.load(weights_only=True)`` is tried first. When the file holds classes that it refuses
(e.g. a pickled ``models.yolo.DetectionModel``), the file is unpickled again by a restricted unpickler. It returns
real objects only for torch's own allow-list of tensor-rebuilding globals (the one ``weights_only=True`` uses) and
a few harmless builtins. Every other class path becomes an inert stand-in that only records its state, and the
state_dict is rebuilt by walking the stand-ins' ``_parameters`` / ``_buffers`` / ``_modules`` as
``nn.Module.state_dict()`` does. Globals that could run code (``os.system``, ``builtins.eval``, ``subprocess.*``
and the like) are refused with an error that names them.
"""
from __future__ import annotations

import _compat_pickle
import io
import os
import re
import threading
import pickle
import types
import zipfile
from typing import Any

import numpy as np
import torch

import wts

from .checkpoint_types import Checkpoint, CheckpointError, refuse_nonfinite
from .onnx_weights import load_onnx_weights

__all__ = ["Checkpoint", "CheckpointError", "load_state_dict"]


# ---------------------------------------------------------------------------------------------------------------
# The restricted unpickler


def _allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {}
    try:  # torch's own allow-list for weights_only=True (private, hence the fallback below)
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed.update(_get_allowed_globals())
    except Exception:  # pragma: no cover - depends on the torch version
        from collections import OrderedDict
        from torch import _utils
        allowed.update({f"torch._utils.{n}": getattr(_utils, n) for n in (
            "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
            "_rebuild_parameter_with_state") if hasattr(_utils, n)})
        allowed.update({"collections.OrderedDict": OrderedDict, "torch.Size": torch.Size,
                        "torch.device": torch.device, "torch.Tensor": torch.Tensor,
                        "torch.nn.parameter.Parameter": torch.nn.Parameter})
    # plain data constructors, which run no code of the pickle's choosing
    for t in (object, bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set, frozenset, slice,
              range):
        allowed[f"builtins.{t.__name__}"] = t
    for path in ("builtins.bytes", "builtins.bytearray", "builtins.list", "builtins.tuple", "builtins.set",
                 "builtins.frozenset"):  # bytearray(10**12) in a 40-byte pickle would take all memory
        allowed[path] = _bounded_constructor(allowed[path])
    return allowed


MAX_PICKLED_ITEMS = 1 << 20


def _bounded_constructor(make):
    def construct(*args):
        for a in args:
            if (isinstance(a, int) and not isinstance(a, bool) and a > MAX_PICKLED_ITEMS) or (
                    isinstance(a, range) and len(a) > MAX_PICKLED_ITEMS):
                raise pickle.UnpicklingError(f"{make.__name__}() of {_cut(repr(a))} items asked by the pickle: over "
                                             f"the limit of {MAX_PICKLED_ITEMS}")
        return make(*args)
    construct.__name__ = make.__name__
    return construct


_ALLOWED = _allowed_globals()

# Globals from these modules are refused with an error instead of getting a stand-in. A stand-in never runs
# anything, so this is not what makes loading safe; it makes a pickle that asks for a shell, an interpreter or a
# file system a loud error, since no weights file needs them. Harmless data classes that do turn up in real
# checkpoints (pathlib paths, types.SimpleNamespace, functools.partial, argparse.Namespace) get stand-ins.
_REFUSED_MODULES = frozenset("""
    builtins __builtin__ os posix nt posixpath ntpath subprocess sys shutil importlib runpy pickle _pickle cPickle
    marshal ctypes _ctypes socket code codeop pty operator _operator io _io webbrowser multiprocessing threading
    _thread signal inspect pdb bdb timeit tempfile glob platform asyncio urllib http ftplib smtplib telnetlib
    zipimport pkgutil site sysconfig gc dill joblib cloudpickle shelve unittest doctest trace cProfile profile
    ensurepip pip setuptools distutils""".split())


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle asked for a global that could run code."""

    def __init__(self, path: str):
        self.global_path = path
        super().__init__(f"refusing to load the global {path!r}: it could run code, and this loader never "
                         f"runs code from a checkpoint")


class _StandIn:
    """An inert stand-in for a class that is not on the allow-list: it records whatever the pickle gives it."""

    _stand_in_path = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            self.__dict__["_stand_in_args"] = (args, kwargs)

    def __setstate__(self, state):
        slots = None
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state, slots = state
        for part in (state, slots):
            if isinstance(part, dict):
                self.__dict__.update({k: v for k, v in part.items() if isinstance(k, str)})
            elif part is not None:
                self.__dict__["_stand_in_state"] = part

    # pickled subclasses of list / dict get their items through these
    def append(self, item):
        self.__dict__.setdefault("_stand_in_items", []).append(item)

    def extend(self, items):
        self.__dict__.setdefault("_stand_in_items", []).extend(items)

    def __setitem__(self, key, value):
        self.__dict__.setdefault("_stand_in_mapping", {})[key] = value

    def __repr__(self):
        return f"<stand-in for {self._stand_in_path}>"


_STAND_INS: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    path = f"{module}.{name}"
    if path not in _STAND_INS:
        _STAND_INS[path] = type(name.rpartition(".")[2] or "StandIn", (_StandIn,),
                                {"__module__": module, "__qualname__": name, "_stand_in_path": path})
    return _STAND_INS[path]


class _StorageBudget(threading.local):
    """Bytes the storages of the file being loaded may still declare (None: no file is being loaded)."""
    left: int | None = None
    path: str = ""


_BUDGET = _StorageBudget()
_BASE_PERSISTENT_LOAD = pickle.Unpickler.__dict__["persistent_load"]


class _RestrictedUnpickler(pickle.Unpickler):
    # torch.load assigns its storage-creating persistent_load to the unpickler; the legacy (non-zip) format allocates
    # each storage at the size its pickle declares, before reading it. Wrap it: declared sizes count against the
    # budget of the file (4x its size, and the configured limit) before anything is allocated.
    @property
    def persistent_load(self):
        return _BASE_PERSISTENT_LOAD.__get__(self)

    @persistent_load.setter
    def persistent_load(self, load):
        def bounded(saved_id):
            if isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage" and \
                    _BUDGET.left is not None and isinstance(saved_id[4], int):
                dtype = getattr(saved_id[1], "dtype", torch.float64)
                nbytes = saved_id[4] * torch.empty((), dtype=dtype).element_size()
                if nbytes > _BUDGET.left:
                    raise pickle.UnpicklingError(f"its storages declare more bytes than the file can hold (a "
                                                 f"storage of {nbytes} bytes; limit {_BUDGET.limit_text})")
                _BUDGET.left -= nbytes
            return load(saved_id)
        _BASE_PERSISTENT_LOAD.__set__(self, bounded)

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles (torch.save's default) name Python 2 paths such as __builtin__.set
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        path = f"{module}.{name}"
        if path in _ALLOWED:
            return _ALLOWED[path]
        if module.partition(".")[0] in _REFUSED_MODULES:
            raise RefusedGlobalError(path)
        return _stand_in(module, name)


def _restricted_load(file, **kwargs):
    return _RestrictedUnpickler(file, **kwargs).load()


# what torch.load(pickle_module=...) uses of a pickle module
_restricted_pickle = types.SimpleNamespace(__name__="restricted_pickle", Unpickler=_RestrictedUnpickler,
                                           load=_restricted_load, UnpicklingError=pickle.UnpicklingError)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_state_dict(path: str | os.PathLike) -> Checkpoint:
    """Read the tensors of a checkpoint (see the module docstring for the accepted kinds)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    if not head:
        raise CheckpointError(f"{path}: empty file")

    if path.lower().endswith(".wts") or head.split(b"\n", 1)[0].strip().isdigit():
        return Checkpoint(wts.load(path), None, "wts")
    if path.lower().endswith(".onnx"):
        return load_onnx_weights(path)
    if zipfile.is_zipfile(path):
        _check_declared_sizes(path)
        if _is_torchscript(path):
            return _from_torchscript(path)
    return _from_object(path, *_unpickle(path))


def _check_declared_sizes(path: str) -> None:
    """Refuse a zip checkpoint whose entries would expand beyond 4x the file or the configured limit."""
    limit = wts.max_weight_bytes()
    try:
        with zipfile.ZipFile(path) as z:
            declared = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged zip archive ({_one_line(e)})") from None
    size = os.path.getsize(path)
    if declared > max(4 * size, 1 << 20):
        raise CheckpointError(f"{path}: its entries declare {declared} bytes, {declared / size:.0f}x the file's "
                              f"{size} bytes (a compressed archive that would expand; torch.save never compresses)")
    if declared > limit:
        raise CheckpointError(f"{path}: holds {declared / 2**30:.1f} GiB of data, over the limit of "
                              f"{limit / 2**30:.1f} GiB (set {wts.LIMIT_VARIABLE} to raise it)")


def _is_torchscript(path: str) -> bool:
    with zipfile.ZipFile(path) as z:
        return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in z.namelist())


# ---------------------------------------------------------------------------------------------------------------
# TorchScript archives, read as data


class _ArchiveUnpickler(_RestrictedUnpickler):
    """The restricted unpickler, with tensor storages read from the archive's ``data/`` entries."""

    def __init__(self, archive: zipfile.ZipFile, root: str, path: str, file):
        super().__init__(file)
        self.archive, self.root, self.path = archive, root, path
        self.storages: dict[str, Any] = {}

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {_cut(repr(pid))}")
        _, storage_type, key, _location, numel = pid
        dtype = getattr(storage_type, "dtype", None)
        if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or not isinstance(key, str):
            raise pickle.UnpicklingError(f"storage {_cut(repr(key))} has an unknown type {_cut(repr(storage_type))}")
        if key not in self.storages:
            name = f"{self.root}data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {_cut(key)!r} is missing from the archive") from None
            nbytes = numel * torch.empty((), dtype=dtype).element_size()
            if nbytes > info.file_size:
                raise pickle.UnpicklingError(f"storage {_cut(key)!r} declares {nbytes} bytes but holds "
                                             f"{info.file_size}")
            data = bytearray(self.archive.read(name)[:nbytes])
            untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if data else \
                torch.UntypedStorage(0)
            self.storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return self.storages[key]


_CLASS_DECLARATION = re.compile(r"^class (\w+)\(Module\):\s*\n\s*__parameters__ = \[([^\]]*)\]\s*\n"
                                r"\s*__buffers__ = \[([^\]]*)\]", re.MULTILINE)


def _declared_modules(archive: zipfile.ZipFile, root: str) -> dict[str, tuple[list[str], list[str]]]:
    """{'__torch__.a.b.Class': (parameter names, buffer names)}, read from the class declarations in code/."""
    modules = {}
    for name in archive.namelist():
        if not (name.startswith(f"{root}code/") and name.endswith(".py")):
            continue
        package = name[len(root) + len("code/"):-len(".py")].replace("/", ".")
        text = archive.read(name).decode("utf-8", "replace")
        for m in _CLASS_DECLARATION.finditer(text):
            names = [[n.strip().strip("\"'") for n in group.split(",") if n.strip()] for group in m.groups()[1:]]
            modules[f"{package}.{m.group(1)}"] = (names[0], names[1])
    return modules


def _from_torchscript(path: str) -> Checkpoint:
    try:
        with zipfile.ZipFile(path) as z:
            pickles = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
            if not pickles:
                raise CheckpointError(f"{path}: a TorchScript archive without data.pkl")
            root = pickles[0][:-len("data.pkl")]
            declared = _declared_modules(z, root)
            module = _ArchiveUnpickler(z, root, path, io.BytesIO(z.read(pickles[0]))).load()
    except CheckpointError:
        raise
    except RefusedGlobalError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the TorchScript archive as data: {_one_line(e)}") from None
    tensors: dict[str, Any] = {}
    _script_state_dict(path, module, declared, "", tensors)
    if not tensors:
        raise CheckpointError(f"{path}: a TorchScript archive with no parameters or buffers")
    kind = getattr(type(module), "_stand_in_path", type(module).__name__).removeprefix("__torch__.")
    return Checkpoint(_to_numpy(path, tensors), _class_names(module.__dict__.get("names")),
                      f"TorchScript archive ({kind}), read as data")


def _script_state_dict(path: str, module: Any, declared: dict, prefix: str, out: dict) -> None:
    """``state_dict()`` of a TorchScript module from its pickled attributes: declared parameters, declared buffers,
    then the submodules (attributes that are modules themselves), in declaration order."""
    kind = getattr(type(module), "_stand_in_path", "")
    if kind not in declared:
        raise CheckpointError(f"{path}: {prefix or 'the root module'} is a {kind or type(module).__name__} without "
                              f"a class declaration in the archive's code/")
    attributes = module.__dict__
    if "_stand_in_state" in attributes:  # a custom __getstate__: its tensors have no names to read
        raise CheckpointError(f"{path}: {prefix or 'the root module'} ({kind}) has a custom __setstate__; its "
                              f"state has no names, and this loader never runs an archive's code to learn them")
    parameters, buffers = declared[kind]
    for name in (*parameters, *buffers):
        value = attributes.get(name)
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    for name, value in attributes.items():
        if getattr(type(value), "_stand_in_path", "") in declared:
            _script_state_dict(path, value, declared, f"{prefix}{name}.", out)


def _unpickle(path: str) -> tuple[Any, str]:
    """(the unpickled object, how it was unpickled).

    A zip checkpoint (torch.save's format since 1.6; its storage sizes were checked against the file) goes through
    weights_only=True first. A legacy, non-zip file goes straight to the restricted unpickler, whose storage budget
    bounds what its pickle can make torch allocate."""
    first = None
    if zipfile.is_zipfile(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True), "weights_only=True"
        except pickle.UnpicklingError as e:
            first = e  # classes outside weights_only's allow-list
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {_one_line(e)}") from None
    limit = wts.max_weight_bytes()
    _BUDGET.left = min(limit, 4 * os.path.getsize(path) + (1 << 20))
    _BUDGET.limit_text = (f"4x the file's {os.path.getsize(path)} bytes and {limit / 2**30:.1f} GiB "
                          f"({wts.LIMIT_VARIABLE})")
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_restricted_pickle), "restricted unpickler"
    except RefusedGlobalError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:
        said = f" (weights_only=True said: {_one_line(first)})" if first is not None else ""
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {_one_line(e)}{said}") from None
    finally:
        _BUDGET.left = None


def _from_object(path: str, obj: Any, how: str) -> Checkpoint:
    kind = "checkpoint"
    names = None
    if isinstance(obj, dict) and not _is_state_dict(obj):
        if obj.get("ema") is not None:
            key = "ema"
        elif obj.get("model") is not None:
            key = "model"
        elif obj.get("state_dict") is not None:
            key = "state_dict"
        else:
            raise CheckpointError(f"{path}: a checkpoint dict without tensors (keys: {_keys(obj)}); "
                                  f"expected a state_dict or a 'model', 'ema' or 'state_dict' entry")
        names = _class_names(obj.get("names"))
        kind = f"checkpoint dict, {key!r} entry"
        obj = obj[key]

    meta = None
    if _is_module(obj):
        tensors = _module_state_dict(obj)
        names = _class_names(obj.__dict__.get("names")) or names
        meta = _model_meta(obj, names)
        what = getattr(type(obj), "_stand_in_path", f"{type(obj).__module__}.{type(obj).__qualname__}")
        source = f"{kind}: pickled module {what}"
    elif isinstance(obj, dict) and _is_state_dict(obj):
        tensors = obj
        source = f"{kind}: state_dict" if kind != "checkpoint" else "state_dict"
    else:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a module or a state_dict")
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    return Checkpoint(_to_numpy(path, tensors), names, f"{source} [{how}]", meta)


def _model_meta(module: Any, names) -> dict:
    """What a pickled model says about itself beyond its tensors: `yaml` (ultralytics' architecture dict, plain
    data only), `stride`, class `names`, and `activations`: the class path of every submodule's `act` child by
    module path (ultralytics pickles each Conv's activation module, which the state_dict cannot show)."""
    d = module.__dict__
    stride = d.get("stride")
    activations: dict[str, str] = {}

    def walk(m: Any, prefix: str) -> None:
        for name, child in m.__dict__["_modules"].items():
            if child is None or not _is_module(child):
                continue
            path = f"{prefix}{name}"
            if name == "act":
                cls = type(child)
                activations[prefix[:-1]] = getattr(cls, "_stand_in_path", f"{cls.__module__}.{cls.__qualname__}")
            walk(child, path + ".")

    walk(module, "")
    return {"yaml": _plain_data(d.get("yaml")), "names": names, "activations": activations,
            "stride": stride.tolist() if isinstance(stride, torch.Tensor) else None}


def _plain_data(obj: Any, depth: int = 0) -> Any:
    """obj if it is JSON-like builtins (dicts, lists, strings, numbers) to a sane depth, else None."""
    if depth > 12:
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_plain_data(v, depth + 1) for v in obj]
        return None if any(v is None and o is not None for v, o in zip(items, obj)) else items
    if isinstance(obj, dict) and all(isinstance(k, (str, int)) for k in obj):
        items = {k: _plain_data(v, depth + 1) for k, v in obj.items()}
        return None if any(items[k] is None and obj[k] is not None for k in obj) else items
    return None


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) for k in obj) and all(
        isinstance(v, torch.Tensor) for v in obj.values())


def _is_module(obj: Any) -> bool:
    d = getattr(obj, "__dict__", {})
    return isinstance(d.get("_parameters"), dict) and isinstance(d.get("_modules"), dict)


def _module_state_dict(module: Any, prefix: str = "", out: dict | None = None) -> dict[str, Any]:
    """``nn.Module.state_dict()`` order for a real module or a stand-in: own parameters, own persistent
    buffers, then the children, recursively."""
    out = {} if out is None else out
    d = module.__dict__
    for name, p in d["_parameters"].items():
        if p is not None:
            out[prefix + name] = p
    non_persistent = d.get("_non_persistent_buffers_set") or set()
    for name, b in (d.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = b
    for name, child in d["_modules"].items():
        if child is not None and _is_module(child):
            _module_state_dict(child, f"{prefix}{name}.", out)
    return out


def _to_numpy(path: str, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{path}: key {name!r} holds a {type(t).__name__}, not a tensor")
        if t.is_complex() or t.is_quantized or t.layout != torch.strided:
            raise CheckpointError(f"{path}: key {_cut(name)!r}: unsupported tensor ({t.dtype}, {t.layout})")
        out[name] = refuse_nonfinite(path, name, t.detach().to("cpu", torch.float32).numpy())
    return out




def _class_names(names: Any) -> list[str] | dict[int, str] | None:
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return list(names)
    if isinstance(names, dict) and all(isinstance(k, int) and isinstance(v, str) for k, v in names.items()):
        return dict(names)
    return None


def _keys(d: dict) -> str:
    keys = [repr(k) for k in list(d)[:12]]
    return ", ".join(keys) + (", ..." if len(d) > 12 else "")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {_cut(text[0]) if text else ''}"


def _cut(text: str, limit: int = 200) -> str:
    """Long values (a 1 MB key) are cut in messages."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"
