"""The `.pth` reader: reads torch's two formats, runs no pickled code, and refuses every hostile
file with one line before allocating what it claims.

The hostile files are those a review found against the previous reader (which used Python's
unpickler with an allow-list): a record class built by NEWOBJ + BUILD with a negative stride
(a segfault), a negative storage offset (process memory copied into the weights), a stride-0
tensor (895 bytes -> 1.8 GB), and dicts sharing their children (a 2^40-path walk); plus the
C unpickler's memo, which a 10-byte pickle sizes to gigabytes.
"""

import os
import pickle
import signal
import struct
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
import weight_files as wf

from jaxgan.weights import pth
from jaxgan.weights.bounds import Limits, WeightFileError


class _Exploit:
    """Unpickling this runs `os.system(command)` under a plain pickle.load."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


DEFAULT = Limits()


def refusal(path, match, limits=DEFAULT, seconds=30, max_bytes=64 << 20) -> WeightFileError:
    """Loads `path` expecting a one-line refusal matching `match`, within `seconds` (generous:
    the files that hang never end) and without ever holding more than `max_bytes` (NumPy's
    buffers included)."""

    def timeout(*_):
        raise TimeoutError(f"reading {path} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match=match) as caught:
            pth.load_pth(str(path), limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert peak < max_bytes, f"{peak:,} bytes held while refusing {path}"
    return caught.value


def test_zip_pickle_asking_for_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv1.weight": _Exploit(f"touch {marker}")}, protocol=2)
    # The payload is live: an ordinary unpickler would run it.
    assert b"system" in payload
    path = wf.zip_pth(tmp_path / "evil.pth", payload)
    error = refusal(path, "system")
    assert isinstance(error, pth.UnsafePickleError)
    assert not marker.exists()


def test_legacy_pickle_asking_for_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    with open(path, "wb") as f:
        pickle.dump(_Exploit(f"touch {marker}"), f, protocol=2)
    refusal(path, "posix.system|os.system|nt.system")
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen")])
def test_any_global_outside_the_allow_list_is_refused(tmp_path, module, name):
    # GLOBAL opcode naming module.name, then an empty tuple and REDUCE: a call of that global.
    payload = wf.PROTO2 + wf.glob(module, name) + b")R."
    refusal(wf.zip_pth(tmp_path / "evil.pth", payload), f"{module}.{name}")


@pytest.mark.parametrize("rebuild", ["_rebuild_tensor_v2", "_rebuild_tensor"])
def test_zip_tensor_record_is_rebuilt_with_offset_and_strides(tmp_path, rebuild):
    storage = np.arange(12, dtype="<f4")
    # A transposed 3x2 view starting at element 1: element (i, j) = storage[1 + i + 3 j].
    payload = wf.tensor_pickle("FloatStorage", "0", 12, 1, (3, 2), (1, 3), rebuild=rebuild)
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": storage.tobytes()})
    state = pth.load_pth(str(path))
    np.testing.assert_array_equal(state["w"], [[1, 4], [2, 5], [3, 6]])
    assert state["w"].dtype == np.float32


@pytest.mark.parametrize("rebuild", ["_rebuild_tensor_v2", "_rebuild_tensor"])
def test_rebuild_functions_take_torchs_argument_counts(tmp_path, rebuild):
    """_rebuild_tensor takes (storage, offset, size, stride); _v2 adds requires_grad,
    backward_hooks and optional metadata. A record of the other form is malformed."""
    other = "_rebuild_tensor" if rebuild == "_rebuild_tensor_v2" else "_rebuild_tensor_v2"
    record = wf.tensor("0", 4, 0, (4,), (1,), rebuild=other).replace(
        other.encode() + b"\n", rebuild.encode() + b"\n"
    )
    path = wf.zip_pth(tmp_path / "w.pth", wf.state_pickle({"w": record}), {"0": bytes(16)})
    refusal(path, f"arguments \\({rebuild} takes")


def test_bfloat16_storage_is_read_as_bfloat16(tmp_path):
    values = np.array([1.5, -2.0, 3.25], ml_dtypes.bfloat16)
    payload = wf.tensor_pickle("BFloat16Storage", "0", 3, 0, (3,), (1,))
    state = pth.load_pth(str(wf.zip_pth(tmp_path / "w.pth", payload, {"0": values.tobytes()})))
    assert state["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(state["w"].astype(np.float32), [1.5, -2.0, 3.25])


def test_legacy_format_written_by_hand_is_read(tmp_path):
    storage = np.arange(6, dtype="<f4")
    payload = wf.tensor_pickle("FloatStorage", "7", 6, 2, (2, 2), (2, 1), legacy=True)
    state = pth.load_pth(str(wf.legacy_pth(tmp_path / "w.pth", payload, {"7": storage})))
    np.testing.assert_array_equal(state["w"], [[2, 3], [4, 5]])
    # Each format has its own storage record: the zip one is refused in a legacy file.
    zip_record = wf.tensor_pickle("FloatStorage", "7", 6, 2, (2, 2), (2, 1))
    path = wf.legacy_pth(tmp_path / "z.pth", zip_record, {"7": storage})
    refusal(path, "persistent record that is not a storage")


def test_both_torch_formats_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    state = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "fc.weight": torch.randn(5, 7).t()[1:],  # non-contiguous view with an offset
        "tied": None,  # the same tensor under a second key, as tied weights are saved
        "bn.running_var": torch.rand(4),
        "bn.num_batches_tracked": torch.tensor(17),
        "half": torch.randn(6, dtype=torch.bfloat16),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
    }
    state["tied"] = state["conv.weight"]
    for zip_format in (True, False):
        for protocol in (2, 4):
            path = tmp_path / f"state_{zip_format}_{protocol}.pth"
            torch.save(
                state, path, _use_new_zipfile_serialization=zip_format, pickle_protocol=protocol
            )
            loaded = pth.load_pth(str(path))
            assert list(loaded) == list(state)
            for key, tensor in state.items():
                expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor
                expected = np.asarray(expected)
                assert loaded[key].shape == expected.shape, key
                np.testing.assert_array_equal(loaded[key].astype(expected.dtype), expected, key)
            assert loaded["bn.num_batches_tracked"].dtype == np.int64


def test_torchvision_state_dict_with_metadata_and_a_wrapper_is_read(tmp_path):
    """A real module's state dict carries `_metadata` (set by BUILD on its OrderedDict), and
    training scripts wrap it: {"state_dict": ..., "epoch": ..., "optimizer": ...}."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    wrapped = {"state_dict": model.state_dict(), "epoch": 3, "optimizer": optimizer.state_dict()}
    torch.save(wrapped, tmp_path / "w.pth")
    loaded = pth.load_pth(str(tmp_path / "w.pth"))
    assert set(loaded) == set(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded[key], value.numpy())


# ---------------------------------------------------------------------------------------------
# Hostile files


def _negative_stride_record():
    """The record class built the way a hostile pickle builds it: NEWOBJ (no constructor, so no
    checks) and BUILD setting its fields, with a stride of -2^40 elements."""
    fields = {
        "storage": wf.storage("0", 4),
        "offset": wf.atom(0),
        "size": wf.atom((4,)),
        "stride": wf.atom((-(2**40),)),
    }
    state = wf.EMPTY_DICT + wf.MARK
    state += b"".join(wf.atom(k) + v for k, v in fields.items()) + wf.SETITEMS
    return (
        wf.glob("torch._utils", "_rebuild_tensor_v2")
        + wf.EMPTY_TUPLE
        + wf.NEWOBJ
        + state
        + wf.BUILD
    )


def test_newobj_and_build_cannot_make_an_unchecked_tensor_record(tmp_path):
    payload = wf.state_pickle({"w": _negative_stride_record()})
    path = wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(16)})
    refusal(path, "opcode NEWOBJ")


def test_build_cannot_change_a_checked_tensor_record(tmp_path):
    checked = wf.tensor("0", 4, 0, (4,), (1,))
    stride = wf.EMPTY_DICT + wf.atom("stride") + wf.atom((-(2**40),)) + wf.SETITEM
    payload = wf.state_pickle({"w": checked + stride + wf.BUILD})
    path = wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(16)})
    refusal(path, "BUILD is allowed on a dict only")


def test_negative_storage_offset_is_refused(tmp_path):
    # Elements at -100 and 0: the last one is inside the storage, the first is not.
    payload = wf.tensor_pickle("FloatStorage", "0", 4, -100, (2,), (100,))
    path = wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(16)})
    error = refusal(path, "offset, size or stride is not a non-negative integer")
    assert error.tensor == "w"


def test_negative_stride_is_refused(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 4, 3, (4,), (-1,))
    path = wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(16)})
    refusal(path, "tensor 'w': its offset, size or stride is not a non-negative integer")


@pytest.mark.parametrize(
    "offset,size,stride",
    [
        (0, (3, 3), (3, 1)),  # 9 elements of a 4-element storage
        (2, (3,), (1,)),  # the first element inside, the last one past the end
        (0, (2, 2), (1, 3)),  # the last element (1 + 3) just past the end
        (5, (0,), (1,)),  # no elements, but an offset past the end
    ],
)
def test_tensor_reaching_past_its_storage_is_refused(tmp_path, offset, size, stride):
    payload = wf.tensor_pickle("FloatStorage", "0", 4, offset, size, stride)
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(16)})
    refusal(path, "tensor 'w': its elements .* reach past its storage of 4 elements")


def test_stride_zero_blow_up_is_refused_before_allocating(tmp_path):
    # One stored float viewed as 30000 x 15000: 1.8 GB if materialised.
    payload = wf.tensor_pickle("FloatStorage", "0", 1, 0, (30000, 15000), (0, 0))
    path = wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(4)})
    assert path.stat().st_size < 1000
    refusal(path, "1,800,000,000 bytes exceed the cap", max_bytes=8 << 20)


def test_the_total_of_all_tensors_is_capped_before_allocating(tmp_path):
    entries = {f"w{i}": wf.tensor(str(i), 256, 0, (256,), (1,)) for i in range(4)}
    storages = {str(i): bytes(1024) for i in range(4)}
    path = wf.zip_pth(tmp_path / "w.pth", wf.state_pickle(entries), storages)
    assert len(pth.load_pth(str(path), Limits(total_bytes=4096))) == 4
    refusal(path, "exceed the cap of 3,072 bytes in all", Limits(total_bytes=3072))


def test_huge_dimension_of_an_empty_tensor_is_refused(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 4, 0, (2**62, 0), (1, 1))
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(16)})
    refusal(path, "tensor 'w': its dimension 4,611,686,018,427,387,904 exceeds")


def test_huge_declared_storage_is_refused_before_reading(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 2**40, 0, (4,), (1,))
    refusal(wf.zip_pth(tmp_path / "evil.pth", payload, {"0": bytes(16)}), "storage 0")


def test_storage_whose_bytes_differ_from_its_record_is_refused(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 4, 0, (4,), (1,))
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(12)})
    refusal(path, "storage 0 holds 12 bytes; its record says 16")
    path = wf.zip_pth(tmp_path / "w3.pth", payload, {"0": bytes(20)})
    refusal(path, "storage 0 holds 20 bytes; its record says 16")
    refusal(wf.zip_pth(tmp_path / "w2.pth", payload, {}), "storage 0 is missing")


def test_dicts_sharing_their_children_are_refused_at_once(tmp_path):
    """40 levels of {"a": child, "b": child}: 1.3 KB, and 2^40 paths for a tree walk."""
    payload = wf.PROTO2 + wf.EMPTY_DICT + wf.binput(0)
    for level in range(1, 41):
        child = wf.binget(level - 1)
        payload += wf.EMPTY_DICT + wf.MARK + wf.atom("a") + child + wf.atom("b") + child
        payload += wf.SETITEMS + wf.binput(level)
    payload += wf.STOP
    assert len(payload) < 1400
    refusal(wf.zip_pth(tmp_path / "bomb.pth", payload), "same dict or list twice")


def test_cyclic_list_is_refused(tmp_path):
    payload = wf.PROTO2 + wf.EMPTY_LIST + wf.binput(0) + wf.binget(0) + wf.APPEND + wf.STOP
    refusal(wf.zip_pth(tmp_path / "cycle.pth", payload), "shared or cyclic")


def test_memo_index_does_not_size_memory(tmp_path):
    """Python's C unpickler grows its memo array to the index it is given: 10 bytes -> 16 GB."""
    payload = wf.PROTO2 + b"N" + b"r" + struct.pack("<I", 2**31) + wf.STOP
    refusal(wf.zip_pth(tmp_path / "memo.pth", payload), "holds a NoneType", max_bytes=8 << 20)


def test_deep_nesting_costs_no_recursion(tmp_path):
    payload = wf.PROTO2 + b"N" + b"\x85" * 50_000 + wf.STOP  # a tuple in a tuple in ...
    refusal(wf.zip_pth(tmp_path / "deep.pth", payload), "holds a tuple")


def test_opcode_count_is_capped(tmp_path):
    payload = wf.PROTO2 + b"N" * 5000 + wf.STOP  # push None, 5000 times
    refusal(
        wf.zip_pth(tmp_path / "w.pth", payload), "cap of 1,000 opcodes", Limits(pickle_opcodes=1000)
    )


@pytest.mark.parametrize(
    "opcode,name",
    [
        (b"ccollections\nOrderedDict\n)\x81", "NEWOBJ"),  # an allowed global, built unchecked
        (b"(icollections\nOrderedDict\n", "INST"),
        (b"N2", "DUP"),
        (b"N0", "POP"),
    ],
)
def test_object_building_opcodes_are_refused(tmp_path, opcode, name):
    payload = wf.PROTO2 + opcode + wf.STOP
    refusal(wf.zip_pth(tmp_path / "w.pth", payload), name)


def test_non_tensor_entries_and_unprintable_keys_are_refused(tmp_path):
    path = wf.zip_pth(tmp_path / "w.pth", wf.state_pickle({"w": wf.atom(3)}))
    error = refusal(path, "is a int, not a tensor")
    assert error.tensor == "w"
    path = wf.zip_pth(tmp_path / "k.pth", wf.state_pickle({"a\nb": wf.tensor("0", 1, 0, (), ())}))
    refusal(path, "key that is not a name")


def test_zip_directory_is_capped_before_it_is_read(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 1, 0, (), ())
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(4)})
    assert list(pth.load_pth(str(path), Limits(zip_entries=4))) == ["w"]
    refusal(path, "lists 4 members", Limits(zip_entries=3))


def test_data_pkl_is_capped_before_it_is_read(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 1, 0, (), ())
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(4)})
    refusal(path, "data.pkl of", Limits(pickle_bytes=len(payload) - 1))


def test_recorded_member_sizes_do_not_size_reads(tmp_path):
    """zipfile's read() of a whole member allocates its recorded compressed size (up to 2 GB);
    the reader checks the recorded sizes against the archive first."""
    payload = wf.tensor_pickle("FloatStorage", "0", 1, 0, (), ())
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(4)})
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory entry of archive/data.pkl
    assert data[entry + 46 : entry + 46 + 16] == b"archive/data.pkl"
    data[entry + 20 : entry + 24] = struct.pack("<I", 2**30)  # its compressed size: 1 GiB
    path.write_bytes(bytes(data))
    refusal(path, "records wrong sizes for archive/data.pkl", max_bytes=8 << 20)


def test_big_endian_archive_is_refused(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "0", 1, 0, (), ())
    path = wf.zip_pth(tmp_path / "w.pth", payload, {"0": bytes(4)}, byteorder="big")
    refusal(path, "big-endian")


def test_legacy_storage_with_a_wrong_element_count_is_refused(tmp_path):
    payload = wf.tensor_pickle("FloatStorage", "7", 6, 0, (6,), (1,), legacy=True)
    storages = {"7": np.arange(6, dtype="<f4")}
    path = wf.legacy_pth(tmp_path / "w.pth", payload, storages, numels={"7": 2**40})
    refusal(path, "storage 7 does not have its recorded size")
    path = wf.legacy_pth(tmp_path / "k.pth", payload, storages, keys=["7", "7"])
    refusal(path, "lists storage 7 unexpectedly")
    truncated = tmp_path / "t.pth"
    truncated.write_bytes((tmp_path / "w.pth").read_bytes()[:-8])
    refusal(truncated, "storage 7")


def test_not_a_checkpoint_and_not_a_file_are_one_line(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    refusal(path, "not a torch checkpoint")
    refusal(tmp_path, "not a regular file")
    refusal(tmp_path / "missing.pth", "no such file")
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    refusal(fifo, "not a regular file")
    # A newline in the file's name is shown escaped: the message stays one line.
    odd = tmp_path / "two\nlines.pth"
    odd.write_text("hello")
    with pytest.raises(WeightFileError, match=r"two\\nlines.pth: it is not a torch checkpoint"):
        pth.load_pth(str(odd))
