"""ONNX Runtime as the CPU executor: which backend `auto` picks, the optimised-graph cache beside an engine, the
overlapped infer loop, and progress output. Every result is checked against the reference backend or the plain loop.
"""
import io
import json
import sys
import threading

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from zoo.engine import backends  # noqa: E402
from zoo.engine.backends import ReferenceBackend, choose_backend  # noqa: E402
from zoo.engine.cli import main  # noqa: E402
from zoo.engine.engine_file import read_engine  # noqa: E402
from zoo.engine.onnx import runner as ort_runner  # noqa: E402
from zoo.engine.onnx.backend import OnnxBackend  # noqa: E402
from zoo.engine.progress import Progress  # noqa: E402
from zoo.lenet.model import LeNetModel  # noqa: E402

IMAGES = "tests/data/images"


def run(model, *argv):
    return main(model, [str(a) for a in argv])


# ----------------------------------------------------------------------------------------------------------------
# which executor auto picks


class FakeTensorRT:
    name = "tensorrt"


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backends, "gpu_status", lambda: (False, "the tensorrt package is not installed"))


def test_auto_takes_onnxruntime_when_tensorrt_is_absent(no_gpu):
    backend = choose_backend("auto")
    assert backend.name == "onnx" and "TensorRT not used" in backend.reason and "ONNX Runtime" in backend.reason


def test_auto_falls_back_to_the_reference_backend_without_onnxruntime(no_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    backend = choose_backend("auto")
    assert isinstance(backend, ReferenceBackend) and "onnxruntime is not installed" in backend.reason


def test_auto_takes_tensorrt_when_it_can_run(monkeypatch):
    import types
    fake = types.ModuleType("zoo.engine.tensorrt.backend")  # the real one imports tensorrt, absent here
    fake.TensorRTBackend = FakeTensorRT
    monkeypatch.setitem(sys.modules, "zoo.engine.tensorrt.backend", fake)
    monkeypatch.setattr(backends, "gpu_status", lambda: (True, "1 CUDA device(s)"))
    backend = choose_backend("auto")
    assert isinstance(backend, FakeTensorRT) and "TensorRT can run here" in backend.reason


def test_a_forced_backend_wins_and_build_and_validate_stay_on_the_reference(no_gpu):
    assert isinstance(choose_backend("reference"), ReferenceBackend)
    assert choose_backend("onnx").name == "onnx"
    assert isinstance(choose_backend("auto", run_on_onnx=False), ReferenceBackend)
    with pytest.raises(RuntimeError, match="cannot run here"):
        choose_backend("tensorrt")


def test_auto_with_device_cuda_keeps_the_reference_backend(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    backend = choose_backend("auto", device="cuda")
    assert isinstance(backend, ReferenceBackend) and backend.device == "cuda"


def test_the_first_line_says_which_executor_runs_and_why(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    assert run(LeNetModel(), "infer", "--source", tmp_path / "x.npy") == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert "ONNX Runtime" in first and "auto: TensorRT not used" in first


# ----------------------------------------------------------------------------------------------------------------
# the optimised graph cached beside the engine


@pytest.fixture(scope="module")
def lenet_engines(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    for name, seed in (("a", 0), ("b", 1)):
        assert run(LeNetModel(), "build", "-o", folder / f"{name}.engine", "--seed", seed, "--backend", "onnx") == 0
    assert run(LeNetModel(), "build", "-o", folder / "ref.engine", "--batch", "1:2:4") == 0
    return folder


def _reference_outputs(payload_or_network, x):
    return ReferenceBackend().runner_for(payload_or_network).run({"input": x})


def _lenet_network(seed):
    from zoo.engine.networks import define_network
    from zoo.engine.cli import make_parser
    model = LeNetModel()
    args = make_parser(model).parse_args(["validate", "--seed", str(seed)])
    from zoo.engine.networks import load_weights
    weights, config, _ = load_weights(model, args)
    return define_network(model, ReferenceBackend(), weights, config)


def _fresh(folder, name, tmp_path):
    """A copy of an engine with no cache beside it."""
    target = tmp_path / name
    target.write_bytes((folder / name).read_bytes())
    return target


def test_the_cache_is_written_then_used_and_gives_the_same_outputs(lenet_engines, tmp_path):
    engine = _fresh(lenet_engines, "a.engine", tmp_path)
    _, payload = read_engine(engine)
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    first = OnnxBackend().load(payload, cache_beside=engine)
    assert first.cache_state == "written" and first.cache_file.is_file()
    second = OnnxBackend().load(payload, cache_beside=engine)
    assert second.cache_state == "used"
    net, outputs = _lenet_network(0)
    expected = _reference_outputs(net, x)[outputs[0]]
    for runner in (first, second):
        got = runner.run({"input": x})[outputs[0]]
        assert (got - expected).abs().max().item() <= 1e-5


def test_another_engine_never_reads_the_cache(lenet_engines, tmp_path):
    a, b = _fresh(lenet_engines, "a.engine", tmp_path), _fresh(lenet_engines, "b.engine", tmp_path)
    runner_a = OnnxBackend().load(read_engine(a)[1], cache_beside=a)
    # b's cache name is its own; even a's cache copied under b's name is refused (its key is a's)
    b_cache = ort_runner.cache_path(b, ort_runner.OnnxRunner.cache_key(read_engine(b)[1], "onnx"))
    assert b_cache != runner_a.cache_file
    b_cache.write_bytes(runner_a.cache_file.read_bytes())
    runner_b = OnnxBackend().load(read_engine(b)[1], cache_beside=b)
    assert runner_b.cache_state == "rebuilt"
    x = np.random.default_rng(1).random((2, 1, 32, 32), dtype=np.float32)
    net, outputs = _lenet_network(1)
    expected = _reference_outputs(net, x)[outputs[0]]
    assert (runner_b.run({"input": x})[outputs[0]] - expected).abs().max().item() <= 1e-5
    assert OnnxBackend().load(read_engine(b)[1], cache_beside=b).cache_state == "used"  # rewritten, now b's


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "not a cache"])
def test_a_damaged_cache_is_rebuilt_never_trusted(lenet_engines, tmp_path, damage):
    engine = _fresh(lenet_engines, "a.engine", tmp_path)
    payload = read_engine(engine)[1]
    cache = OnnxBackend().load(payload, cache_beside=engine).cache_file
    blob = bytearray(cache.read_bytes())
    if damage == "flip a byte":
        blob[-100] ^= 0xFF
    elif damage == "truncate":
        del blob[len(blob) // 2:]
    else:
        blob = bytearray(b"garbage")
    cache.write_bytes(bytes(blob))
    runner = OnnxBackend().load(payload, cache_beside=engine)
    x = np.random.default_rng(2).random((1, 1, 32, 32), dtype=np.float32)
    net, outputs = _lenet_network(0)
    expected = _reference_outputs(net, x)[outputs[0]]
    assert runner.cache_state == "rebuilt"
    assert (runner.run({"input": x})[outputs[0]] - expected).abs().max().item() <= 1e-5
    assert OnnxBackend().load(payload, cache_beside=engine).cache_state == "used"


def test_a_reference_engine_runs_on_onnxruntime_under_auto(lenet_engines, tmp_path, no_gpu):
    from zoo.engine.engines import open_engine
    engine = _fresh(lenet_engines, "ref.engine", tmp_path)
    header, runner, backend = open_engine(LeNetModel(), engine)
    assert backend.name == "onnx" and runner.cache_state == "written" and "a reference engine" in backend.reason
    _, reference, _ = open_engine(LeNetModel(), engine, choice="reference")
    x = np.random.default_rng(3).random((4, 1, 32, 32), dtype=np.float32)
    got, expected = runner.run({"input": x})["softmax"], reference.run({"input": x})["softmax"]
    assert (got - expected).abs().max().item() <= 1e-5
    assert open_engine(LeNetModel(), engine)[1].cache_state == "used"
    with pytest.raises(ValueError, match="batch 5, outside the engine's optimization profile 1..4"):
        runner.run({"input": np.zeros((5, 1, 32, 32), np.float32)})


def test_every_batch_of_the_range_runs_on_one_session_with_bound_outputs(lenet_engines, tmp_path):
    engine = _fresh(lenet_engines, "ref.engine", tmp_path)
    runner = OnnxBackend().load_reference_engine(read_engine(engine)[1])
    reference = ReferenceBackend().load(read_engine(engine)[1])
    for batch in (1, 4, 2, 4, 1):  # the second run of a size goes through I/O binding
        x = np.random.default_rng(batch).random((batch, 1, 32, 32), dtype=np.float32)
        got = runner.run({"input": x})["softmax"]
        assert got.shape == (batch, 10)
        assert (got - reference.run({"input": x})["softmax"]).abs().max().item() <= 1e-5
    kept = runner.run({"input": np.ones((1, 1, 32, 32), np.float32)})["softmax"].clone()
    held = runner.run({"input": np.ones((1, 1, 32, 32), np.float32)})["softmax"]
    runner.run({"input": np.zeros((1, 1, 32, 32), np.float32)})
    assert torch.equal(held, kept)  # outputs handed back are the caller's: the next run does not overwrite them


def test_threads_follow_the_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert ort_runner._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert ort_runner._cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert ort_runner._cgroup_quota(tmp_path) == 0.5
    assert 1 <= ort_runner.available_cores() <= len(__import__("os").sched_getaffinity(0))


def test_processes_sharing_the_cores_split_the_threads(monkeypatch):
    """serve's workers each run a session: four cores and two workers give two threads each, never zero."""
    monkeypatch.setattr(ort_runner, "available_cores", lambda: 4)
    monkeypatch.setattr(ort_runner, "_PROCESSES_SHARING", 1)
    assert ort_runner.session_threads() == 4
    ort_runner.share_cores(2)
    assert ort_runner.session_threads() == 2
    ort_runner.share_cores(8)
    assert ort_runner.session_threads() == 1
    ort_runner.share_cores(2)
    runner = OnnxBackend().runner_for(_lenet_network(0)[0])
    assert runner.threads == 2 and runner.session.get_session_options().intra_op_num_threads == 2


# ----------------------------------------------------------------------------------------------------------------
# the overlapped infer loop


@pytest.fixture
def folder_with_a_bad_image(tmp_path):
    import shutil
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(["odd.jpg", "portrait.jpg", "square.jpg", "street.jpg", "tiny.jpg"]):
        shutil.copyfile(f"{IMAGES}/{name}", folder / f"{i}_{name}")
    shutil.copyfile("tests/data/bad_images/broken.jpg", folder / "2b_broken.jpg")
    return folder


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_the_overlapped_loop_gives_the_plain_loops_records_in_order(folder_with_a_bad_image, capsys, batch):
    outputs = {}
    for prefetch in (0, 2):
        assert run(LeNetModel(), "infer", "--source", folder_with_a_bad_image, "--batch", batch,
                   "--prefetch", prefetch) == 0
        outputs[prefetch] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert outputs[0] == outputs[2]
    names = [r["file"].rsplit("/", 1)[-1] for r in outputs[0]]
    assert sorted(names) == sorted(p.name for p in folder_with_a_bad_image.iterdir())
    assert "error" in outputs[0][names.index("2b_broken.jpg")]


class _Header:
    input_name, precision, config = "input", "fp32", {}


def test_a_stage_that_raises_stops_the_loop_cleanly(tmp_path):
    from zoo.engine.commands.infer import infer_folder
    paths = [tmp_path / f"{i}.jpg" for i in range(12)]
    ran = []

    class Model:
        def load_batch(self, chunk, config, device, max_pixels=None):
            if chunk[0].name == "4.jpg":
                raise OSError("disk gone")
            return np.zeros((len(chunk), 1)), [{"file": str(p)} for p in chunk]

        def records(self, outputs, contexts, config, args):
            return [{"file": c["file"]} for c in contexts]

    class Runner:
        device = "cpu"

        def run(self, feeds):
            ran.append(len(feeds["input"]))
            return {"out": torch.zeros(1)}

    with pytest.raises(OSError, match="disk gone"):
        infer_folder(Model(), Runner(), _Header(), paths, 2, None, prefetch=2)
    assert len(ran) == 2  # batches 0 and 1 ran; nothing after the failed one
    assert not [t for t in threading.enumerate() if t.name.startswith(("zoo-load", "zoo-post"))]


# ----------------------------------------------------------------------------------------------------------------
# progress


def test_progress_is_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with Progress(4, "calibrate", unit="img", stream=stream) as bar:
        bar.update(2, note="a.jpg")
        bar.update(2)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert lines[0].startswith("[2/4] calibrate a.jpg: ") and "img/s" in lines[0] and "s left" in lines[0]
    assert lines[1].startswith("[4/4] calibrate: ")


def test_progress_draws_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with Progress(4, "bench", stream=stream) as bar:
        bar.update(4)
    assert "\r" in stream.getvalue() and "4/4" in stream.getvalue()


def test_infer_progress_goes_to_stderr_as_plain_lines(folder_with_a_bad_image, capsys):
    assert run(LeNetModel(), "infer", "--source", folder_with_a_bad_image, "--batch", 3) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "[3/6] infer" in err and "[6/6] infer" in err


# ----------------------------------------------------------------------------------------------------------------
# INT8 on ONNX Runtime's integer kernels


@pytest.mark.parametrize("family_name, flags", [("mobilenet", ["--variant", "mobilenet_v2", "--input-size", "64"]),
                                                ("resnet", ["--depth", "18", "--input-size", "64"])])
def test_int8_on_onnxruntime_equals_the_reference_backends_int8(family_name, flags):
    """The CPU plan (FP32 between Q/DQ, QLinearConv where a convolution's output is re-quantized) against the
    reference backend executing the same Q/DQ network: the same quantized arithmetic, so the outputs agree far
    more closely than INT8 agrees with FP32. A wrong scale, zero point, clamp or bias is a gross error here."""
    from zoo.engine import quantization
    from zoo.engine.cli import make_parser
    from zoo.engine.onnx.cpu_plan import prepare_for_cpu
    from zoo.engine.onnx.writer import to_onnx
    from zoo.engine.onnx.runner import OnnxRunner
    from layers.precision import Precision
    from zoo.engine.quantization import as_input
    from zoo.engine.networks import define_network, load_weights
    from zoo.registry import family

    model = family(family_name).load()
    args = make_parser(model).parse_args(["validate", *flags])
    weights, config, _ = load_weights(model, args)
    calib = model.sample_input(config, 4, 1)

    def define(backend, precision):
        return define_network(model, backend, weights, config, precision)

    scales, _ = quantization.calibrate(define, ReferenceBackend(), lambda: [calib], model.input_name, "max", 99.99,
                                       4, log=lambda m: None)
    net, outputs = define(OnnxBackend(), Precision("int8", scales))
    proto = to_onnx(net)
    plan = prepare_for_cpu(proto)
    fused = sum(n.op_type == "QLinearConv" for n in plan.graph.node)
    convs = sum(n.op_type == "Conv" for n in proto.graph.node)
    assert 3 * fused >= convs  # the integer kernels are really used (not on convs feeding a residual Add)
    x = as_input(model.sample_input(config, 3, 2), "int8")
    got = OnnxRunner(proto.SerializeToString()).run({model.input_name: x})[outputs[0]]
    expected = ReferenceBackend().runner_for(net).run({model.input_name: x})[outputs[0]].float()
    fp32_net, fp32_outputs = define(ReferenceBackend(), Precision("fp32"))
    fp32 = ReferenceBackend().runner_for(fp32_net).run({model.input_name: x.astype(np.float32)})[fp32_outputs[0]]
    # The reference keeps FP16 between Q/DQ where the plan computes FP32, so a value near a rounding boundary may
    # quantize one step apart and the flip propagates: the two INT8 executions differ by less than INT8 differs
    # from FP32 (measured: 0.6x for MobileNetV2, at 64 px with random weights), while a wrong scale, clamp or bias
    # makes them differ by far more (measured: dropping the bias gives 48x).
    ours, int8_vs_fp32 = (got - expected).norm().item(), (expected - fp32).norm().item()
    assert ours <= int8_vs_fp32, (ours, int8_vs_fp32)
    cos = torch.nn.functional.cosine_similarity(got.flatten().double(), expected.flatten().double(), dim=0).item()
    assert cos >= 0.999


def test_libpng_colour_profile_warnings_are_silenced(tmp_path, capfd):
    """A PNG whose iCCP chunk libpng objects to decodes to the same pixels, without libpng's line on stderr."""
    import struct
    import zlib

    import cv2

    from zoo.vision.images import try_read_image
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    png = cv2.imencode(".png", pixels)[1].tobytes()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    profile = bytearray(132)
    struct.pack_into(">I", profile, 0, len(profile))
    struct.pack_into(">I", profile, 64, 7)  # rendering intent 7: invalid
    (tmp_path / "p.png").write_bytes(png[:33] + chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(profile))) + png[33:])
    cv2.imdecode(np.fromfile(str(tmp_path / "p.png"), np.uint8), cv2.IMREAD_COLOR)
    assert "libpng warning" in capfd.readouterr().err  # the file does provoke libpng
    image, reason = try_read_image(tmp_path / "p.png")
    assert reason is None and np.array_equal(image, pixels)
    assert "libpng" not in capfd.readouterr().err


def test_the_cpu_plan_fuses_a_quantized_convolution_exactly():
    """Q/DQ -> Conv -> Relu -> Q becomes QLinearConv, equal to the Q/DQ arithmetic computed in float64 by torch
    within one output step (a rounding tie), and exactly on nearly every element."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from zoo.engine.onnx.cpu_plan import prepare_for_cpu
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    w_scale = np.abs(w).reshape(4, -1).max(1) / 127
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "w": w, "w_scale": w_scale.astype(np.float32), "w_zero": np.zeros(4, np.int8),
        "x_scale": np.array(0.02, np.float32), "y_scale": np.array(0.05, np.float32),
        "zero": np.array(0, np.int8), "bias": rng.normal(size=4).astype(np.float32)}.items()]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "zero"], ["xd"]),
             helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], axis=0),
             helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bias"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "y_scale", "zero"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "y_scale", "zero"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plan = prepare_for_cpu(model)
    ops = [n.op_type for n in plan.graph.node]
    assert "QLinearConv" in ops and "Conv" not in ops
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    got = ort.InferenceSession(plan.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    def fake_quant(v, scale):  # QuantizeLinear then DequantizeLinear, in float64
        return np.clip(np.rint(v / scale), -128, 127) * scale

    wd = np.clip(np.rint(w / w_scale.reshape(4, 1, 1, 1)), -128, 127) * w_scale.reshape(4, 1, 1, 1)
    y = torch.nn.functional.conv2d(torch.from_numpy(fake_quant(x.astype(np.float64), 0.02)),
                                   torch.from_numpy(wd.astype(np.float64)),
                                   torch.from_numpy(numpy_helper.to_array(inits[-1]).astype(np.float64)), padding=1)
    expected = fake_quant(np.maximum(y.numpy(), 0), 0.05)
    assert np.abs(got - expected).max() <= 0.05 + 1e-6  # at most one output step (a rounding tie)
    assert np.mean(np.abs(got - expected) < 1e-6) > 0.99
