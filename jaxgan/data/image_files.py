"""Image files on their way into a TFDS dataset: read, check, skip the bad ones, count them.

Used by every builder that reads a folder of images (NUS-WIDE, your own data) and by
`jaxgan.data.image_input` (one file at prediction time), so the policy is one:

- Only regular files are opened (never a directory, device, named pipe or socket: a FIFO called
  `pipe.jpg` cannot hang a build, `/dev/zero` cannot fill memory), and at most
  `MAX_FILE_BYTES` of one.
- The pixel count is read from the header and checked against `MAX_PIXELS` before anything is
  decoded, so a decompression bomb (a small file that claims billions of pixels) is refused at
  the cost of its header. Decodes in flight across threads share a budget of `MAX_PIXELS`, so
  memory stays bounded however many threads read large images at once.
- Images larger than `STORED_SHORT_SIDE` on their shorter side (or with more than
  `STORED_MAX_PIXELS`) are downscaled once, here, keeping their aspect ratio: the pipeline
  resizes to the model's input (224, or 256 for the paper's crops) anyway, and a stored image
  then costs at most ~1 MP to decode on every epoch, whatever the file held.
- JPEG and PNG files in ordinary modes that need no downscaling are stored byte for byte.
  Everything else (CMYK, alpha, GIF, BMP, TIFF, WebP, ...) is re-encoded once as RGB JPEG
  (quality 95), transparency composited on white.

A missing, empty, unreadable, truncated or refused file is skipped and counted, never fatal,
and a build ends with one summary line naming the first few.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import math
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image

MAX_FILE_BYTES = 64 * 2**20  # one image file; larger ones are skipped, never read
MAX_PIXELS = 150_000_000  # width x height from the header; a 12,000 x 12,000 scan passes
STORED_SHORT_SIDE = 512  # shorter side kept at least this large when downscaling (2x the 256)
STORED_MAX_PIXELS = 2**20  # and at most this many pixels stored (512 x 2,048)
LIMITS = (MAX_FILE_BYTES, MAX_PIXELS, STORED_SHORT_SIDE, STORED_MAX_PIXELS)  # for cache keys

# The formats we open (PIL knows more, some of which run external programs, e.g. EPS). PIL
# opens a camera's multi-picture JPEG as format "MPO" under "JPEG".
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")
# Formats and modes that tf.io.decode_image(channels=3) reads correctly as they are (16-bit
# PNG included: TensorFlow keeps the high byte, as `_to_8_bit` does).
_KEEP_AS_IS = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "L", "P", "I;16", "I;16B", "I;16L"}}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
MAX_LISTED = 10  # bad files named in the summary line
JPEG_QUALITY = 95

# Our own pixel check runs first and is stricter than PIL's warning threshold.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadFile(Exception):
    """A file that cannot be used; the message is the reason, short enough for a report."""


class BadImage(BadFile):
    """An image that cannot be used (in a dataset build, a preparation or a prediction): the
    one exception for it. `reason` is short enough for a report; with `path`, the message
    is one line naming the file and the reason."""

    def __init__(self, reason: str, path=None):
        self.reason = str(reason)
        self.path = None if path is None else os.fspath(path)
        super().__init__(self.reason if path is None else f"image {self.path!r}: {self.reason}")


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
        raise BadFile(f"not a regular file: {kind}")


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`; else BadFile(reason).

    The file is stat'ed before it is opened (a device is never opened), opened non-blocking
    (a pipe swapped in meanwhile cannot block) and checked again on the open descriptor.
    """
    try:
        _check_regular(os.stat(path).st_mode)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise BadFile("missing") from None
    except OSError as e:
        raise BadFile(f"unreadable: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        _check_regular(info.st_mode)
        if info.st_size > max_bytes:
            raise BadFile(f"too large: {_size(info.st_size)}, the limit is {_size(max_bytes)}")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise BadFile(f"unreadable: {e.strerror or e}") from None
    if len(data) > max_bytes:  # it grew after the check
        raise BadFile(f"too large: over {_size(max_bytes)}")
    return data


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


class _PixelBudget:
    """Caps the pixels being decoded at once over all threads (memory is ~4-8 bytes a pixel)."""

    def __init__(self, limit: int):
        self._limit = limit
        self._used = 0
        self._free = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels: int):
        pixels = min(pixels, self._limit)  # one image alone may always proceed
        with self._free:
            self._free.wait_for(lambda: self._used + pixels <= self._limit)
            self._used += pixels
        try:
            yield
        finally:
            with self._free:
                self._used -= pixels
                self._free.notify_all()


_BUDGET = _PixelBudget(MAX_PIXELS)


def stored_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) an image is stored at: unchanged unless its shorter side exceeds
    `STORED_SHORT_SIDE` or it has more than `STORED_MAX_PIXELS`; then scaled down, aspect
    kept, until neither holds (the shorter side then is `STORED_SHORT_SIDE`, or less for a
    panorama longer than 4:1)."""
    scale = min(
        1.0,
        STORED_SHORT_SIDE / min(width, height),
        math.sqrt(STORED_MAX_PIXELS / (width * height)),
    )
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16- or 32-bit grey -> "L", keeping the high byte (PIL's own convert clips at 255)."""
    pixels = np.clip(np.asarray(image), 0, None)
    top = 2**16 if image.mode.startswith("I;16") else int(pixels.max(initial=0)) + 1
    shift = 0 if top <= 2**8 else 8 if top <= 2**16 else 24
    return Image.fromarray((pixels.astype(np.uint32) >> shift).astype(np.uint8), "L")


def _working_mode(image: Image.Image) -> Image.Image:
    """Any PIL mode -> "L", "RGB" or (with transparency) "RGBA"."""
    if image.mode.startswith("I"):
        return _to_8_bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return image.convert("RGBA")
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode == "1" else "RGB")


def _on_white(image: Image.Image) -> Image.Image:
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def encode_for_storage(data: bytes) -> bytes:
    """Encoded image bytes -> the bytes to store: the same bytes, or a re-encoded JPEG (see the
    module docstring). Raises BadImage(reason) for anything that cannot be stored."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadImage(
                    f"too many pixels: {width}x{height}, the limit is {MAX_PIXELS:,} "
                    "(a decompression bomb?)"
                )
            target = stored_size(width, height)
            if (
                target == (width, height)
                and image.mode in _KEEP_AS_IS.get(image.format, ())
                and "transparency" not in image.info
            ):
                with _BUDGET.reserve(width * height):
                    image.load()  # decodes every pixel: catches truncated and corrupt files
                return data
            if target != (width, height) and image.format in ("JPEG", "MPO"):
                image.draft(image.mode, target)  # decode at 1/2, 1/4 or 1/8 scale if it can
            with _BUDGET.reserve(image.size[0] * image.size[1]):
                image.load()
                image = _working_mode(image)
                if image.size != target:
                    image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            if image.mode == "RGBA":
                image = _on_white(image)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
            return buffer.getvalue()
    except BadImage:
        raise
    except Image.DecompressionBombError as e:  # PIL's own check, at twice its warning size
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        raise BadImage(
            f"too many pixels: {claimed.group(1) if claimed else 'over ' + str(MAX_PIXELS)}, "
            f"the limit is {MAX_PIXELS:,} (a decompression bomb?)"
        ) from None
    except Image.UnidentifiedImageError:
        raise BadImage(
            f"unreadable: not an image in a known format ({', '.join(FORMATS)})"
        ) from None
    except Exception as e:  # PIL raises many kinds on corrupt data; none may stop a build
        raise BadImage(f"unreadable: {e}") from None


def read_image(path: str) -> bytes:
    """The bytes to store for the image file at `path`: JPEG or PNG that TF decodes to 3 channels.

    Raises BadImage(reason) for a file that cannot be used: "missing", "empty",
    "not a regular file: ...", "too large: ...", "too many pixels: ...", "unreadable: ...".
    """
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except BadFile as e:
        raise BadImage(str(e)) from None
    if not data:
        raise BadImage("empty")
    return encode_for_storage(data)


def decode_rgb(data: bytes) -> np.ndarray:
    """Stored image bytes (`read_image`'s: JPEG or PNG) -> uint8 [H, W, 3]: the one image
    decoder (PIL) of preparation and prediction. Grey becomes three channels, 16-bit keeps
    its high byte, a palette its colours. Raises BadImage(reason) if it cannot be decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            image.load()
            image = _working_mode(image)
            if image.mode == "RGBA":
                image = _on_white(image)
            return np.asarray(image.convert("RGB"), np.uint8)
    except Exception as e:  # PIL raises many kinds on corrupt data
        raise BadImage(f"unreadable: {e}") from None


def to_square(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [side, side, 3]: the paper's square resize (bilinear,
    antialiased when shrinking: PIL's). An image already `side` x `side` is kept as it is."""
    if image.shape[:2] == (side, side):
        return image
    resized = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.uint8)


def stored_square(data: bytes, side: int) -> np.ndarray:
    """Stored image bytes -> the uint8 square prepared records hold for them."""
    return to_square(decode_rgb(data), side)


def is_inside(path: str, folder: str) -> bool:
    """Whether absolute `path` is `folder` or below it (both already resolved)."""
    return os.path.commonpath([path, folder]) == folder


@dataclasses.dataclass
class BadFileLog:
    """Counts the files one build skipped, by reason, and remembers the first few by name."""

    what: str  # e.g. "nus_wide/paper train"
    total: int = 0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    listed: list = dataclasses.field(default_factory=list)

    def add(self, name: str, reason: str) -> None:
        self.reasons[reason.split(":")[0]] += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(f"{name} ({reason})")

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        """One line: how many were skipped of how many, why, and the first few names."""
        if not self.skipped:
            return f"{self.what}: all {self.total} images read, none skipped"
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))
        more = self.skipped - len(self.listed)
        names = "; ".join(self.listed) + (f"; and {more} more" if more > 0 else "")
        return f"{self.what}: skipped {self.skipped} of {self.total} images ({why}): {names}"

    def as_dict(self) -> dict:
        """A JSON-able record of this log, for a dataset's metadata."""
        return {"total": self.total, "skipped": dict(self.reasons), "listed": list(self.listed)}

    @classmethod
    def merged(cls, what: str, records) -> "BadFileLog":
        """One log from several `as_dict` records (e.g. one per split)."""
        log = cls(what)
        for record in records:
            log.total += record["total"]
            log.reasons.update(record["skipped"])
            log.listed.extend(record["listed"][: MAX_LISTED - len(log.listed)])
        return log


def read_images(
    items: Iterable[tuple[str, str]],
    log: BadFileLog,
    *,
    inside: str | None = None,
    num_threads: int | None = None,
) -> Iterator[tuple[str, bytes]]:
    """(name, path) pairs -> (name, image bytes) for the good files, in order; bad ones go to `log`.

    With `inside` (a resolved folder), a path that resolves outside it (e.g. through a
    symbolic link) is skipped as "outside <folder>" without being opened; the reason is the
    same whether or not the file exists. Files are read and checked by a thread pool (PIL
    decodes without the GIL), a bounded chunk at a time so memory stays flat on large datasets.
    """
    num_threads = num_threads or min(32, (os.cpu_count() or 1) * 2)
    chunk = 8 * num_threads

    def check(item):
        name, path = item
        try:
            if inside is not None and not is_inside(os.path.realpath(path), inside):
                raise BadImage(f"outside {os.path.basename(inside) or inside}")
            return name, read_image(path), None
        except BadImage as e:
            return name, None, str(e)

    items = iter(items)
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        while batch := [item for _, item in zip(range(chunk), items, strict=False)]:
            for name, data, reason in pool.map(check, batch):
                log.total += 1
                if data is None:
                    log.add(name, reason)
                else:
                    yield name, data


def build_report(builder) -> str:
    """One line for a built dataset: files skipped over all splits, and unlabeled ones dropped.

    Reads the `bad_files` record (split -> `BadFileLog.as_dict()`, plus "unlabeled") that the
    builders keep in their dataset's metadata.
    """
    records = list(builder.info.metadata.get("bad_files", {}).values())
    what = f"{builder.name}/{builder.builder_config.name}"
    line = BadFileLog.merged(what, records).summary()
    unlabeled = sum(r.get("unlabeled", 0) for r in records)
    return line + (f"; dropped {unlabeled} images with no label" if unlabeled else "")
