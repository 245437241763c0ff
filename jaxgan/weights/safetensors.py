"""Reads safetensors files (timm, Hugging Face) into NumPy, without any framework.

The layout: an unsigned 64-bit little-endian header length N, N bytes of JSON, then the data
region. The header is validated as the reference implementation (the `safetensors` crate)
does, before any tensor is allocated: a JSON object of bounded size whose nesting the parser
bounds; an optional (or null) `__metadata__` object of strings; for every other key an object with a
known `dtype` string, a `shape` list of non-negative integers and `data_offsets`, two
non-negative integers, begin <= end, spanning exactly shape product x item size bytes. Sorted
by offset, the tensors must tile the data region: the first starts at 0, each starts where the
one before ends (no overlap, no gap), and the last ends at the end of the file. Stricter than
the reference: a key given twice and more dimensions than `Limits.ndim` are refused.
"""

import json
import math
import struct

import ml_dtypes
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

DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}
METADATA_KEY = "__metadata__"


def _kind(value) -> str:
    """A JSON value's type in JSON's words, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key is given twice")
    return dict(pairs)


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _parse_header(raw: bytes, path):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WeightFileError(path, "its header is not UTF-8 text") from None
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except RecursionError:  # the parser's own depth bound, as the reference's serde_json has
        raise WeightFileError(path, "its header nests too deeply") from None
    except ValueError as error:  # also integers of more than 4300 digits
        raise WeightFileError(
            path, f"its header is not valid JSON ({printable(str(error), 80)})"
        ) from None
    if type(header) is not dict:
        raise WeightFileError(path, f"its header is a JSON {_kind(header)}, not an object")
    return header


def _check_entry(name, info, path, limits, budget):
    """(dtype, shape, begin, end) of one header entry, or a refusal naming the tensor."""

    def refuse(reason):
        raise WeightFileError(path, reason, name)

    if not name.isprintable():
        refuse("its name holds control characters")
    if type(info) is not dict:
        refuse(f"its entry is a JSON {_kind(info)}, not an object")
    for field in ("dtype", "shape", "data_offsets"):
        if field not in info:
            refuse(f"its entry has no {field}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if type(dtype) is not str:
        refuse(f"its dtype is a JSON {_kind(dtype)}, not a string")
    if dtype not in DTYPES:
        raise WeightFileError(
            path,
            f"its dtype {printable(dtype, 20)} is not one of {', '.join(DTYPES)}",
            name,
            advice="",
        )
    if type(shape) is not list or not all(map(_is_count, shape)):
        refuse("its shape is not a list of non-negative integers")
    if len(shape) > limits.ndim:
        refuse(f"it has {len(shape)} dimensions, more than the cap of {limits.ndim}")
    if shape and max(shape) > limits.tensor_bytes:  # an empty tensor may claim any other side
        refuse(f"its dimension {max(shape):,} exceeds the cap on elements")
    if not (type(offsets) is list and len(offsets) == 2 and all(map(_is_count, offsets))):
        refuse("its data_offsets are not two non-negative integers")
    begin, end = offsets
    if begin > end:
        refuse(f"its data_offsets [{begin}, {end}] end before they begin")
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    budget.check_tensor(nbytes, name)
    if end - begin != nbytes:
        refuse(
            f"its data_offsets span {end - begin:,} bytes but {dtype} x {tuple(shape)} needs "
            f"{nbytes:,}"
        )
    return DTYPES[dtype], tuple(shape), begin, end


def load_safetensors(path, limits: Limits = DEFAULT_LIMITS) -> dict:
    """{key: np.ndarray} of a safetensors file; a `WeightFileError` for anything else."""
    with open_regular(path) as file:
        size = file_size(file)
        if size < 8:
            raise WeightFileError(path, "it is too short for a safetensors file")
        (header_bytes,) = struct.unpack("<Q", file.read(8))
        if header_bytes > limits.header_bytes:
            raise WeightFileError(
                path,
                f"its header claims {header_bytes:,} bytes, above the cap of "
                f"{limits.header_bytes:,} bytes",
            )
        if 8 + header_bytes > size:
            raise WeightFileError(path, "its header runs past the end of the file")
        header = _parse_header(file.read(header_bytes), path)
        metadata = header.pop(METADATA_KEY, None)  # absent or null, as the reference allows
        if metadata is not None and (
            type(metadata) is not dict or not all(type(v) is str for v in metadata.values())
        ):
            raise WeightFileError(path, f"its {METADATA_KEY} is not an object of strings")
        if len(header) > limits.tensors:
            raise WeightFileError(
                path, f"it holds {len(header):,} tensors, more than the cap of {limits.tensors:,}"
            )
        budget = Budget(path, limits)
        entries = {
            name: _check_entry(name, info, path, limits, budget) for name, info in header.items()
        }
        # The tensors must tile the data region exactly, as the reference requires.
        data_start, data_bytes = 8 + header_bytes, size - 8 - header_bytes
        covered, previous = 0, None
        for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
            if begin < covered:
                raise WeightFileError(
                    path, f"its bytes {begin:,}..{end:,} overlap those of '{previous}'", name
                )
            if begin > covered:
                raise WeightFileError(
                    path,
                    f"its bytes start at {begin:,}, leaving {covered:,}..{begin:,} unused",
                    name,
                )
            covered, previous = end, printable(name, 80)
        if covered != data_bytes:
            raise WeightFileError(
                path, f"its tensors cover {covered:,} bytes of a {data_bytes:,}-byte data region"
            )
        for name, (_, _, begin, end) in entries.items():
            budget.take(end - begin, name)
        tensors = {}
        for name, (dtype, shape, begin, _) in entries.items():
            array = np.empty(shape, dtype)
            file.seek(data_start + begin)
            read_into(file, array, path, name)
            tensors[name] = array
        return tensors
