"""The reference backend's API against the real TensorRT Python API (listings in tests/data/trt-api).

Every method, property and enum the reference backend offers must exist in TensorRT 10.16 and 11.4 under the same
name, with the same parameter names in the same order (one of the pybind overloads) and the same optional parameters,
so that a builder line written against the reference backend runs unchanged on TensorRT. What TensorRT 11 removed
must not be offered.
A failing check names the class, the member and what differs.
"""
from __future__ import annotations

import enum
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from zoo.trt_api import names as ref_enums
from zoo.engine.reference import network as ref_net
from zoo.trt_api import plugins as ref_plugin

DATA = Path(__file__).parent / "data" / "trt-api"
VERSIONS = ("10.16.1.11", "11.4.0.106")
CURRENT = "11.4.0.106"


# ----------------------------------------------------------------------------------------------------------------
# the listing parser


@dataclass
class Method:
    overloads: list[list[tuple[str, bool]]] = field(default_factory=list)  # [(param name, has default)] after self
    unknown: bool = False  # `def f(...)` or only `(*args, **kwargs)`: signature not recorded

    def param_lists(self) -> list[list[str]]:
        return [[name for name, _ in o] for o in self.overloads]


@dataclass
class ClassInfo:
    name: str
    bases: list[str]
    methods: dict[str, Method] = field(default_factory=dict)
    properties: dict[str, bool] = field(default_factory=dict)  # name -> read-only


@dataclass
class Listing:
    version: str
    classes: dict[str, ClassInfo]
    enums: dict[str, list[str]]
    functions: dict[str, Method]

    def lookup(self, cls: str, member: str) -> tuple[str, object] | None:
        """('method', Method) or ('property', read_only) for `member` on `cls` or its bases, own class first."""
        info = self.classes[cls]
        for owner in [info.name, *info.bases]:
            c = self.classes.get(owner)
            if c is None:
                continue
            if member in c.methods:
                return "method", c.methods[member]
            if member in c.properties:
                return "property", c.properties[member]
        return None


def _split_top_level(text: str) -> list[str]:
    """Split a parameter list at commas outside brackets ([], (), <>, {})."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def _params(arglist: str) -> list[tuple[str, bool]] | None:
    """[(name, has_default)] after `self`; None for `*args, **kwargs` or `...`."""
    arglist = arglist.strip()
    if arglist in ("...", "*args, **kwargs"):
        return None
    out = []
    for i, part in enumerate(_split_top_level(arglist)):
        name = re.split(r"[:=]", part, maxsplit=1)[0].strip()
        if i == 0 and name == "self":
            continue
        out.append((name, "=" in part))
    return out


_DEF = re.compile(r"^def (\w+)\((.*)\)(\s*->.*)?$")


def parse_listing(path: Path) -> Listing:
    classes: dict[str, ClassInfo] = {}
    enums: dict[str, list[str]] = {}
    functions: dict[str, Method] = {}
    current: ClassInfo | None = None
    version = re.search(r"tensorrt-(.+)\.txt$", path.name).group(1)
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        if not raw.startswith(" "):
            current = None
            if line.startswith("enum "):
                name, members = line[5:].split(":", 1)
                enums[name.strip()] = [m.strip() for m in members.split(",") if m.strip()]
            elif line.startswith("class "):
                m = re.match(r"class (\w+)(?:\((.*)\))?$", line)
                assert m, f"{path.name}: cannot parse {line!r}"
                bases = [b.strip() for b in (m.group(2) or "").split(",") if b.strip()]
                current = classes[m.group(1)] = ClassInfo(m.group(1), bases)
            elif line.startswith("def "):
                m = _DEF.match(line)
                if m:
                    _add_overload(functions.setdefault(m.group(1), Method()), m.group(2))
            continue
        assert current is not None, f"{path.name}: member outside a class: {line!r}"
        body = line.strip()
        if body.startswith("property "):
            m = re.match(r"property (\w+)( \(read-only\))?$", body)
            assert m, f"{path.name}: cannot parse {body!r}"
            current.properties[m.group(1)] = bool(m.group(2))
        elif body.startswith("def "):
            m = _DEF.match(body)
            assert m, f"{path.name}: cannot parse {body!r}"
            _add_overload(current.methods.setdefault(m.group(1), Method()), m.group(2))
        else:
            raise AssertionError(f"{path.name}: cannot parse {body!r}")
    for method in [*functions.values(), *(m for c in classes.values() for m in c.methods.values())]:
        method.unknown = not method.overloads
    return Listing(version, classes, enums, functions)


def _add_overload(method: Method, arglist: str) -> None:
    params = _params(arglist)
    if params is not None:
        method.overloads.append(params)


@pytest.fixture(scope="module", params=VERSIONS)
def listing(request) -> Listing:
    return LISTINGS[request.param]


LISTINGS = {v: parse_listing(DATA / f"tensorrt-{v}.txt") for v in VERSIONS}


# ----------------------------------------------------------------------------------------------------------------
# the parser itself (a parser that finds nothing would make every check below pass)


def test_listings_parse_to_the_known_api():
    for version, lst in LISTINGS.items():
        assert len(lst.classes) > 100 and len(lst.enums) > 40, version
        net = lst.classes["INetworkDefinition"]
        assert net.methods["add_convolution_nd"].param_lists() == [
            ["input", "num_output_maps", "kernel_shape", "kernel", "bias"]], version
        assert net.methods["add_topk"].param_lists() == [["input", "op", "k", "axes"],
                                                         ["input", "op", "k", "axes", "indices_type"]], version
        assert ("bias", True) in net.methods["add_convolution_nd"].overloads[0]
        assert lst.classes["IPoolingLayer"].bases == ["ILayer"]
        assert lst.classes["ILayer"].properties["type"] is True  # read-only
        assert lst.classes["IPoolingLayer"].properties["type"] is False
        assert lst.lookup("IConvolutionLayer", "name") == ("property", False)
        assert lst.enums["PoolingType"] == ["MAX", "AVERAGE", "MAX_AVERAGE_BLEND"]
    assert [["input", "scale"], ["input", "scale", "output_type"]] == \
        LISTINGS["10.16.1.11"].classes["INetworkDefinition"].methods["add_quantize"].param_lists()
    assert [["input", "scale", "output_type"]] == \
        LISTINGS["11.4.0.106"].classes["INetworkDefinition"].methods["add_quantize"].param_lists()
    assert "dynamic_range" in LISTINGS["10.16.1.11"].classes["ITensor"].properties
    assert "dynamic_range" not in LISTINGS["11.4.0.106"].classes["ITensor"].properties


# ----------------------------------------------------------------------------------------------------------------
# introspection of the reference backend

BACKEND_CLASSES = {"INetworkDefinition": ref_net.INetworkDefinition, "ITensor": ref_net.ITensor,
                   "ILayer": ref_net.ILayer, "Dims": ref_net.Dims, "Weights": ref_net.Weights,
                   **ref_net.LAYER_CLASSES}
# Dims is a tuple subclass on the reference backend so that shapes compare and unpack like tuples; what it inherits
# from tuple (count, index) is not TensorRT API and is not checked. Constructors of the value types are.
_BUILTIN_BASES = (object, tuple)
_CHECKED_DUNDERS = {"Dims": ("__init__",), "Weights": ("__init__",)}


def _sample_instance(name: str, cls):
    """An instance, to see attributes set in __init__ (e.g. ILayer.metadata, INetworkDefinition.name)."""
    net = ref_net.INetworkDefinition()
    x = net.add_input("x", _trt().float32, (1, 3, 4, 4))
    if name == "INetworkDefinition":
        return net
    if name == "ITensor":
        return x
    if name == "Dims":
        return ref_net.Dims((1, 2))
    if name == "Weights":
        return ref_net.Weights(np.zeros(2, np.float32))
    return cls(net, [x], 1, {}, {})


def _trt():
    from zoo.trt_api import trt
    return trt


def backend_members(name: str, cls) -> dict[str, tuple[str, object]]:
    """Public members: name -> ('method', function) | ('property', has_setter)."""
    out: dict[str, tuple[str, object]] = {}
    for attr in dir(cls):
        if attr.startswith("_") and attr not in _CHECKED_DUNDERS.get(name, ()):
            continue
        owner = next(k for k in cls.__mro__ if attr in vars(k))
        value = vars(owner)[attr]
        if attr == "__init__" and owner in _BUILTIN_BASES and "__new__" in vars(cls):
            owner, value = cls, vars(cls)["__new__"]  # a tuple subclass is constructed by __new__
        if owner in _BUILTIN_BASES:
            continue
        if isinstance(value, property):
            out[attr] = ("property", value.fset is not None)
        elif isinstance(value, (staticmethod, classmethod)):
            out[attr] = ("method", value.__func__)
        elif inspect.isfunction(value):
            out[attr] = ("method", value)
        else:  # a class attribute: TensorRT exposes these as (read-only) properties, e.g. Dims.MAX_DIMS
            out[attr] = ("property", False)
    for attr in vars(_sample_instance(name, cls)):
        if not attr.startswith("_") and attr not in out:
            out[attr] = ("property", True)  # a plain instance attribute is settable
    return out


def _param_names(func) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def conformance_problems(lst: Listing) -> list[str]:
    problems = []
    for name, cls in sorted(BACKEND_CLASSES.items()):
        if name not in lst.classes:
            problems.append(f"class {name}: not in TensorRT {lst.version}")
            continue
        for member, (kind, value) in sorted(backend_members(name, cls).items()):
            where = f"{name}.{member}"
            found = lst.lookup(name, member)
            if found is None:
                problems.append(f"{where}: the reference backend offers this {kind}, TensorRT {lst.version} has no "
                                f"{name}.{member}")
                continue
            trt_kind, trt_value = found
            if kind != trt_kind:
                problems.append(f"{where}: a {kind} on the reference backend, a {trt_kind} in TensorRT {lst.version}")
            elif kind == "property":
                if value and trt_value:
                    problems.append(f"{where}: settable on the reference backend, read-only in TensorRT "
                                    f"{lst.version}")
            elif not trt_value.unknown:
                ours = _param_names(value)
                if ours not in trt_value.param_lists():
                    overloads = "; ".join(f"({', '.join(p)})" for p in trt_value.param_lists())
                    mismatch = _first_difference(ours, trt_value.param_lists())
                    problems.append(f"{where}: parameters ({', '.join(ours)}) match no TensorRT {lst.version} "
                                    f"overload [{overloads}]; {mismatch}")
    return problems


def _first_difference(ours: list[str], overloads: list[list[str]]) -> str:
    best = max(overloads, key=lambda o: (sum(a == b for a, b in zip(ours, o)), -abs(len(o) - len(ours))))
    for i, (a, b) in enumerate(zip(ours, best)):
        if a != b:
            return f"parameter {i + 1} is {a!r}, TensorRT's is {b!r}"
    if len(ours) > len(best):
        return f"extra parameters {ours[len(best):]}"
    return f"missing parameters {best[len(ours):]}"


def test_every_backend_method_and_property_exists_in_tensorrt(listing):
    problems = conformance_problems(listing)
    assert not problems, f"TensorRT {listing.version}:\n  " + "\n  ".join(problems)


def _arities(func) -> tuple[list[str], int]:
    """(parameter names after self, how many are required)."""
    params = [p for p in inspect.signature(func).parameters.values()
              if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [p.name for p in params], sum(p.default is inspect.Parameter.empty for p in params)


def default_problems(lst: Listing, both_ways: bool) -> list[str]:
    """Every argument count the backend accepts is one TensorRT accepts with the same names; with `both_ways`, every
    count TensorRT accepts for an overload named like the backend's is accepted by the backend too."""
    problems = []
    for name, cls in sorted(BACKEND_CLASSES.items()):
        for member, (kind, func) in sorted(backend_members(name, cls).items()):
            found = lst.lookup(name, member)
            if kind != "method" or found is None or found[0] != "method" or found[1].unknown:
                continue
            ours, required = _arities(func)
            accepted = set()
            for overload in found[1].overloads:
                names = [n for n, _ in overload]
                trt_required = sum(not has_default for _, has_default in overload)
                for n in range(trt_required, len(names) + 1):
                    if names[:n] == ours[:n]:
                        accepted.add(n)
            for n in range(required, len(ours) + 1):
                if n not in accepted:
                    problems.append(f"{name}.{member}: the reference backend accepts {n} arguments "
                                    f"({', '.join(ours[:n])}), TensorRT {lst.version} does not")
            if both_ways:
                for n in sorted(accepted):
                    if not required <= n <= len(ours):
                        problems.append(f"{name}.{member}: TensorRT {lst.version} accepts {n} arguments "
                                        f"({', '.join(ours[:n])}), the reference backend needs {required}..{len(ours)}")
    return problems


def test_backend_defaults_match_tensorrt(listing):
    problems = default_problems(listing, both_ways=listing.version == CURRENT)
    assert not problems, f"TensorRT {listing.version}:\n  " + "\n  ".join(problems)


def test_backend_introspection_sees_the_api():
    """Guards the check above: it must actually see the methods, properties and instance attributes."""
    net = backend_members("INetworkDefinition", ref_net.INetworkDefinition)
    assert net["add_convolution_nd"][0] == "method" and net["num_layers"] == ("property", False)
    assert net["name"] == ("property", True)
    layer = backend_members("ILayer", ref_net.ILayer)
    assert layer["metadata"] == ("property", True) and layer["type"] == ("property", False)
    pool = backend_members("IPoolingLayer", ref_net.IPoolingLayer)
    assert pool["type"] == ("property", True) and pool["stride_nd"] == ("property", True)
    act = backend_members("IActivationLayer", ref_net.IActivationLayer)
    assert act["type"] == ("property", True)
    assert "count" not in backend_members("Dims", ref_net.Dims)
    assert "__init__" in backend_members("Weights", ref_net.Weights)
    assert _param_names(backend_members("Dims", ref_net.Dims)["__init__"][1]) == ["shape"]


def test_a_wrong_parameter_name_is_reported_precisely(monkeypatch):
    """The check itself: a renamed parameter, a property TensorRT lacks, a setter on a read-only property."""
    def add_softmax(self, tensor):  # TensorRT's parameter is `input`
        raise AssertionError

    monkeypatch.setattr(ref_net.INetworkDefinition, "add_softmax", add_softmax)
    monkeypatch.setattr(ref_net.ITensor, "color", property(lambda self: 0), raising=False)
    monkeypatch.setattr(ref_net.ILayer, "num_inputs", property(lambda self: 0, lambda self, v: None))
    problems = "\n".join(conformance_problems(LISTINGS[CURRENT]))
    assert "INetworkDefinition.add_softmax: parameters (tensor) match no TensorRT 11.4.0.106 overload [(input)]; " \
           "parameter 1 is 'tensor', TensorRT's is 'input'" in problems
    assert "ITensor.color: the reference backend offers this property, TensorRT 11.4.0.106 has no ITensor.color" \
        in problems
    assert "IActivationLayer.num_inputs: settable on the reference backend, read-only" in problems


def test_a_wrong_default_is_reported(monkeypatch):
    def add_convolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias):  # bias required: stricter
        raise AssertionError

    def add_shuffle(self, input=None):  # callable without input: TensorRT is not
        raise AssertionError

    monkeypatch.setattr(ref_net.INetworkDefinition, "add_convolution_nd", add_convolution_nd)
    monkeypatch.setattr(ref_net.INetworkDefinition, "add_shuffle", add_shuffle)
    problems = "\n".join(default_problems(LISTINGS[CURRENT], both_ways=True))
    assert "INetworkDefinition.add_convolution_nd: TensorRT 11.4.0.106 accepts 4 arguments (input, num_output_maps, " \
           "kernel_shape, kernel), the reference backend needs 5..5" in problems
    assert "INetworkDefinition.add_shuffle: the reference backend accepts 0 arguments (), TensorRT 11.4.0.106 does " \
           "not" in problems


def test_type_shadows_ilayer_type_as_in_tensorrt():
    trt = _trt()
    net = ref_net.INetworkDefinition()
    x = net.add_input("x", trt.float32, (1, 2, 4, 4))
    pool = net.add_pooling_nd(x, trt.PoolingType.MAX, (2, 2))
    act = net.add_activation(x, trt.ActivationType.RELU)
    conv = net.add_convolution_nd(x, 2, (1, 1), np.ones(4, np.float32))
    assert pool.type == trt.PoolingType.MAX and act.type == trt.ActivationType.RELU
    assert conv.type == trt.LayerType.CONVOLUTION
    pool.type = trt.PoolingType.AVERAGE
    assert pool.type == trt.PoolingType.AVERAGE
    with pytest.raises(AttributeError):
        conv.type = trt.LayerType.POOLING  # read-only on ILayer, as in TensorRT


# ----------------------------------------------------------------------------------------------------------------
# enums and dtype aliases

BACKEND_ENUMS = {name: obj for name, obj in vars(ref_enums).items()
                 if inspect.isclass(obj) and issubclass(obj, enum.Enum) and obj.__module__ == ref_enums.__name__}


def test_backend_defines_enums():
    assert {"ActivationType", "DataType", "LayerType", "PoolingType", "ScaleMode"} <= set(BACKEND_ENUMS)


@pytest.mark.parametrize("name", sorted(BACKEND_ENUMS))
def test_enum_exists_in_both_versions_and_equals_11(name):
    members = list(BACKEND_ENUMS[name].__members__)
    problems = []
    for version, lst in LISTINGS.items():
        if name not in lst.enums:
            problems.append(f"enum {name}: not in TensorRT {version}")
    current = LISTINGS[CURRENT].enums.get(name, [])
    extra = [m for m in members if m not in current]
    if extra:
        where = ["10.16.1.11 only" if m in LISTINGS["10.16.1.11"].enums.get(name, []) else "neither version"
                 for m in extra]
        problems.append(f"enum {name}: members {extra} are not in TensorRT {CURRENT} ({', '.join(where)})")
    missing = [m for m in current if m not in members]
    if missing:
        problems.append(f"enum {name}: TensorRT {CURRENT} members {missing} are missing on the reference backend")
    assert not problems, "\n".join(problems)


def version_specific_members() -> dict[str, dict[str, list[str]]]:
    """For the backend's enums: members present in one listing only, by enum."""
    out = {}
    old, new = LISTINGS["10.16.1.11"].enums, LISTINGS[CURRENT].enums
    for name in BACKEND_ENUMS:
        only_new = [m for m in new.get(name, []) if m not in old.get(name, [])]
        only_old = [m for m in old.get(name, []) if m not in new.get(name, [])]
        if only_new or only_old:
            out[name] = {"11.4 only": only_new, "10.16 only": only_old}
    return out


def test_enum_members_that_differ_between_10_and_11_are_known():
    """Members the backend offers must work on both versions unless listed here as 11-only on purpose; the zoo
    must not use them. The 10-only members are what TensorRT 11 removed and the backend never offers."""
    differ = version_specific_members()
    assert differ == {"NetworkDefinitionCreationFlag": {"11.4 only": [], "10.16 only": ["EXPLICIT_BATCH"]}}, \
        "enum members that exist in one TensorRT version only: " + repr(differ)
    for name, by_version in differ.items():
        for member in by_version["10.16 only"]:
            assert member not in BACKEND_ENUMS[name].__members__, f"{name}.{member} was removed in TensorRT 11"


@pytest.mark.parametrize("name", sorted(BACKEND_ENUMS))
def test_enum_members_exist_in_10_16(name):
    old = LISTINGS["10.16.1.11"].enums.get(name, [])
    only_11 = [m for m in BACKEND_ENUMS[name].__members__ if m not in old]
    assert not only_11, f"enum {name}: members {only_11} exist in TensorRT 11.4 only, not in 10.16"


def test_enums_module_offers_only_tensorrt_names():
    classes = {name for lst in LISTINGS.values() for name in lst.classes}  # trt.Dims, trt.Weights
    extra = [name for name, obj in vars(ref_enums).items() if not name.startswith("_") and name not in BACKEND_ENUMS
             and name not in DTYPE_ALIASES and name not in classes and not (inspect.isclass(obj) and obj is enum.Enum)]
    assert not extra, f"the reference enums module offers {extra}, which are not TensorRT names"


DTYPE_ALIASES = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16", "int8": "INT8", "int32": "INT32",
                 "int64": "INT64", "bool": "BOOL", "uint8": "UINT8", "fp8": "FP8"}


@pytest.mark.parametrize("alias,member", sorted(DTYPE_ALIASES.items()))
def test_module_level_dtype_aliases(alias, member):
    assert hasattr(ref_enums, alias), f"the reference enums lack TensorRT's module-level alias trt.{alias}"
    assert getattr(ref_enums, alias) is ref_enums.DataType[member], f"trt.{alias} must be DataType.{member}"
    for version, lst in LISTINGS.items():
        assert member in lst.enums["DataType"], f"DataType.{member} is not in TensorRT {version}"


# ----------------------------------------------------------------------------------------------------------------
# what TensorRT 11 removed is not offered; what the backend lacks fails loudly


def removed_in_11() -> list[tuple[str, str]]:
    """(class, member) in TensorRT 10.16 but not 11.4, for the classes the backend implements."""
    old, new = LISTINGS["10.16.1.11"], LISTINGS[CURRENT]
    out = []
    for cls in sorted(BACKEND_CLASSES):
        o = old.classes[cls]
        for member in sorted({*o.methods, *o.properties}):
            if new.lookup(cls, member) is None:
                out.append((cls, member))
    return out


def test_removed_in_11_is_what_the_readme_says():
    removed = removed_in_11()
    for expected in [("ITensor", "dynamic_range"), ("ITensor", "set_dynamic_range"), ("ILayer", "precision"),
                     ("ILayer", "set_output_type")]:
        assert expected in removed


@pytest.mark.parametrize("cls,member", removed_in_11())
def test_backend_does_not_offer_what_tensorrt_11_removed(cls, member):
    assert member not in backend_members(cls, BACKEND_CLASSES[cls]), \
        f"the reference backend offers {cls}.{member}, which TensorRT 11 removed"


# Removed before TensorRT 10 already (so in neither listing), and the first thing old tensorrtx code reaches for.
PRE_10_APIS = ["add_fully_connected", "add_convolution", "add_pooling", "add_deconvolution", "add_padding",
               "add_rnn_v2", "add_plugin_ext"]


@pytest.mark.parametrize("member", PRE_10_APIS)
def test_backend_does_not_offer_pre_10_apis(member):
    for version, lst in LISTINGS.items():
        assert lst.lookup("INetworkDefinition", member) is None, f"{member} is in TensorRT {version}"
    assert member not in dir(ref_net.INetworkDefinition)
    with pytest.raises(AttributeError, match=f"{member} was removed in TensorRT 10"):  # no such attribute, as there
        getattr(ref_net.INetworkDefinition(), member)


def test_two_argument_quantize_of_10_is_not_offered():
    """TensorRT 10.16 has add_quantize(input, scale) and (input, scale, output_type); 11.4 only the latter."""
    for name in ("add_quantize", "add_dequantize"):
        assert ["input", "scale"] in LISTINGS["10.16.1.11"].classes["INetworkDefinition"].methods[name].param_lists()
        ours = _param_names(getattr(ref_net.INetworkDefinition, name))
        assert ours == ["input", "scale", "output_type"], name


def test_removed_network_methods_raise():
    net = ref_net.INetworkDefinition()
    with pytest.raises(AttributeError, match="add_fully_connected was removed in TensorRT 10; use add_matrix_multiply"):
        net.add_fully_connected
    tensor = net.add_input("x", _trt().float32, (1, 2))
    with pytest.raises(AttributeError):
        tensor.dynamic_range
    with pytest.raises(AttributeError):
        tensor.dtype = _trt().float16  # read-only in TensorRT 11


def test_quantize_and_dequantize_require_output_type():
    for name in ("add_quantize", "add_dequantize"):
        sig = inspect.signature(getattr(ref_net.INetworkDefinition, name))
        assert list(sig.parameters) == ["self", "input", "scale", "output_type"], name
        assert sig.parameters["output_type"].default is inspect.Parameter.empty, \
            f"{name}: output_type must be required (TensorRT 11 has no 2-argument form)"


def test_every_tensorrt_add_method_the_backend_lacks_raises_naming_it():
    net = ref_net.INetworkDefinition()
    offered = set(dir(ref_net.INetworkDefinition))
    missing = [m for m in LISTINGS[CURRENT].classes["INetworkDefinition"].methods
               if m.startswith("add_") and m not in offered]
    assert "add_lrn" in missing and "add_einsum" in missing
    for name in missing:
        with pytest.raises(NotImplementedError, match=re.escape(f"INetworkDefinition.{name}")):
            getattr(net, name)


def test_network_creation_flags_have_no_explicit_batch():
    assert "EXPLICIT_BATCH" not in ref_enums.NetworkDefinitionCreationFlag.__members__
    assert "STRONGLY_TYPED" in ref_enums.NetworkDefinitionCreationFlag.__members__


def test_plugin_op_namespace_exists_in_tensorrt_plugin():
    for version in VERSIONS:
        text = (DATA / f"tensorrt.plugin-{version}.txt").read_text()
        assert "module op" in text.splitlines(), version
    assert hasattr(ref_plugin, "op")
