"""Where logged numbers go: a line on stdout, a JSON line in `<workdir>/metrics.jsonl`, and a
TensorBoard scalar under `<workdir>/tensorboard` for every number of a record (process 0 only).

TensorBoard events are written here, in TensorBoard's event-file format (TFRecord framing with
masked CRC-32C checksums around `Event` protocol buffers holding `simple_value` scalars marked
for the scalars plugin), by `EventFile`: training imports no TensorFlow and needs no
`tensorboard` package. Viewing them needs TensorBoard, installed wherever you look at them
(`pip install tensorboard; tensorboard --logdir=WORKDIR/tensorboard`).
Scalars are named by where they came from: training records as `train/<name>` (losses,
Wasserstein estimate, gradient penalty, steps/s), evaluations as `eval/<name>` (every metric
of the table, test split unless the name says validation).
"""

import json
import numbers
import os
import socket
import struct
import time

import jax

TENSORBOARD_DIR = "tensorboard"


def scalars(record: dict) -> dict[str, float]:
    """The TensorBoard scalars of one record: its numbers, named train/... or eval/...; an
    event record's own numbers (a run's size at its start, ...) are not a curve."""
    out = {}
    for key, value in record.items():
        if key == "step" or ("event" in record and not isinstance(value, dict)):
            continue
        value = _plain(value)
        if isinstance(value, dict):
            for name, inner in value.items():
                inner = _plain(inner)
                if _is_number(inner):
                    out[f"{key}/{name}"] = float(inner)
        elif _is_number(value):
            out[f"train/{key}"] = float(value)
    return out


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord framing uses it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _message(number: int, body: bytes) -> bytes:
    return _field(number, 2, _varint(len(body)) + body)


# SummaryMetadata{plugin_data: PluginData{plugin_name: "scalars"}}: TensorBoard's scalars plugin.
_SCALAR_METADATA = _message(1, _message(1, b"scalars"))


def event(wall_time: float, step: int, scalars: dict | None = None, version: str = "") -> bytes:
    """A serialized tensorboard `Event`: wall_time (1), step (2), file_version (3) or a
    `Summary` (5) of `Value`s {tag (1), simple_value (2), metadata (9)}."""
    body = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if version:
        body += _message(3, version.encode())
    if scalars:
        values = b"".join(
            _message(
                1,
                _message(1, tag.encode())
                + _field(2, 5, struct.pack("<f", value))
                + _message(9, _SCALAR_METADATA),
            )
            for tag, value in scalars.items()
        )
        body += _message(5, values)
    return body


def record(data: bytes) -> bytes:
    """TFRecord framing: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", _masked_crc(length))
        + data
        + struct.pack("<I", _masked_crc(data))
    )


class EventFile:
    """An append-only TensorBoard event file in `folder` (created on first use)."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(folder, name)
        self._file = open(self.path, "ab")
        self._file.write(record(event(time.time(), 0, version="brain.Event:2")))
        self._file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._file.write(record(event(time.time(), step, values)))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class MetricWriter:
    """Progress lines, `metrics.jsonl` and TensorBoard, written by process 0."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, TENSORBOARD_DIR)
        self._events = None

    def write(self, record: dict, line: str | None = None) -> None:
        """Prints `line`, appends `record` as JSON, and writes its numbers at its step."""
        if not self.active:
            return
        if line:
            print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        values = scalars(record)
        if values and "step" in record:
            if self._events is None:
                self._events = EventFile(self.tensorboard_dir)
            self._events.scalars(int(record["step"]), values)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value
