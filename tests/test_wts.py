"""The .wts format: round trips, tensorrtx's exact bytes, whitespace variants, and every format error."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

import wts
from wts import WtsError


def tensorrtx_writer(path, tensors, sep="  "):
    """An independent writer, as tensorrtx's gen_wts.py: "{name} {count} " then " " + hex per value.

    ``sep`` is what stands between the count and the first value (tensorrtx: two spaces)."""
    with open(path, "w", newline="") as f:
        f.write(f"{len(tensors)}\n")
        for name, values in tensors.items():
            values = np.asarray(values, np.float32).reshape(-1)
            f.write(f"{name} {len(values)}{sep[:-1]}")
            for v in values:
                f.write(" " + struct.pack(">f", float(v)).hex())
            f.write("\n")


def bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def sample(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "model.0.conv.weight": rng.normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32),
        "model.0.bn.weight": rng.normal(1, 0.1, (4,)).astype(np.float32),
        "model.0.bn.num_batches_tracked": np.array(7, np.int64),
        "model.24.anchors": rng.uniform(1, 10, (3, 3, 2)).astype(np.float32),
        "special": np.array([0.0, -0.0, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38, 1.0, -2.5], np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "fc.weight": rng.normal(0, 1, (5, 7)).astype(np.float32),
    }


def write_bytes(tmp_path, data: bytes, name="w.wts"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --------------------------------------------------------------------------------------------------- round trip


def test_round_trip_bit_exact_order_kept_flattened(tmp_path):
    src = sample()
    p = tmp_path / "a.wts"
    n = wts.save(p, src)
    assert n == p.stat().st_size
    got = wts.load(p)
    assert list(got) == list(src)
    for k, v in src.items():
        assert got[k].dtype == np.float32 and got[k].ndim == 1
        assert np.array_equal(bits(got[k]), bits(np.asarray(v, np.float32).reshape(-1))), k
    assert got["model.0.bn.num_batches_tracked"].tolist() == [7.0]
    assert got["empty"].size == 0


def test_save_flattens_in_c_order_and_converts_dtypes(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    src = {"fortran": np.asfortranarray(a), "transposed": a.T, "half": a.astype(np.float16),
           "int": np.array([1, -2, 3], np.int32), "bool": np.array([True, False]), "scalar": np.float64(0.1)}
    p = tmp_path / "c.wts"
    wts.save(p, src)
    got = wts.load(p)
    assert got["fortran"].tolist() == list(range(12))
    assert got["transposed"].tolist() == a.T.reshape(-1).tolist()
    assert got["half"].tolist() == list(range(12))
    assert got["int"].tolist() == [1, -2, 3]
    assert got["bool"].tolist() == [1.0, 0.0]
    assert bits(got["scalar"]).tolist() == [bits(np.float32(0.1)).item()]


def test_save_accepts_torch_tensors_without_wts_importing_torch(tmp_path):
    torch = pytest.importorskip("torch")
    src = {"w": torch.nn.Parameter(torch.randn(2, 3)), "h": torch.randn(4).half(),
           "n": torch.tensor(5, dtype=torch.long), "b": torch.randn(3, dtype=torch.bfloat16)}
    p = tmp_path / "t.wts"
    wts.save(p, src)
    got = wts.load(p)
    for k, t in src.items():
        assert np.array_equal(bits(got[k]), bits(t.detach().float().numpy().reshape(-1))), k
    import sys
    import subprocess
    code = "import sys, wts; assert 'torch' not in sys.modules, 'wts imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_writer_matches_tensorrtx_bytes_exactly(tmp_path):
    src = sample()
    wts.save(tmp_path / "ours.wts", src)
    tensorrtx_writer(tmp_path / "theirs.wts", src)
    assert (tmp_path / "ours.wts").read_bytes() == (tmp_path / "theirs.wts").read_bytes()
    line = (tmp_path / "ours.wts").read_bytes().split(b"\n")[2]
    assert line.startswith(b"model.0.bn.weight 4  ")  # the double space of tensorrtx's writer
    assert line == line.lower()


def test_compact_style_uses_single_spaces(tmp_path):
    src = sample()
    wts.save(tmp_path / "ours.wts", src, style="compact")
    tensorrtx_writer(tmp_path / "theirs.wts", src, sep=" ")
    assert (tmp_path / "ours.wts").read_bytes() == (tmp_path / "theirs.wts").read_bytes()
    with pytest.raises(ValueError, match="style"):
        wts.save(tmp_path / "x.wts", src, style="pretty")


# ------------------------------------------------------------------------------------- reading other writers


def reference_text(src) -> str:
    lines = [str(len(src))]
    for name, v in src.items():
        hexes = [struct.pack(">f", float(x)).hex() for x in np.asarray(v, np.float32).reshape(-1)]
        lines.append(" ".join([name, str(len(hexes))] + hexes))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("variant", [
    "tensorrtx", "single_space", "crlf", "trailing_spaces", "tabs", "many_spaces", "uppercase", "no_final_newline",
    "blank_lines", "bom", "crlf_trailing_tabs"])
def test_reader_accepts_whitespace_variants(tmp_path, variant):
    src = sample()
    text = reference_text(src)
    if variant == "tensorrtx":
        tensorrtx_writer(tmp_path / "w.wts", src)
        data = (tmp_path / "w.wts").read_bytes()
        assert b"  " in data
    else:
        data = {
            "single_space": text,
            "crlf": text.replace("\n", "\r\n"),
            "trailing_spaces": text.replace("\n", "   \n"),
            "tabs": text.replace(" ", "\t"),
            "many_spaces": text.replace(" ", "   "),
            "uppercase": "\n".join(ln if " " not in ln else ln.split(" ", 1)[0] + " " + ln.split(" ", 1)[1].upper()
                                   for ln in text.split("\n")),
            "no_final_newline": text.rstrip("\n"),
            "blank_lines": text.replace("\n", "\n\n") + "\n  \n",
            "bom": "\ufeff" + text,
            "crlf_trailing_tabs": text.replace("\n", "\t \r\n"),
        }[variant].encode("utf-8")
    got = wts.load(write_bytes(tmp_path, data))
    assert list(got) == list(src)
    for k, v in src.items():
        assert np.array_equal(bits(got[k]), bits(np.asarray(v).reshape(-1))), k


def test_mixed_canonical_and_irregular_lines(tmp_path):
    data = (b"3\n"
            b"a 2  3f800000 40000000\n"
            b"b 3\t3f800000  40400000\t40800000 \r\n"
            b"c 1 bf800000")
    got = wts.load(write_bytes(tmp_path, data))
    assert got["a"].tolist() == [1.0, 2.0]
    assert got["b"].tolist() == [1.0, 3.0, 4.0]
    assert got["c"].tolist() == [-1.0]


def test_zero_entries_and_zero_counts(tmp_path):
    assert wts.load(write_bytes(tmp_path, b"0\n")) == {}
    got = wts.load(write_bytes(tmp_path, b"2\nempty 0 \nx 1  00000000\n", "z.wts"))
    assert got["empty"].size == 0 and got["x"].tolist() == [0.0]


# ---------------------------------------------------------------------------------------------------- errors

ERRORS = [
    # (file content, expected message fragment, line, key)
    (b"", "empty file", None, None),
    (b"  \n\n \r\n", "empty file", None, None),
    (b"\nw 1 3f800000\n", "count line missing", 1, None),
    (b"abc\nw 1 3f800000\n", "non-negative integer", 1, None),
    (b"-1\n", "non-negative integer", 1, None),
    (b"2.0\nw 1 3f800000\n", "non-negative integer", 1, None),
    (b"2\nw 1 3f800000\n", "announces 2 entries but the file holds 1", 2, None),
    (b"1\nw 1 3f800000\nv 1 3f800000\n", "more entries than the 1 announced", 3, "v"),
    (b"2\nw 1 3f800000\nlonely\n", "fewer than 2 fields", 3, "lonely"),
    (b"1\nw x 3f800000\n", "value count 'x' is not a non-negative integer", 2, "w"),
    (b"1\nw -1 3f800000\n", "value count '-1' is not a non-negative integer", 2, "w"),
    (b"1\nw 1.0 3f800000\n", "value count '1.0'", 2, "w"),
    (b"1\nw 3 3f800000 3f800000\n", "value count 3 does not match the 2 values", 2, "w"),
    (b"1\nw 1 3f800000 3f800000\n", "value count 1 does not match the 2 values", 2, "w"),
    (b"1\nw 2\n", "value count 2 does not match the 0 values", 2, "w"),
    (b"1\nw 0 3f800000\n", "value count 0 does not match", 2, "w"),
    (b"1\nw 2 3f80000 3f8000000\n", "value 0 '3f80000' is not exactly 8 hex digits", 2, "w"),
    (b"1\nw 2 1234567 89abcdef0\n", "value 0 '1234567' is not exactly 8 hex digits", 2, "w"),
    (b"1\nw 2 3f800000 3f8000001\n", "value 1 '3f8000001' is not exactly 8 hex digits", 2, "w"),
    (b"2\nok 1 3f800000\nw 2 3f800000 zz800000\n", "value 1 'zz800000' is not exactly 8 hex digits", 3, "w"),
    (b"1\nw 2 0x3f8000 3f800000\n", "value 0 '0x3f8000' is not exactly 8 hex digits", 2, "w"),
    (b"1\nw 2\t3f800000\t3f80000g\n", "value 1 '3f80000g' is not exactly 8 hex digits", 2, "w"),
    (b"3\nw 1 3f800000\nv 1 3f800000\nw 1 3f800000\n", "duplicate key (first seen on line 2)", 4, "w"),
    (b"1\nw 3 3f800000 7fc00000 7fc00000\n", "value at index 1 is nan (2 non-finite", 2, "w"),
    (b"2\na 1 00000000\nw 2 3f800000 7f800000\n", "value at index 1 is inf", 3, "w"),
    (b"1\nw 1 ff800000\n", "value at index 0 is -inf", 2, "w"),
    (b"1\n\xff\xfe 1 3f800000\n", "not valid UTF-8", 2, None),
]


@pytest.mark.parametrize("data,fragment,line,key", ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_format_errors_name_file_line_and_key(tmp_path, data, fragment, line, key):
    p = write_bytes(tmp_path, data, "bad.wts")
    with pytest.raises(WtsError) as info:
        wts.load(p)
    err, msg = info.value, str(info.value)
    assert isinstance(err, ValueError)
    assert fragment in msg
    assert msg.startswith(str(p) if line is None else f"{p}:{line}: ")
    assert err.path == str(p) and err.line == line and err.key == key
    if key is not None:
        assert f"key {key!r}" in msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WtsError, match=f"{tmp_path / 'nope.wts'}: no such file"):
        wts.load(tmp_path / "nope.wts")
    with pytest.raises(WtsError, match="is a directory"):
        wts.load(tmp_path)


def test_nonfinite_allowed_with_flag_and_bits_kept(tmp_path):
    data = b"1\nw 4 7fc00001 7f800000 ff800000 ffc12345\n"
    got = wts.load(write_bytes(tmp_path, data), allow_nonfinite=True)
    assert got["w"].view(np.uint32).tolist() == [0x7FC00001, 0x7F800000, 0xFF800000, 0xFFC12345]
    src = {"w": np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)}
    wts.save(tmp_path / "nf.wts", src)
    with pytest.raises(WtsError, match="index 0 is nan"):
        wts.load(tmp_path / "nf.wts")
    assert np.array_equal(bits(wts.load(tmp_path / "nf.wts", allow_nonfinite=True)["w"]), bits(src["w"]))


# ------------------------------------------------------------------------------------------------- atomic save


def test_failed_save_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "keep.wts"
    p.write_bytes(b"old")
    with pytest.raises(WtsError, match="complex"):
        wts.save(p, {"a": np.ones(3, np.float32), "b": np.ones(2, np.complex64)})
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.wts"]


@pytest.mark.parametrize("name", ["", "has space", "tab\there", " lead", 3])
def test_save_rejects_bad_keys(tmp_path, name):
    with pytest.raises(WtsError, match="key"):
        wts.save(tmp_path / "k.wts", {name: np.ones(1)})
    assert not os.listdir(tmp_path)


def test_save_reports_progress(tmp_path):
    calls = []
    wts.save(tmp_path / "p.wts", {"a": np.ones(3), "b": np.ones((2, 2))}, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 7), (7, 7)]
