"""Reads torch `.pth` state dicts into NumPy without torch and without running pickled code.

A `.pth` file is a pickle, and a pickle can call any importable function while it loads. This
reader unpickles with an allow-list: the only globals it resolves are the few records that a
saved state dict needs (an OrderedDict, the tensor-rebuild functions, the storage types), each
mapped to a NumPy stand-in written here; torch itself is never imported. Anything else in the
pickle (`os.system`, `builtins.eval`, a model class, ...) stops the load with `UnsafePickleError`
before it is called.

Both of torch's formats are read: the zip archive (`torch.save` since torch 1.6, e.g.
`resnet101-63fe2227.pth`) and the legacy stream of pickles followed by raw storages (older
files, or `_use_new_zipfile_serialization=False`).
"""

import collections
import io
import pickle
import zipfile

import ml_dtypes
import numpy as np

# torch storage type -> element dtype (little-endian, as torch writes on every platform we meet).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("bool"),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list; nothing of it was run."""


class _StorageType:
    """Stand-in for `torch.FloatStorage` and friends: only carries the element dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _StorageRef:
    """A storage named in the pickle; its bytes are read once the pickle is parsed."""

    def __init__(self, key, dtype, numel, view=None):
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view


class _TensorRef:
    """torch._utils._rebuild_tensor(_v2)'s arguments: a strided view of a storage."""

    def __init__(self, storage, storage_offset, size, stride, *unused):
        if not isinstance(storage, _StorageRef):
            raise UnsafePickleError("tensor record without a storage")
        self.storage, self.offset = storage, int(storage_offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        if len(self.size) != len(self.stride) or min(self.size + self.stride + (0,)) < 0:
            raise UnsafePickleError(f"malformed tensor record: size {size}, stride {stride}")

    def materialize(self, flat: np.ndarray) -> np.ndarray:
        if self.storage.view is not None:  # legacy: a view (key, offset, size) of a storage
            _, view_offset, view_size = self.storage.view
            flat = flat[int(view_offset) : int(view_offset) + int(view_size)]
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if all(self.size) and last >= flat.size:
            raise ValueError("a tensor reaches past the end of its storage (truncated file?)")
        strides = [s * flat.itemsize for s in self.stride]
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=strides, writeable=False
        )
        return np.array(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    """torch._utils._rebuild_parameter(_with_state): a Parameter is its data here."""
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _TensorRef,
    ("torch._utils", "_rebuild_tensor_v2"): _TensorRef,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load: the pickle asks for {module}.{name}, which a weight file "
                "never needs (only state dicts of tensors are read; re-save the file with "
                "torch.save(model.state_dict(), path) if it holds more)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unknown persistent record {pid!r:.80}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError("storage record without a storage type")
        view = pid[5] if len(pid) > 5 else None
        return _StorageRef(str(pid[2]), storage_type.dtype, int(pid[4]), view)


def _materialize(state, read_storage):
    """Replaces every tensor record in `state` by its array; `read_storage(ref)` -> flat array."""
    if not isinstance(state, dict):
        raise ValueError("the checkpoint does not hold a dict of tensors")
    cache, out = {}, {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = _materialize(value, read_storage)
        elif isinstance(value, _TensorRef):
            ref = value.storage
            if ref.key not in cache:
                cache[ref.key] = read_storage(ref)
            out[key] = value.materialize(cache[ref.key])
        else:
            out[key] = value
    return out


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(
                f"{path}: a torch zip checkpoint has one <name>/data.pkl; found {pickles}"
            )
        prefix = pickles[0][: -len("data.pkl")]
        if (
            prefix + "byteorder" in names
            and archive.read(prefix + "byteorder").strip() != b"little"
        ):
            raise ValueError(f"{path} was saved big-endian; re-save it on a little-endian machine")
        state = _Unpickler(io.BytesIO(archive.read(pickles[0]))).load()

        def read_storage(ref):
            flat = np.frombuffer(archive.read(f"{prefix}data/{ref.key}"), dtype=ref.dtype)
            if flat.size < ref.numel:
                raise ValueError(f"{path}: storage {ref.key} is truncated")
            return flat[: ref.numel]

        return _materialize(state, read_storage)


def _load_legacy(path):
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)
    try:
        magic = _Unpickler(stream).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError):
        magic = None
    if magic != _LEGACY_MAGIC:
        raise ValueError(f"{path} is not a torch checkpoint (neither zip nor legacy format)")
    _Unpickler(stream).load()  # protocol version
    info = _Unpickler(stream).load()
    if isinstance(info, dict) and not info.get("little_endian", True):
        raise ValueError(f"{path} was saved on a big-endian machine; re-save it little-endian")
    state = _Unpickler(stream).load()
    keys = _Unpickler(stream).load()
    dtypes = {}
    _collect_storages(state, dtypes)
    offset, storages = stream.tell(), {}
    for key in keys:  # each storage: its int64 element count, then its bytes
        key = str(key)
        if key not in dtypes or offset + 8 > len(data):
            raise ValueError(f"{path} is truncated or malformed (storage {key})")
        numel = int(np.frombuffer(data, "<i8", 1, offset)[0])
        end = offset + 8 + numel * dtypes[key].itemsize
        if end > len(data):
            raise ValueError(f"{path} is truncated (storage {key})")
        storages[key] = np.frombuffer(data, dtypes[key], numel, offset + 8)
        offset = end
    return _materialize(state, lambda ref: storages[ref.key])


def _collect_storages(state, dtypes):
    if isinstance(state, dict):
        for value in state.values():
            if isinstance(value, dict):
                _collect_storages(value, dtypes)
            elif isinstance(value, _TensorRef):
                dtypes[value.storage.key] = value.storage.dtype


def load_pth(path: str) -> dict:
    """`path`'s state dict as {key: np.ndarray}; raises UnsafePickleError on a foreign global."""
    state = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    if isinstance(state.get("state_dict"), dict):  # {"state_dict": ..., "epoch": ...} wrappers
        state = state["state_dict"]
    if not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return dict(state)
