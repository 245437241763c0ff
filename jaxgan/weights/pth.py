"""Reads torch `.pth` state dicts into NumPy without torch and without running pickled code.

Both of torch's formats are read: the zip archive (`torch.save` since torch 1.6, e.g.
`resnet101-63fe2227.pth`) and the legacy stream of pickles followed by raw storages (older
files, or `_use_new_zipfile_serialization=False`). Their pickles are run by
`torch_pickle.PickleMachine`, which runs no code and checks every tensor record; this module
reads the storages the records name. The zip directory and every member's recorded sizes are
checked before zipfile reads them, every storage's size must equal its record's, and all the
bytes the file makes us hold (storages read, copies of strided views) are counted against the
caps before the first storage is read. Every refusal is a `WeightFileError` naming the file
and, where there is one, the tensor.
"""

import lzma
import struct
import zipfile
import zlib

import numpy as np

from jaxgan.weights.bounds import (
    DEFAULT_LIMITS,
    Budget,
    Limits,
    WeightFileError,
    file_size,
    open_regular,
    printable,
    read_into,
)
from jaxgan.weights.torch_pickle import PickleMachine, TensorRecord, UnsafePickleError

__all__ = ["UnsafePickleError", "load_pth"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _materialize(machine, state: dict, read_storage) -> dict:
    """{key: np.ndarray} of `state`; `read_storage(storage)` -> its flat array. Everything
    is counted against the caps before the first storage is read."""
    tensors = list({id(t): t for t in state.values()}.values())
    by_storage = {}
    for tensor in tensors:
        tensor.ref.storage.users += 1
        by_storage.setdefault(id(tensor.ref.storage), []).append(tensor)
    budget = Budget(machine.path, machine.limits)
    for group in by_storage.values():
        storage = group[0].ref.storage
        budget.take(storage.numel * storage.dtype.itemsize, group[0].name, "storage")
        for tensor in group:
            if not (storage.users == 1 and tensor.whole_storage()):  # else a copy is made
                budget.take(tensor.nbytes, tensor.name)
    arrays = {}
    for group in by_storage.values():  # one storage in memory at a time, besides results
        storage = group[0].ref.storage
        flat = read_storage(storage, group[0].name)
        for tensor in group:
            arrays[id(tensor)] = _view(tensor, flat)
    return {key: arrays[id(tensor)] for key, tensor in state.items()}


def _view(tensor: TensorRecord, flat: np.ndarray) -> np.ndarray:
    """The tensor's elements of its storage `flat`, its extent already proven inside it."""
    if tensor.ref.storage.users == 1 and tensor.whole_storage():
        return flat.reshape(tensor.size)
    if tensor.nbytes == 0:
        return np.zeros(tensor.size, flat.dtype)
    start = tensor.ref.start + tensor.offset
    strides = [s * flat.itemsize for s in tensor.stride]
    view = np.lib.stride_tricks.as_strided(
        flat[start:], shape=tensor.size, strides=strides, writeable=False
    )
    return np.array(view)


# ---------------------------------------------------------------------------------------------
# The two file formats

_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    ValueError,
    KeyError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
)


def _zip_error(path, error):
    if isinstance(error, WeightFileError):
        return error
    return WeightFileError(
        path, f"its zip archive is damaged ({printable(str(error) or type(error).__name__, 100)})"
    )


def _check_zip_directory(file, path, limits):
    """zipfile reads the whole central directory at open; refuse one past the caps first.
    Uses zipfile's own end-record reader so that the check and the open read the same record."""
    end_record = zipfile._EndRecData(file)
    if end_record is None:
        raise WeightFileError(path, "its zip archive has no end record")
    entries, directory_bytes = end_record[zipfile._ECD_ENTRIES_TOTAL], end_record[zipfile._ECD_SIZE]
    if entries > limits.zip_entries or directory_bytes > limits.zip_directory_bytes:
        raise WeightFileError(
            path,
            f"its zip archive lists {entries:,} members in {directory_bytes:,} bytes, above the "
            f"caps of {limits.zip_entries:,} members and {limits.zip_directory_bytes:,} bytes",
        )


def _check_member(info, archive_bytes, path) -> None:
    """A member's recorded sizes must fit the archive (and agree, when it is stored as is)."""
    stored = info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size
    if stored or info.header_offset + info.compress_size > archive_bytes:
        raise WeightFileError(path, f"its zip directory records wrong sizes for {info.filename}")


def _read_member(archive, info, cap, path, archive_bytes) -> bytes:
    """A small zip member's bytes. Its sizes are checked first: zipfile's read() of a whole
    member allocates what the member's recorded compressed size says, up to 2 GB."""
    _check_member(info, archive_bytes, path)
    if info.file_size > cap:
        raise WeightFileError(
            path, f"its {info.filename} of {info.file_size:,} bytes exceeds the cap of {cap:,}"
        )
    with archive.open(info) as member:
        data = member.read(info.file_size)  # reads in pieces of at most this size
    if len(data) != info.file_size:
        raise WeightFileError(path, f"its {info.filename} is truncated")
    return data


def _load_zip(file, path, limits):
    try:
        _check_zip_directory(file, path, limits)
        archive_bytes = file_size(file)
        archive = zipfile.ZipFile(file)
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightFileError(
                path, f"a torch zip checkpoint has one <name>/data.pkl; this one has {len(pickles)}"
            )
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in names:
            info = archive.getinfo(prefix + "byteorder")
            order = _read_member(archive, info, 16, path, archive_bytes)
            if order.strip() != b"little":
                raise WeightFileError(
                    path,
                    "it was saved big-endian (or names an unknown byte order)",
                    advice="re-save it on a little-endian machine",
                )
        info = archive.getinfo(pickles[0])
        data = _read_member(archive, info, limits.pickle_bytes, path, archive_bytes)
    except _ZIP_ERRORS as error:
        raise _zip_error(path, error) from None
    machine = PickleMachine(path, limits, legacy=False)
    root, _ = machine.run(data, 0)
    state = machine.state_dict(root)

    def read_storage(storage, tensor):
        expected = storage.numel * storage.dtype.itemsize
        try:
            info = archive.getinfo(f"{prefix}data/{storage.key}")
        except KeyError:
            raise WeightFileError(path, f"its storage {storage.key} is missing", tensor) from None
        if info.file_size != expected:
            raise WeightFileError(
                path,
                f"its storage {storage.key} holds {info.file_size:,} bytes; its record says "
                f"{expected:,}",
                tensor,
            )
        _check_member(info, archive_bytes, path)
        flat = np.empty(storage.numel, storage.dtype)
        try:
            with archive.open(info) as member:
                read_into(member, flat, path, tensor)
        except _ZIP_ERRORS as error:
            raise _zip_error(path, error) from None
        return flat

    return _materialize(machine, state, read_storage)


def _load_legacy(file, path, limits):
    size = file_size(file)
    data = file.read(min(size, limits.pickle_bytes))
    machine = PickleMachine(path, limits, legacy=True)
    try:
        magic, pos = machine.run(data, 0)
    except UnsafePickleError:
        raise
    except WeightFileError:
        magic = None
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise WeightFileError(
            path,
            "it is not a torch checkpoint (neither zip nor legacy format)",
            advice="pass a torchvision .pth or a timm .safetensors file",
        )
    _, pos = machine.run(data, pos)  # protocol version
    info, pos = machine.run(data, pos)  # the saving machine: byte order, type sizes
    if type(info) is not dict:
        raise WeightFileError(path, "its description of the saving machine is malformed")
    if info.get("little_endian", True) is not True:
        raise WeightFileError(
            path, "it was saved on a big-endian machine", advice="re-save it little-endian"
        )
    root, pos = machine.run(data, pos)
    keys, pos = machine.run(data, pos)
    state = machine.state_dict(root)
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise WeightFileError(path, "its list of storages is malformed")
    # Storages follow in `keys` order, each an int64 element count and then its bytes.
    starts = {}
    for key in keys:
        storage = machine.storages.get(key)
        if storage is None or key in starts:
            raise WeightFileError(path, f"it lists storage {printable(key, 64)} unexpectedly")
        file.seek(pos)
        header = file.read(8)
        if len(header) < 8 or int.from_bytes(header, "little", signed=True) != storage.numel:
            raise WeightFileError(path, f"its storage {key} does not have its recorded size")
        starts[key] = pos + 8
        pos += 8 + storage.numel * storage.dtype.itemsize
        if pos > size:
            raise WeightFileError(path, f"it is truncated (storage {key})")

    def read_storage(storage, tensor):
        if storage.key not in starts:
            raise WeightFileError(path, f"its storage {storage.key} is missing", tensor)
        flat = np.empty(storage.numel, storage.dtype)
        file.seek(starts[storage.key])
        read_into(file, flat, path, tensor)
        return flat

    return _materialize(machine, state, read_storage)


def load_pth(path, limits: Limits = DEFAULT_LIMITS) -> dict:
    """`path`'s state dict as {key: np.ndarray}; a `WeightFileError` for anything else."""
    with open_regular(path) as file:
        is_zip = file.read(4) == b"PK\x03\x04"
        file.seek(0)
        if is_zip:
            return _load_zip(file, path, limits)
        return _load_legacy(file, path, limits)
