"""Weight files written by hand, opcode by opcode and byte by byte, for the reader tests.

Nothing here needs torch: `.pth` pickles are assembled from opcodes (as torch.save writes them,
or as an attacker would), zip archives with zipfile, safetensors files from a header dict.
"""

import json
import pickle
import struct
import zipfile

import numpy as np

PROTO2 = b"\x80\x02"
EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST = b")", b"}", b"]"
MARK, TUPLE, REDUCE, BUILD, NEWOBJ = b"(", b"t", b"R", b"b", b"\x81"
SETITEM, SETITEMS, APPEND, BINPERSID, STOP = b"s", b"u", b"a", b"Q", b"."
NEWFALSE = b"\x89"


def atom(value) -> bytes:
    """The opcodes that push `value` (None, bool, int, str, or a tuple of those)."""
    if value is None:
        return b"N"
    if value is True or value is False:
        return b"\x88" if value else b"\x89"
    if isinstance(value, int):
        if 0 <= value < 256:
            return b"K" + bytes([value])
        if -(2**31) <= value < 2**31:
            return b"J" + struct.pack("<i", value)
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(value, str):
        raw = value.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(value, tuple):
        return MARK + b"".join(atom(v) for v in value) + TUPLE
    raise TypeError(value)


def glob(module, name) -> bytes:
    return f"c{module}\n{name}\n".encode()


def binput(index) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def binget(index) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def storage(key, numel, storage_type="FloatStorage", legacy=False) -> bytes:
    """A persistent storage record, as torch's zip format writes it (the legacy format adds
    the view it names, None)."""
    fields = atom("storage") + glob("torch", storage_type) + atom(key) + atom("cpu") + atom(numel)
    return MARK + fields + (atom(None) if legacy else b"") + TUPLE + BINPERSID


def ordered_dict() -> bytes:
    return glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE


def tensor(
    key,
    numel,
    offset,
    size,
    stride,
    storage_type="FloatStorage",
    rebuild="_rebuild_tensor_v2",
    legacy=False,
) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())
    (`rebuild="_rebuild_tensor"`: the four-argument form of files saved before torch 0.4)."""
    extra = NEWFALSE + ordered_dict() if rebuild == "_rebuild_tensor_v2" else b""
    return (
        glob("torch._utils", rebuild)
        + MARK
        + storage(key, numel, storage_type, legacy)
        + atom(offset)
        + atom(tuple(size))
        + atom(tuple(stride))
        + extra
        + TUPLE
        + REDUCE
    )


def state_pickle(entries: dict) -> bytes:
    """OrderedDict() with SETITEMS of {name: opcodes pushing the value}, as torch.save writes."""
    items = b"".join(atom(name) + value for name, value in entries.items())
    return PROTO2 + ordered_dict() + MARK + items + SETITEMS + STOP


def tensor_pickle(
    storage_type, key, numel, offset, size, stride, rebuild="_rebuild_tensor_v2", legacy=False
):
    """The pickle of a one-tensor state dict {"w": tensor}."""
    record = tensor(key, numel, offset, size, stride, storage_type, rebuild, legacy)
    return state_pickle({"w": record})


def zip_pth(path, payload: bytes, storages: dict | None = None, byteorder="little"):
    """A torch zip checkpoint: archive/data.pkl, archive/data/<key> for each storage."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        if byteorder is not None:
            archive.writestr("archive/byteorder", byteorder)
        archive.writestr("archive/version", "3\n")
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_pth(path, payload: bytes, storages: dict, keys=None, numels=None):
    """torch's legacy format: magic, protocol version, system info, the state pickle, the list
    of storage keys, then each storage as an int64 element count and its bytes."""
    keys = list(storages) if keys is None else keys
    with open(path, "wb") as f:
        f.write(pickle.dumps(LEGACY_MAGIC, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        f.write(payload)
        f.write(pickle.dumps(keys, protocol=2))
        for key, array in storages.items():
            numel = array.size if numels is None else numels[key]
            f.write(struct.pack("<q", numel) + array.tobytes())
    return path


def safetensors_bytes(header, data: bytes = b"") -> bytes:
    """A safetensors file from a header (any JSON value, or raw bytes) and its data region."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def safetensors_file(path, tensors: dict):
    """A valid safetensors file of {name: np.ndarray (float32 or int64)}, in the given order."""
    names = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64", np.dtype("u1"): "U8"}
    header, data = {}, b""
    for name, array in tensors.items():
        header[name] = {
            "dtype": names[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + array.nbytes],
        }
        data += array.tobytes()
    with open(path, "wb") as f:
        f.write(safetensors_bytes(header, data))
    return path
