"""Seeded fuzzing of the weight readers: thousands of random mutations of small valid files
(zip and legacy `.pth`, safetensors) each end in success or one `WeightFileError` line, never
another exception, never longer than a bound, never holding more memory than the caps allow.
And each outcome is checked against an independent reader: a safetensors file is read by the
reference implementation too (what it refuses we refuse; what both read is byte-identical),
and a `.pth` we accept is loaded by torch (where installed) to the same arrays.

Mutations: byte flips, truncations, insertions, deletions and copied spans; inside a `.pth`'s
pickle, opcode arguments replaced by hostile integers and opcodes replaced by others; inside a
safetensors header, fields set to random JSON values, removed or added, shapes and dtypes
changed with the offsets and data region rebuilt to match, and the header length rewritten;
in both, numbers moved by a little (the near misses that off-by-one checks let through). Besides
the random mutations, sweeps edit every integer of the pickle, every number of the header and
every size recorded in the zip directory, one edit per file.
The readers run with tiny caps, so "within the caps" is a few hundred kilobytes.
"""

import json
import pickletools
import random
import re
import signal
import struct
import tracemalloc

import numpy as np
import pytest
import safetensors
import weight_files as wf

from jaxgan.weights.bounds import Limits, WeightFileError
from jaxgan.weights.pth import load_pth
from jaxgan.weights.safetensors import load_safetensors

LIMITS = Limits(
    tensor_bytes=64 << 10,
    total_bytes=256 << 10,
    tensors=64,
    pickle_bytes=64 << 10,
    pickle_opcodes=5_000,
    zip_entries=64,
    zip_directory_bytes=16 << 10,
    header_bytes=16 << 10,
)
MAX_PEAK_BYTES = 4 << 20  # the caps above, the file's own bytes and the parser's objects
SECONDS_PER_CASE = 2.0  # a valid seed reads in about a millisecond
CASES = {"zip pickle": 700, "zip archive": 300, "legacy": 500, "safetensors": 1000}
HOSTILE_INTS = [0, 1, -1, 7, 255, 2**31 - 1, -(2**31), 2**32, 2**40, 2**62, -(2**63), 2**100]
OPCODES = b"(.0NRbhqstu}])\x81\x85\x86\x87\x88\x89Q2Kcei"


def _pth_seed(legacy=False) -> tuple[bytes, dict]:
    """A state dict as torch.save writes it: tensors sharing a storage (one a strided view with
    an offset), an int64 scalar, and `_metadata` set by BUILD."""
    a = wf.tensor("0", 6, 0, (2, 3), (3, 1), legacy=legacy)
    b = wf.tensor("0", 6, 1, (2, 2), (1, 3), legacy=legacy)
    c = wf.tensor("1", 1, 0, (), (), "LongStorage", legacy=legacy)
    items = b"".join(wf.atom(k) + v for k, v in {"a": a, "b": b, "c": c}.items())
    metadata = wf.EMPTY_DICT + wf.atom("_metadata") + wf.ordered_dict() + wf.SETITEM
    payload = wf.PROTO2 + wf.ordered_dict() + wf.MARK + items + wf.SETITEMS
    payload += metadata + wf.BUILD + wf.STOP
    storages = {"0": np.arange(6, dtype="<f4"), "1": np.array([17], "<i8")}
    return payload, storages


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(5)
    position = rng.randrange(len(data) + 1)
    if kind == 0 and data:  # flip a few bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # truncate
        del data[position:]
    elif kind == 2:  # insert random bytes
        data[position:position] = rng.randbytes(rng.randint(1, 8))
    elif kind == 3:  # delete a span
        del data[position : position + rng.randint(1, 16)]
    else:  # copy a span elsewhere
        start = rng.randrange(len(data) + 1)
        data[position:position] = data[start : start + rng.randint(1, 32)]
    return bytes(data)


def _mutate_pickle(payload: bytes, rng: random.Random) -> bytes:
    """A field edit: an integer argument replaced by a hostile one, or an opcode by another."""
    ops = []
    try:  # an earlier mutation may have broken the stream: edit the part still readable
        for op in pickletools.genops(payload):
            ops.append(op)
    except Exception:  # noqa: BLE001 (pickletools says "malformed" in several ways)
        pass
    if not ops:
        return _mutate_bytes(payload, rng)
    _, arg, position = rng.choice(ops)
    end = next((p for _, _, p in ops if p > position), len(payload))
    if rng.random() < 0.6 and isinstance(arg, int):  # a near miss, or a hostile number
        nudged = arg + rng.choice([-3, -2, -1, 1, 2, 3])
        replacement = wf.atom(nudged if rng.random() < 0.6 else rng.choice(HOSTILE_INTS))
    elif rng.random() < 0.5:
        replacement = bytes([rng.choice(OPCODES)])
        if replacement in b"hq":  # BINGET / BINPUT take a one-byte memo index
            replacement += bytes([rng.randrange(8)])
        end = position + 1 if rng.random() < 0.5 else end
    else:
        replacement = b""
    return payload[:position] + replacement + payload[end:]


def _random_json(rng: random.Random, depth=0):
    choices = [
        lambda: rng.choice(HOSTILE_INTS),
        lambda: rng.random() * 10,
        lambda: rng.choice(["F32", "I64", "BF16", "F31", "", "shape", "\n"]),
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: [rng.choice(HOSTILE_INTS + [2, 4, 16]) for _ in range(rng.randint(0, 3))],
        lambda: rng.sample([rng.choice(HOSTILE_INTS), 0], 2),  # an empty tensor, one huge side
    ]
    if depth < 2:
        choices.append(lambda: [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 2))])
        choices.append(lambda: {"dtype": _random_json(rng, depth + 1)})
    return rng.choice(choices)()


def _safetensors_seed() -> tuple[dict, bytes]:
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, array in {
        "w": np.arange(6, dtype="<f4").reshape(2, 3),
        "n": np.array(5, "<i8"),
        "e": np.zeros((0, 2), "<f4"),
        "b": np.arange(3, dtype="u1"),
    }.items():
        dtype = {"float32": "F32", "int64": "I64", "uint8": "U8"}[array.dtype.name]
        offsets = [len(data), len(data) + array.nbytes]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": offsets}
        data += array.tobytes()
    return header, data


def _mutate_safetensors(header: dict, data: bytes, rng: random.Random) -> bytes:
    header = json.loads(json.dumps(header))
    kind = rng.randrange(6)
    if kind == 0:  # set, remove or add a field of a tensor
        name = rng.choice([*header, "new"])
        entry = header.setdefault(name, {})
        field = rng.choice(["dtype", "shape", "data_offsets", "extra"])
        if isinstance(entry, dict) and rng.random() < 0.3:
            entry.pop(field, None)
        elif isinstance(entry, dict):
            entry[field] = _random_json(rng)
        else:
            header[name] = _random_json(rng)
    elif kind == 1:  # replace a whole entry, or the header itself
        if rng.random() < 0.2:
            header = _random_json(rng)
        else:
            header[rng.choice(list(header))] = _random_json(rng)
    elif kind == 4:  # new shapes and dtypes, offsets and data rebuilt to match them
        for entry in rng.sample([e for n, e in header.items() if n != "__metadata__"], 2):
            entry["shape"] = rng.choice([[], [0], [3, 0], [2**62, 0], [0, 2**64], [5], [1, 2, 2]])
            entry["dtype"] = rng.choice(["F32", "I64", "U8", "BF16", "BOOL", "F8_E4M3", "C64"])
        data = b""
        for name, entry in header.items():
            if name != "__metadata__":
                itemsize = {"F32": 4, "I64": 8, "BF16": 2, "C64": 8}.get(entry["dtype"], 1)
                nbytes = min(int(np.prod(entry["shape"], dtype=object)) * itemsize, 64)
                entry["data_offsets"] = [len(data), len(data) + nbytes]
                data += rng.randbytes(nbytes)
    elif kind == 5:  # a near miss: one dimension or offset moved a little
        entry = header[rng.choice([n for n in header if n != "__metadata__"])]
        values = entry[rng.choice(["shape", "data_offsets"])]
        if values:
            values[rng.randrange(len(values))] += rng.choice([-8, -4, -1, 1, 4, 8])
    elif kind == 2:  # resize the data region
        data = data[: rng.randrange(len(data) + 1)] + rng.randbytes(rng.choice([0, 0, 4, 8]))
    raw = wf.safetensors_bytes(header, data)
    if kind == 3:  # rewrite the header length
        raw = struct.pack("<Q", rng.choice([0, 1, 2**63, len(raw), rng.randrange(200)])) + raw[8:]
    return raw


def _pickle_sweep(payload: bytes):
    """Every integer of the pickle (offsets, sizes, strides, storage sizes) moved a little or
    replaced by a hostile number, one edit per file."""
    ops = list(pickletools.genops(payload))
    for (op, arg, position), (_, _, end) in zip(ops, ops[1:], strict=False):
        if op.name in ("BININT", "BININT1", "BININT2", "LONG1"):
            for value in sorted({arg + d for d in (-3, -2, -1, 1, 2, 3)} | set(HOSTILE_INTS)):
                yield payload[:position] + wf.atom(value) + payload[end:]


def _header_sweep(header: dict, data: bytes):
    """Every number of the safetensors header moved a little, one edit per file; and each
    tensor shifted with all those after it, the data region shortened or lengthened to match
    (an overlap or a gap, and nothing else wrong)."""
    names = [name for name in header if name != "__metadata__"]
    for name in names:
        for field in ("shape", "data_offsets"):
            for index in range(len(header[name][field])):
                for delta in (-8, -4, -1, 1, 4, 8):
                    edited = json.loads(json.dumps(header))
                    edited[name][field][index] += delta
                    yield wf.safetensors_bytes(edited, data)
        for delta in (-8, -4, -1, 1, 4, 8):
            edited = json.loads(json.dumps(header))
            start = header[name]["data_offsets"][0]
            for other in names:
                if header[other]["data_offsets"][0] >= start:
                    edited[other]["data_offsets"] = [
                        o + delta for o in edited[other]["data_offsets"]
                    ]
            resized = data[:delta] if delta < 0 else data + bytes(delta)
            yield wf.safetensors_bytes(edited, resized)


def _zip_sweep(archive: bytes):
    """Each member's recorded sizes (compressed and not, in its central directory entry)
    moved a little or made huge, one edit per file; all but `version`, which only torch reads."""
    entry = archive.find(b"PK\x01\x02")
    while entry >= 0:
        (name_length,) = struct.unpack_from("<H", archive, entry + 28)
        name = archive[entry + 46 : entry + 46 + name_length]
        for field in (20, 24) if name != b"archive/version" else ():  # compressed, uncompressed
            (size,) = struct.unpack_from("<I", archive, entry + field)
            for value in (0, size - 1, size + 1, size + 4, 2**30, 2**32 - 1):
                edited = bytearray(archive)
                struct.pack_into("<I", edited, entry + field, max(value, 0))
                yield bytes(edited)
        entry = archive.find(b"PK\x01\x02", entry + 4)


def _cases(seed: int, zip_seed: bytes, legacy_seed: bytes):
    """(kind, index, content) for every case, from one seeded generator: for "zip pickle" the
    mutated data.pkl (the archive around it stays valid), else the mutated file."""
    rng = random.Random(seed)
    payload, _ = _pth_seed()
    header, data = _safetensors_seed()
    for index, mutated in enumerate(_pickle_sweep(payload)):
        yield "pickle sweep", index, mutated
    for index, mutated in enumerate(_header_sweep(header, data)):
        yield "header sweep", index, mutated
    for index, mutated in enumerate(_zip_sweep(zip_seed)):
        yield "zip sweep", index, mutated
    for index in range(CASES["zip pickle"]):
        mutated = payload
        for _ in range(rng.randint(1, 3)):
            mutate = _mutate_pickle if rng.random() < 0.5 else _mutate_bytes
            mutated = mutate(mutated, rng)
        yield "zip pickle", index, mutated
    for index in range(CASES["zip archive"]):
        yield "zip archive", index, _mutate_bytes(zip_seed, rng)
    for index in range(CASES["legacy"]):
        yield "legacy", index, _mutate_bytes(legacy_seed, rng)
    for index in range(CASES["safetensors"]):
        if rng.random() < 0.6:
            yield "safetensors", index, _mutate_safetensors(header, data, rng)
        else:
            yield "safetensors", index, _mutate_bytes(wf.safetensors_bytes(header, data), rng)


# Why we may refuse a file the reference reads: our caps (tiny here), the rules we add
# (repeated keys, control characters, the dimension cap) and dtypes we do not read.
STRICTER = re.compile(r"cap|given twice|control characters|is not one of|dimensions, more than")


def _agrees_with_the_reference(content: bytes, loaded, message: str, where: str):
    try:
        reference = {name: info for name, info in safetensors.deserialize(content)}
    except Exception:  # noqa: BLE001 (the reference refuses in its own ways)
        assert loaded is None, f"{where}: the reference refuses this file, we read it"
        return
    if loaded is None:
        assert STRICTER.search(message), f"{where}: the reference reads it, we say: {message}"
        return
    assert set(loaded) == set(reference), where
    for name, info in reference.items():
        assert loaded[name].shape == tuple(info["shape"]), (where, name)
        assert loaded[name].tobytes() == bytes(info["data"]), (where, name)


def _agrees_with_torch(path, loaded: dict, where: str):
    try:  # (the location a storage is tagged with is torch's business: map it to the CPU)
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001
        if "Unsupported operand" in str(error):
            return  # torch's own safe unpickler knows fewer opcodes (protocol 4's) than we do
        raise AssertionError(f"{where}: we read it, torch says {error!r:.200}") from error
    assert list(state) == list(loaded), where
    for key, tensor in state.items():
        np.testing.assert_array_equal(tensor.numpy(), loaded[key], f"{where}: {key}")


def _timeout(*_):
    raise TimeoutError(f"a case took more than {SECONDS_PER_CASE} s")


try:  # the torch oracle runs where the conversion tests' torch is installed
    import torch
except ImportError:
    torch = None


@pytest.mark.parametrize("seed", [0])
def test_mutated_weight_files_load_or_are_refused_in_one_line(tmp_path, seed):
    payload, storages = _pth_seed()
    raw_storages = {key: array.tobytes() for key, array in storages.items()}
    pth_path, st_path = tmp_path / "w.pth", tmp_path / "w.safetensors"
    # The seeds themselves are valid: the mutations start from files that load.
    wf.zip_pth(pth_path, payload, raw_storages)
    zip_seed = pth_path.read_bytes()
    state = load_pth(str(pth_path), LIMITS)
    np.testing.assert_array_equal(state["b"], [[1, 4], [2, 5]])
    wf.legacy_pth(pth_path, _pth_seed(legacy=True)[0], storages)
    legacy_seed = pth_path.read_bytes()
    assert load_pth(str(pth_path), LIMITS)["c"] == 17
    st_path.write_bytes(wf.safetensors_bytes(*_safetensors_seed()))
    assert load_safetensors(str(st_path), LIMITS)["w"].shape == (2, 3)

    outcomes, reasons = {}, set()
    previous = signal.signal(signal.SIGALRM, _timeout)
    tracemalloc.start()
    try:
        for kind, index, content in _cases(seed, zip_seed, legacy_seed):
            safetensors_file = kind in ("safetensors", "header sweep")
            path, reader = (st_path, load_safetensors) if safetensors_file else (pth_path, load_pth)
            if kind in ("zip pickle", "pickle sweep"):
                wf.zip_pth(path, content, raw_storages)
            else:
                path.write_bytes(content)
            where = f"seed {seed}, {kind} case {index} (file kept at {path})"
            tracemalloc.reset_peak()
            signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_CASE)
            try:
                loaded = reader(str(path), LIMITS)
                outcome, message = "loaded", ""
            except WeightFileError as error:
                loaded, message = None, str(error)
                assert "\n" not in message and str(path) in message, (where, message)
                outcome = "refused"
                reasons.add(re.sub(r"[0-9,]+", "N", message.split(": ", 1)[1])[:60])
            except Exception as error:  # noqa: BLE001 (what the test exists to catch)
                signal.setitimer(signal.ITIMER_REAL, 0)
                raise AssertionError(f"{where}: {type(error).__name__}: {error}") from error
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < MAX_PEAK_BYTES, f"{where}: {peak:,} bytes held"
            tracemalloc.stop()  # the independent readers are not ours to measure
            if safetensors_file:
                _agrees_with_the_reference(content, loaded, message, where)
            elif loaded is not None and torch is not None and kind != "zip archive":
                # (a damaged zip member we never read, such as `version`, torch refuses)
                _agrees_with_torch(path, loaded, where)
            tracemalloc.start()
            outcomes[kind, outcome] = outcomes.get((kind, outcome), 0) + 1
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, previous)
    # The mutations reach deep: many different refusals, and some mutants still load.
    assert sum(n for (kind, _), n in outcomes.items() if kind in CASES) == sum(CASES.values())
    assert len(reasons) >= 40, sorted(reasons)
    for kind in [*CASES, "pickle sweep", "header sweep"]:
        assert outcomes.get((kind, "refused"), 0) > CASES.get(kind, 100) // 4, outcomes
        assert outcomes.get((kind, "loaded"), 0) > 0, outcomes
    # Every size recorded in the zip directory matters: each edit is refused.
    assert outcomes[("zip sweep", "refused")] == sum(1 for _ in _zip_sweep(zip_seed)), outcomes
