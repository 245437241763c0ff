"""torch's pickles, interpreted here opcode by opcode, so that no code of the file ever runs.

Python's own unpickler is unfit for a file from outside even with an allow-list: it builds
objects without their constructor (`NEWOBJ`), sets any attribute on them (`BUILD`), and its C
implementation sizes its memo from a number in the file (ten bytes of pickle can take
gigabytes). `PickleMachine` knows only the data opcodes a state dict needs; `NEWOBJ`, `INST`,
`OBJ`, extensions, `DUP` and `POP` are refused, `BUILD` is accepted on a dict only (torch attaches
`_metadata` that way) and does nothing. The only globals it resolves are
`collections.OrderedDict`, the tensor-rebuild functions and the storage types, each mapped to a
function here that checks its arguments; no object of the file is ever called, constructed or
given attributes. A dict or list is never referred to twice (the memo may not hand it out
again), so containers form a tree: no cycles, and no dict whose shared children would make a
walk cost 2^depth. The opcodes it runs, the integers and names it reads, the storages and
tensor records it makes are all capped (`bounds.Limits`).

A tensor record (`TensorRecord`) is checked where it is made: its offset, size and stride are
non-negative integers, its whole extent, from its first element to its last, lies inside its
storage, and its size is within the caps; a record that fails is reported, with the key the
state dict gives it, by `PickleMachine.state_dict`.
"""

import math
import pickletools
import re
import struct

import ml_dtypes
import numpy as np

from jaxgan.weights.bounds import Budget, Limits, WeightFileError, printable

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
_STORAGE_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")
_MAX_LONG_BYTES = 16  # LONG1/LONG4 integers: the legacy magic number needs 10 bytes
_MAX_GLOBAL_NAME = 256  # bytes of one line of a GLOBAL opcode
_OPCODE_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


class UnsafePickleError(WeightFileError):
    """The pickle asked for a global outside the allow-list; nothing of it was run."""


class _Global:
    """An allow-listed global: `call(machine, args)` is a checking function of this module."""

    __slots__ = ("name", "call")

    def __init__(self, name, call):
        self.name, self.call = name, call


class _StorageType:
    """`torch.FloatStorage` and friends: only names an element dtype; cannot be called."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


class Storage:
    """A storage of the file: `numel` elements of `dtype`, its bytes stored under `key`."""

    __slots__ = ("key", "dtype", "numel", "users")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.users = key, dtype, numel, 0


class StorageRef:
    """What a persistent id stands for: elements [start, start + numel) of `storage` (legacy
    files may name a view of a storage; otherwise the whole storage)."""

    __slots__ = ("storage", "start", "numel")

    def __init__(self, storage, start, numel):
        self.storage, self.start, self.numel = storage, start, numel


class TensorRecord:
    """A checked tensor record: a strided view of a storage. `error` says why it is unusable;
    it is reported with the tensor's key once the state dict has named it."""

    __slots__ = ("ref", "offset", "size", "stride", "nbytes", "error", "name")

    def __init__(self, ref=None, offset=0, size=(), stride=(), nbytes=0, error=None):
        self.ref, self.offset, self.size, self.stride = ref, offset, size, stride
        self.nbytes, self.error, self.name = nbytes, error, None

    def whole_storage(self) -> bool:
        """True if this tensor is its storage read as-is (C-contiguous from element 0)."""
        storage = self.ref.storage
        if self.ref.start + self.offset != 0 or math.prod(self.size) != storage.numel:
            return False
        expected = 1
        for n, s in reversed(list(zip(self.size, self.stride, strict=True))):
            if n > 1 and s != expected:
                return False
            expected *= n
        return True


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def _tensor_record(machine, ref, offset, size, stride):
    """torch._utils._rebuild_tensor(_v2)'s first four arguments, checked; see `_Tensor`."""
    limits = machine.limits
    if not isinstance(ref, StorageRef):
        return TensorRecord(error="its storage record is missing")
    if not (type(size) is tuple and type(stride) is tuple and len(size) == len(stride)):
        return TensorRecord(error="its size and stride are not two tuples of the same length")
    if len(size) > limits.ndim:
        return TensorRecord(
            error=f"it has {len(size)} dimensions, more than the cap of {limits.ndim}"
        )
    if not (_is_count(offset) and all(map(_is_count, size)) and all(map(_is_count, stride))):
        return TensorRecord(error="its offset, size or stride is not a non-negative integer")
    if size and max(size) > limits.tensor_bytes:  # an empty tensor may claim any other side
        return TensorRecord(error=f"its dimension {max(size):,} exceeds the cap on elements")
    itemsize = ref.storage.dtype.itemsize
    numel = math.prod(size)
    if numel * itemsize > limits.tensor_bytes:
        return TensorRecord(
            error=f"its {numel * itemsize:,} bytes exceed the cap of {limits.tensor_bytes:,} "
            "bytes per tensor"
        )
    # The full extent: with non-negative strides the first element is at `offset` and the last
    # at offset + sum((n - 1) * s); both must fall inside the storage (or the view of it).
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if (numel and last >= ref.numel) or offset > ref.numel:
        return TensorRecord(
            error=f"its elements {offset}..{last} reach past its storage of {ref.numel} elements"
        )
    # A dimension of size 1 never moves, whatever its stride says.
    stride = tuple(s if n > 1 else 0 for n, s in zip(size, stride, strict=True))
    return TensorRecord(ref, offset, size, stride, numel * itemsize)


def _rebuild_tensor(machine, args):
    """torch._utils._rebuild_tensor(storage, offset, size, stride)."""
    if len(args) != 4:
        machine.fail(f"rebuilds a tensor from {len(args)} arguments (_rebuild_tensor takes 4)")
    return machine.add_tensor(_tensor_record(machine, *args))


def _check_autograd_fields(machine, requires_grad, backward_hooks, *extra):
    """requires_grad, backward_hooks and optional metadata or state carry nothing a weight
    needs, but they must be what torch writes (torch refuses them otherwise)."""
    if type(requires_grad) is not bool or type(backward_hooks) is not dict:
        machine.fail("rebuilds a tensor with a malformed requires_grad or backward_hooks")
    if extra and extra[0] is not None and type(extra[0]) is not dict:
        machine.fail("rebuilds a tensor with malformed metadata")


def _rebuild_tensor_v2(machine, args):
    """torch._utils._rebuild_tensor_v2: the same four, then requires_grad, backward_hooks and
    optional metadata."""
    if len(args) not in (6, 7):
        machine.fail(
            f"rebuilds a tensor from {len(args)} arguments (_rebuild_tensor_v2 takes 6 or 7)"
        )
    _check_autograd_fields(machine, *args[4:])
    return machine.add_tensor(_tensor_record(machine, *args[:4]))


def _rebuild_parameter(machine, args):
    """torch._utils._rebuild_parameter(data, requires_grad, backward_hooks) and
    _with_state's extra state: a Parameter is its data here."""
    if not 3 <= len(args) <= 4 or not isinstance(args[0], TensorRecord):
        machine.fail("rebuilds a Parameter from something other than a tensor")
    _check_autograd_fields(machine, *args[1:])
    return args[0]


def _ordered_dict(machine, args):
    """collections.OrderedDict(): torch pickles it empty and then sets its items."""
    if args != ():
        machine.fail("builds an OrderedDict from arguments (torch never does)")
    return {}


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _Global("collections.OrderedDict", _ordered_dict),
    ("torch._utils", "_rebuild_tensor"): _Global("torch._utils._rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Global(
        "torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2
    ),
    **{
        ("torch._utils", name): _Global(f"torch._utils.{name}", _rebuild_parameter)
        for name in ("_rebuild_parameter", "_rebuild_parameter_with_state")
    },
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}
_KEY_TYPES = (str, int, float, bool, bytes, type(None))


class PickleMachine:
    """Runs the pickles of one file; collects its storages and tensor records."""

    def __init__(self, path, limits: Limits, legacy: bool):
        self.path, self.limits = path, limits
        self.record_length = 6 if legacy else 5  # the legacy format adds a view to a storage
        self.opcodes = 0  # over all pickles of the file
        self.storages = {}  # key -> Storage
        self.tensors = []  # every tensor record, in the order the pickle made them

    def fail(self, reason, tensor=None):
        raise WeightFileError(self.path, f"its pickle {reason}", tensor)

    def add_tensor(self, tensor):
        if len(self.tensors) >= self.limits.tensors:
            self.fail(f"holds more than the cap of {self.limits.tensors:,} tensors")
        self.tensors.append(tensor)
        return tensor

    def persistent_load(self, pid):
        """('storage', storage type, key, location, numel[, view]) -> StorageRef."""
        if not (type(pid) is tuple and len(pid) == self.record_length and pid[0] == "storage"):
            self.fail("holds a persistent record that is not a storage")
        _, storage_type, key, location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            self.fail("holds a storage record without a storage type")
        if not (type(key) is str and _STORAGE_KEY.fullmatch(key) and type(location) is str):
            self.fail("holds a storage record with a malformed key or location")
        if not _is_count(numel):
            self.fail(f"gives storage {key} a size that is not a non-negative integer")
        Budget(self.path, self.limits).check_tensor(
            numel * storage_type.dtype.itemsize, f"storage {key}", "storage"
        )
        storage = self.storages.get(key)
        if storage is None:
            if len(self.storages) >= self.limits.tensors:
                self.fail(f"holds more than the cap of {self.limits.tensors:,} storages")
            storage = self.storages[key] = Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            self.fail(f"declares storage {key} twice with different types or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return StorageRef(storage, 0, numel)
        if not (type(view) is tuple and len(view) == 3 and all(map(_is_count, view[1:]))):
            self.fail(f"holds a malformed view of storage {key}")
        _, start, view_numel = view
        if start + view_numel > numel:
            self.fail(f"holds a view reaching past the end of storage {key}")
        return StorageRef(storage, start, view_numel)

    def run(self, data: bytes, pos: int):
        """Runs the pickle starting at `data[pos]`; returns (its object, position after it)."""
        stack, marks, memo = [], [], {}
        end = len(data)

        def take(count):
            nonlocal pos
            if pos + count > end:
                self.fail("is truncated" if end < self.limits.pickle_bytes else "is too long")
            chunk = data[pos : pos + count]
            pos += count
            return chunk

        def uint(count):
            return int.from_bytes(take(count), "little")

        def text(count):
            try:
                return take(count).decode("utf-8")
            except UnicodeDecodeError:
                self.fail(f"holds a string that is not UTF-8 (at byte {pos})")

        def pop():
            if len(stack) <= (marks[-1] if marks else 0):
                self.fail(f"pops an empty stack (at byte {pos})")
            return stack.pop()

        def pop_mark():
            if not marks:
                self.fail(f"has no MARK to pop to (at byte {pos})")
            start = marks.pop()
            items = stack[start:]
            del stack[start:]
            return items

        def top(kind):
            if len(stack) <= (marks[-1] if marks else 0) or type(stack[-1]) is not kind:
                self.fail(f"adds items to something that is not a {kind.__name__}")
            return stack[-1]

        def set_items(target, items):
            if len(items) % 2:
                self.fail("sets a dict item without a value")
            for key, value in zip(items[::2], items[1::2], strict=True):
                if type(key) not in _KEY_TYPES:
                    self.fail(f"uses a {type(key).__name__} as a dict key")
                if key in target:
                    self.fail(f"sets the key {printable(key, 60)} twice")
                target[key] = value

        def global_line():
            nonlocal pos
            newline = data.find(b"\n", pos, min(end, pos + _MAX_GLOBAL_NAME))
            if newline < 0:
                self.fail("holds a malformed global name")
            return text(newline - pos + 1)[:-1]

        def resolve(module, name):
            found = ALLOWED_GLOBALS.get((module, name))
            if found is None:
                raise UnsafePickleError(
                    self.path,
                    f"the pickle asks for {printable(module, 60)}.{printable(name, 60)}, which "
                    "a weight file never needs; none of it was run (only state dicts of tensors "
                    "are read: re-save the file with torch.save(model.state_dict(), path) if it "
                    "holds more)",
                    advice="",
                )
            return found

        while True:
            if pos >= end:
                self.fail("is truncated" if end < self.limits.pickle_bytes else "is too long")
            self.opcodes += 1
            if self.opcodes > self.limits.pickle_opcodes:
                self.fail(f"runs more than the cap of {self.limits.pickle_opcodes:,} opcodes")
            op = data[pos]
            pos += 1
            if op == 0x80:  # PROTO
                if take(1)[0] > 5:
                    self.fail("asks for a pickle protocol above 5")
            elif op == 0x95:  # FRAME: a length hint for buffered reading; nothing to do
                take(8)
            elif op == 0x2E:  # STOP
                if len(stack) != 1 or marks:
                    self.fail("ends with a malformed stack")
                return stack[0], pos
            elif op == 0x28:  # MARK
                marks.append(len(stack))
            elif op == 0x4E:  # NONE
                stack.append(None)
            elif op == 0x88:  # NEWTRUE
                stack.append(True)
            elif op == 0x89:  # NEWFALSE
                stack.append(False)
            elif op == 0x4A:  # BININT
                stack.append(int.from_bytes(take(4), "little", signed=True))
            elif op == 0x4B:  # BININT1
                stack.append(uint(1))
            elif op == 0x4D:  # BININT2
                stack.append(uint(2))
            elif op in (0x8A, 0x8B):  # LONG1, LONG4
                count = uint(1 if op == 0x8A else 4)
                if count > _MAX_LONG_BYTES:
                    self.fail(f"holds a {count}-byte integer (at byte {pos})")
                stack.append(int.from_bytes(take(count), "little", signed=True))
            elif op == 0x47:  # BINFLOAT
                stack.append(struct.unpack(">d", take(8))[0])
            elif op in (0x58, 0x8C, 0x8D):  # BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                stack.append(text(uint({0x58: 4, 0x8C: 1, 0x8D: 8}[op])))
            elif op in (0x55, 0x54):  # SHORT_BINSTRING, BINSTRING (Python 2 str, ASCII)
                raw = take(uint(1 if op == 0x55 else 4))
                if not raw.isascii():
                    self.fail("holds a Python 2 string that is not ASCII")
                stack.append(raw.decode("ascii"))
            elif op in (0x43, 0x42, 0x8E):  # SHORT_BINBYTES, BINBYTES, BINBYTES8
                stack.append(take(uint({0x43: 1, 0x42: 4, 0x8E: 8}[op])))
            elif op == 0x29:  # EMPTY_TUPLE
                stack.append(())
            elif op == 0x74:  # TUPLE
                stack.append(tuple(pop_mark()))
            elif op in (0x85, 0x86, 0x87):  # TUPLE1, TUPLE2, TUPLE3
                items = [pop() for _ in range(op - 0x84)]
                stack.append(tuple(reversed(items)))
            elif op == 0x5D:  # EMPTY_LIST
                stack.append([])
            elif op == 0x6C:  # LIST
                stack.append(pop_mark())
            elif op == 0x61:  # APPEND
                value = pop()
                top(list).append(value)
            elif op == 0x65:  # APPENDS
                items = pop_mark()
                top(list).extend(items)
            elif op == 0x7D:  # EMPTY_DICT
                stack.append({})
            elif op == 0x64:  # DICT
                target = {}
                set_items(target, pop_mark())
                stack.append(target)
            elif op == 0x73:  # SETITEM
                value = pop()
                key = pop()
                set_items(top(dict), [key, value])
            elif op == 0x75:  # SETITEMS
                items = pop_mark()
                set_items(top(dict), items)
            elif op in (0x71, 0x72, 0x94):  # BINPUT, LONG_BINPUT, MEMOIZE
                index = len(memo) if op == 0x94 else uint(1 if op == 0x71 else 4)
                if len(stack) <= (marks[-1] if marks else 0):
                    self.fail(f"memoizes from an empty stack (at byte {pos})")
                memo[index] = stack[-1]
            elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET
                index = uint(1 if op == 0x68 else 4)
                if index not in memo:
                    self.fail(f"refers to memo entry {index}, which was never stored")
                value = memo[index]
                if type(value) in (dict, list):
                    self.fail("refers to the same dict or list twice (shared or cyclic)")
                stack.append(value)
            elif op == 0x63:  # GLOBAL
                module = global_line()
                stack.append(resolve(module, global_line()))
            elif op == 0x93:  # STACK_GLOBAL
                name, module = pop(), pop()
                if type(module) is not str or type(name) is not str:
                    self.fail("names a global with something other than strings")
                stack.append(resolve(module, name))
            elif op == 0x52:  # REDUCE
                args = pop()
                function = pop()
                if not isinstance(function, _Global) or type(args) is not tuple:
                    self.fail("calls something that is not an allowed function")
                stack.append(function.call(self, args))
            elif op == 0x62:  # BUILD: torch sets a state dict's `_metadata` this way
                pop()
                if len(stack) <= (marks[-1] if marks else 0) or type(stack[-1]) is not dict:
                    self.fail("sets the state of an object (BUILD is allowed on a dict only)")
            elif op == 0x51:  # BINPERSID
                stack.append(self.persistent_load(pop()))
            else:
                name = _OPCODE_NAMES.get(op, f"byte 0x{op:02x}")
                self.fail(f"uses opcode {name} (at byte {pos - 1}), which a state dict never needs")

    def state_dict(self, root) -> dict:
        """The flat {key: TensorRecord} of `root` (or of root["state_dict"]), every record
        checked."""
        if type(root) is not dict:
            raise WeightFileError(
                self.path, f"it holds a {type(root).__name__}, not a state dict of tensors"
            )
        inner = root.get("state_dict")
        state = inner if type(inner) is dict else root
        for key, value in state.items():
            if type(key) is not str or not key.isprintable() or len(key) > 1000:
                raise WeightFileError(self.path, "its state dict has a key that is not a name")
            if not isinstance(value, TensorRecord):
                raise WeightFileError(
                    self.path,
                    f"is a {type(value).__name__}, not a tensor (only flat state dicts of "
                    "tensors are read; re-save with torch.save(model.state_dict(), path))",
                    key,
                    advice="",
                )
            if value.name is None:
                value.name = key
        for index, tensor in enumerate(self.tensors):
            if tensor.error is not None:
                where = tensor.name or f"#{index} (a record outside the state dict)"
                raise WeightFileError(self.path, tensor.error, where)
        return state
