"""The safetensors reader: reads what the reference library writes, and refuses every header the
reference implementation refuses, with one line and before allocating any tensor."""

import json
import struct
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
import weight_files as wf
from safetensors import SafetensorError
from safetensors.numpy import load_file as reference_load
from safetensors.numpy import save_file

from jaxgan.weights.bounds import Limits, WeightFileError
from jaxgan.weights.safetensors import load_safetensors

F32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
DATA = np.arange(4, dtype="<f4").tobytes()


def _entry(**changes):
    return {**F32, **changes}


# (name, header, data, reason): files the previous reader accepted or crashed on, and the other
# ways a header can be wrong.
HOSTILE = [
    (
        "overlapping data_offsets",
        {"a": F32, "b": _entry(data_offsets=[8, 24])},
        bytes(24),
        "tensor 'b': its bytes 8..24 overlap those of 'a'",
    ),
    ("a list header", [], b"", "header is a JSON array, not an object"),
    ("an object dtype", {"w": _entry(dtype={"F32": 1})}, DATA, "dtype is a JSON object"),
    ("a missing dtype", {"w": {"shape": [2, 2], "data_offsets": [0, 16]}}, DATA, "has no dtype"),
    ("a 200,000-deep array", b"[" * 200_000 + b"]" * 200_000, b"", "nests too deeply"),
    ("a gap before a tensor", {"w": _entry(data_offsets=[4, 20])}, bytes(20), "leaving 0..4"),
    ("bytes after the tensors", {"w": F32}, DATA + bytes(4), "cover 16 bytes of a 20-byte"),
    ("a truncated data region", {"w": F32}, DATA[:12], "cover 16 bytes of a 12-byte"),
    (
        "a wrong byte length",
        {"w": _entry(shape=[3])},
        DATA,
        r"span 16 bytes but F32 x \(3,\) needs 12",
    ),
    ("offsets ending first", {"w": _entry(data_offsets=[16, 0])}, DATA, "end before they begin"),
    ("a negative offset", {"w": _entry(data_offsets=[-16, 0])}, DATA, "not two non-negative"),
    ("three offsets", {"w": _entry(data_offsets=[0, 8, 16])}, DATA, "not two non-negative"),
    ("a float in the shape", {"w": _entry(shape=[2.0, 2])}, DATA, "shape is not a list"),
    ("a negative dimension", {"w": _entry(shape=[-2, -2])}, DATA, "shape is not a list"),
    ("a shape that is a string", {"w": _entry(shape="2,2")}, DATA, "shape is not a list"),
    ("an unknown dtype", {"w": _entry(dtype="F31")}, DATA, "dtype F31 is not one of"),
    ("an entry that is a list", {"w": [F32]}, DATA, "entry is a JSON array"),
    ("metadata values not strings", {"__metadata__": {"a": 1}, "w": F32}, DATA, "__metadata__"),
    ("metadata that is false", {"__metadata__": False, "w": F32}, DATA, "__metadata__"),
    ("a huge shape", {"w": _entry(shape=[2**40, 2**40])}, DATA, "exceeds the cap"),
    (
        "a huge empty shape",
        {"w": _entry(shape=[2**62, 0], data_offsets=[0, 0])},
        b"",
        "its dimension 4,611,686,018,427,387,904 exceeds",
    ),
    ("invalid JSON", b'{"w": ', DATA, "not valid JSON"),
    ("NaN", b'{"w": NaN}', DATA, "not valid JSON"),
    ("a header that is not UTF-8", b'{"\xff": 1}', DATA, "not UTF-8"),
]


def _write(tmp_path, header, data, name="w.safetensors"):
    path = tmp_path / name
    path.write_bytes(wf.safetensors_bytes(header, data))
    return path


def refusal(path, match, limits=None) -> WeightFileError:
    """Loads `path` expecting a one-line refusal matching `match`; nothing near the claimed
    sizes may be allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match=match) as caught:
            load_safetensors(str(path), limits or Limits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert peak < 64 << 20, peak
    return caught.value


@pytest.mark.parametrize("case", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_header_is_refused_in_one_line_as_the_reference_refuses_it(tmp_path, case):
    _, header, data, reason = case
    path = _write(tmp_path, header, data)
    refusal(path, reason)
    with pytest.raises((SafetensorError, ValueError, OSError)):
        reference_load(str(path))


def test_stricter_than_the_reference_on_names_repeated_keys_and_many_dimensions(tmp_path):
    path = _write(tmp_path, {"a\nb": F32}, DATA, "n.safetensors")
    assert list(reference_load(str(path))) == ["a\nb"]
    refusal(path, r"tensor 'a\\nb': its name holds control characters")  # one line
    header = b'{"w": %s, "w": %s}' % (json.dumps(F32).encode(), json.dumps(F32).encode())
    refusal(_write(tmp_path, header, DATA), "given twice")
    deep = _entry(shape=[1] * 8 + [4])
    refusal(_write(tmp_path, {"w": deep}, DATA, "d.safetensors"), "9 dimensions")


def test_header_size_is_capped_and_checked_against_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    refusal(path, "header claims 9,223,372,036,854,775,808 bytes")
    path.write_bytes(struct.pack("<Q", 100) + b"{}")
    refusal(path, "header runs past the end")
    path.write_bytes(b"{}")
    refusal(path, "too short")
    path = _write(tmp_path, {"w": F32}, DATA)
    assert load_safetensors(str(path), Limits(header_bytes=1000))["w"].shape == (2, 2)
    refusal(path, "above the cap of 10 bytes", Limits(header_bytes=10))


def test_total_and_tensor_caps_are_checked_before_reading(tmp_path):
    path = _write(tmp_path, {"a": F32, "b": _entry(data_offsets=[16, 32])}, DATA * 2)
    assert len(load_safetensors(str(path), Limits(total_bytes=32))) == 2
    refusal(path, "exceed the cap of 16 bytes in all", Limits(total_bytes=16))
    refusal(path, "exceeds the cap of 15 bytes per tensor", Limits(tensor_bytes=15))
    refusal(path, "2 tensors, more than the cap of 1", Limits(tensors=1))


def test_every_dtype_round_trips_with_the_reference_writer(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f64": rng.normal(size=(2, 3)),
        "f32": rng.normal(size=(4,)).astype(np.float32),
        "f16": rng.normal(size=(3, 1)).astype(np.float16),
        "bf16": rng.normal(size=(5,)).astype(ml_dtypes.bfloat16),
        "i64": rng.integers(-9, 9, (2, 2)),
        "i32": rng.integers(-9, 9, (3,)).astype(np.int32),
        "u8": rng.integers(0, 255, (7,)).astype(np.uint8),
        "bool": rng.random(6) < 0.5,
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"format": "np"})
    loaded = load_safetensors(str(tmp_path / "w.safetensors"))
    assert set(loaded) == set(tensors)
    for name, expected in tensors.items():
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected, name)


def test_header_padding_null_metadata_and_empty_tensors_are_read_as_the_reference_does(tmp_path):
    header = {"__metadata__": None, "e": _entry(shape=[0], data_offsets=[0, 0]), "w": F32}
    raw = json.dumps(header).encode() + b"   "  # writers pad the header to 8 bytes
    path = _write(tmp_path, raw, DATA)
    ours, reference = load_safetensors(str(path)), reference_load(str(path))
    assert set(ours) == set(reference)
    np.testing.assert_array_equal(ours["w"], reference["w"])
