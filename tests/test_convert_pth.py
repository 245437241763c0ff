"""The `.pth` reader: reads torch's two formats, and refuses pickles that ask for code."""

import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from jaxgan.models import pth


class _Exploit:
    """Unpickling this runs `os.system(command)` under a plain pickle.load."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _zip_pth(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


def test_zip_pickle_asking_for_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv1.weight": _Exploit(f"touch {marker}")}, protocol=2)
    # The payload is live: an ordinary unpickler would run it.
    assert b"system" in payload
    path = tmp_path / "evil.pth"
    _zip_pth(path, payload)
    with pytest.raises(pth.UnsafePickleError, match="system"):
        pth.load_pth(str(path))
    assert not marker.exists()


def test_legacy_pickle_asking_for_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    with open(path, "wb") as f:
        pickle.dump(_Exploit(f"touch {marker}"), f, protocol=2)
    with pytest.raises(pth.UnsafePickleError, match="posix.system|os.system|nt.system"):
        pth.load_pth(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen")])
def test_any_global_outside_the_allow_list_is_refused(tmp_path, module, name):
    # GLOBAL opcode naming module.name, then an empty tuple and REDUCE: a call of that global.
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    path = tmp_path / "evil.pth"
    _zip_pth(path, payload)
    with pytest.raises(pth.UnsafePickleError, match=f"{module}.{name}"):
        pth.load_pth(str(path))


def _tensor_pickle(storage_type, key, numel, offset, size, stride, rebuild="_rebuild_tensor_v2"):
    """The pickle torch.save writes for one tensor, built by hand (no torch needed).
    `rebuild="_rebuild_tensor"` is the form of files saved by torch before 0.4."""

    # Written opcode by opcode: OrderedDict() then SETITEM with a _rebuild_tensor_v2 call.
    out = io.BytesIO()
    out.write(b"\x80\x02ccollections\nOrderedDict\n)R")
    out.write(pickle.dumps("w", protocol=2)[2:-1])
    out.write(f"ctorch._utils\n{rebuild}\n(".encode())
    out.write(b"(" + pickle.dumps("storage", protocol=2)[2:-1])
    out.write(f"ctorch\n{storage_type}\n".encode())
    for item in (key, "cpu", numel):
        out.write(pickle.dumps(item, protocol=2)[2:-1])
    out.write(b"tQ")  # TUPLE, BINPERSID
    for item in (offset, tuple(size), tuple(stride)):
        out.write(pickle.dumps(item, protocol=2)[2:-1])
    if rebuild == "_rebuild_tensor_v2":  # requires_grad, backward_hooks
        out.write(pickle.dumps(False, protocol=2)[2:-1] + b"ccollections\nOrderedDict\n)R")
    out.write(b"tRs.")
    return out.getvalue()


@pytest.mark.parametrize("rebuild", ["_rebuild_tensor_v2", "_rebuild_tensor"])
def test_zip_tensor_record_is_rebuilt_with_offset_and_strides(tmp_path, rebuild):
    storage = np.arange(12, dtype="<f4")
    path = tmp_path / "w.pth"
    with zipfile.ZipFile(path, "w") as archive:
        # A transposed 3x2 view starting at element 1: element (i, j) = storage[1 + i + 3 j].
        archive.writestr(
            "archive/data.pkl",
            _tensor_pickle("FloatStorage", "0", 12, 1, (3, 2), (1, 3), rebuild=rebuild),
        )
        archive.writestr("archive/data/0", storage.tobytes())
        archive.writestr("archive/byteorder", "little")
    state = pth.load_pth(str(path))
    expected = np.array([[1, 4], [2, 5], [3, 6]], np.float32)
    np.testing.assert_array_equal(state["w"], expected)
    assert state["w"].dtype == np.float32


def test_bfloat16_storage_is_read_as_bfloat16(tmp_path):
    values = np.array([1.5, -2.0, 3.25], ml_dtypes.bfloat16)
    path = tmp_path / "w.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "archive/data.pkl", _tensor_pickle("BFloat16Storage", "0", 3, 0, (3,), (1,))
        )
        archive.writestr("archive/data/0", values.tobytes())
    state = pth.load_pth(str(path))
    assert state["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(state["w"].astype(np.float32), [1.5, -2.0, 3.25])


def test_tensor_past_the_end_of_its_storage_is_an_error(tmp_path):
    path = tmp_path / "w.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "archive/data.pkl", _tensor_pickle("FloatStorage", "0", 4, 0, (3, 3), (3, 1))
        )
        archive.writestr("archive/data/0", np.zeros(4, "<f4").tobytes())
    with pytest.raises(ValueError, match="past the end"):
        pth.load_pth(str(path))


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        pth.load_pth(str(path))


def test_both_torch_formats_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    state = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "fc.weight": torch.randn(5, 7).t()[1:],  # non-contiguous view with an offset
        "bn.running_var": torch.rand(4),
        "bn.num_batches_tracked": torch.tensor(17),
        "half": torch.randn(6, dtype=torch.bfloat16),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
    }
    for zip_format in (True, False):
        path = tmp_path / f"state_{zip_format}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
        loaded = pth.load_pth(str(path))
        assert set(loaded) == set(state)
        for key, tensor in state.items():
            expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
            assert loaded[key].shape == expected.shape, key
            np.testing.assert_array_equal(loaded[key].astype(expected.dtype), expected, err_msg=key)
        assert loaded["bn.num_batches_tracked"].dtype == np.int64
