"""Image files on their way into a TFDS dataset: read, check, skip the bad ones, count them.

Used by every builder that reads a folder of images (NUS-WIDE, your own data), so the policy is
one: a missing, empty, unreadable or truncated file is skipped and counted, never fatal, and
the build ends with one summary line naming the first few. Files TensorFlow cannot decode into
three channels (CMYK or 16-bit images, GIF, BMP, TIFF, WebP, ...) are re-encoded once, at build
time, as RGB JPEG; JPEG and PNG files in ordinary modes are stored byte for byte.
"""

import collections
import concurrent.futures
import dataclasses
import io
import os
from collections.abc import Iterable, Iterator

from PIL import Image

# Formats and modes that tf.io.decode_image(channels=3) reads correctly as they are.
_KEEP_AS_IS = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "RGBA", "L", "LA", "P"}}
MAX_LISTED = 10  # bad files named in the summary line


class BadImage(Exception):
    """An image file that cannot go into the dataset; the message is the reason."""


def read_image(path: str) -> bytes:
    """The bytes to store for the image at `path`: JPEG or PNG that TF decodes to 3 channels.

    Raises BadImage("missing" | "empty" | "unreadable: ...") for a file that cannot be used.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadImage("missing") from None
    except IsADirectoryError:
        raise BadImage("missing (a directory)") from None
    except OSError as e:
        raise BadImage(f"unreadable: {e.strerror or e}") from None
    if not data:
        raise BadImage("empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel: catches truncated and corrupt files
            if image.mode in _KEEP_AS_IS.get(image.format, ()):
                return data
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = image.convert("RGBA")
                background = Image.new("RGB", image.size, (255, 255, 255))
                background.paste(image, mask=image.getchannel("A"))
                image = background
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=95)
            return buffer.getvalue()
    except Image.UnidentifiedImageError:
        raise BadImage("unreadable: not an image format PIL knows") from None
    except Exception as e:  # PIL raises many kinds on corrupt data; none may stop a build
        raise BadImage(f"unreadable: {e}") from None


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
    items: Iterable[tuple[str, str]], log: BadFileLog, num_threads: int | None = None
) -> Iterator[tuple[str, bytes]]:
    """(name, path) pairs -> (name, image bytes) for the good files, in order; bad ones go to `log`.

    Files are read and checked by a thread pool (PIL decodes without the GIL), a bounded chunk
    at a time so memory stays flat on large datasets.
    """
    num_threads = num_threads or min(32, (os.cpu_count() or 1) * 2)
    chunk = 8 * num_threads

    def check(item):
        name, path = item
        try:
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
