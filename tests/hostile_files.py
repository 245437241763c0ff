"""Files a hostile or careless user might hand the data code, made cheaply for the tests."""

import os
import struct
import threading
import zlib


def _chunk(kind, data):
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc


def write_png_header(path, width, height):
    """A PNG that claims `width` x `height` grey pixels but holds one row of data: all a
    reader may look at before refusing it is the header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" + bytes(min(width, 1000)))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat))
        f.write(_chunk(b"IEND", b""))


def write_big_png(path, width, height):
    """A valid 8-bit grey PNG of `width` x `height` (diagonal ramps), written a row at a time:
    a 12,000 x 12,000 image takes ~1.5 MB on disk and never more than one row in memory."""
    chunk = _chunk
    ramp = bytes(range(256)) * (width // 256 + 2)
    compressor = zlib.compressobj(1)
    parts = []
    for y in range(height):
        start = (y // 64) % 256  # runs of equal rows: zlib finds each in the previous one
        parts.append(compressor.compress(b"\0" + ramp[start : start + width]))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def make_fifo(path):
    os.mkfifo(path)
    return str(path)


def release_fifo(path):
    """Unblocks a reader stuck on the FIFO at `path` (opens it for writing, then closes it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def call_with_deadline(fn, seconds, fifos=()):
    """fn()'s result, or AssertionError if it has not returned after `seconds` (a hang); the
    FIFOs it may be stuck on are then released so the test process can end."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # handed to the caller below
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:
            release_fifo(fifo)
        thread.join(5)
        raise AssertionError(f"still running after {seconds} s: it hangs on a special file")
    if "error" in result:
        raise result["error"]
    return result.get("value")
