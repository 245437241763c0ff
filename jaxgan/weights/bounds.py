"""What a weight file may ask of the reader, and the one error every refusal raises.

A weight file is outside input: a few hundred bytes of pickle or JSON can declare terabytes.
The readers check every declared size against these caps before they allocate anything, so a
file can never cost more memory than `Limits` allows, whatever it claims. The defaults sit far
above the largest real files of the backbones we convert (measured on torchvision's ResNet-152,
VGG-16 and Inception-v3 state dicts) and far below what would hurt a training host.
"""

import dataclasses
import os
import stat


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on what one weight file may make the reader hold. Tests pass tiny ones."""

    # One tensor, or one storage that tensors view: VGG-16's largest (classifier.0.weight,
    # 25088 x 4096 float32) is 411 MB.
    tensor_bytes: int = 1 << 30
    # All tensor data held at once (storages read plus copies made): VGG-16's 138M float32
    # parameters are 553 MB, ResNet-152's 241 MB.
    total_bytes: int = 4 << 30
    # Tensor records in one file: ResNet-152's state dict has 932.
    tensors: int = 100_000
    # Dimensions of one tensor: our networks' tensors have at most 4.
    ndim: int = 8
    # The pickled part of a `.pth` (zip member data.pkl, or the legacy file's leading
    # pickles): ResNet-152's is 115 KB.
    pickle_bytes: int = 8 << 20
    # Opcodes the pickle reader runs, which bounds the objects it builds and its time:
    # ResNet-152's pickle runs 31,570.
    pickle_opcodes: int = 1_000_000
    # Members of a zip `.pth`, and the bytes of its central directory, which zipfile reads
    # whole at open: ResNet-152's archive has 938 members in 88 KB.
    zip_entries: int = 100_000
    zip_directory_bytes: int = 16 << 20
    # A safetensors JSON header: ResNet-152's is 85 KB. Python's JSON objects cost ~20x their
    # text, so this also bounds the parse.
    header_bytes: int = 4 << 20


DEFAULT_LIMITS = Limits()

DAMAGED = "the file is damaged or not a weight file; download it again from its source"


def printable(text, limit: int = 120) -> str:
    """`text` (a name or path read from outside) for a one-line message: control characters
    escaped, long text cut; anything but a string or path shows as its type."""
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


class WeightFileError(ValueError):
    """A weight file was refused: one line naming the file, the tensor (when there is one)
    and the reason. Nothing of the file was used."""

    def __init__(self, path, reason: str, tensor=None, advice: str = DAMAGED):
        self.path, self.reason, self.tensor = path, reason, tensor
        where = "" if tensor is None else f"tensor '{printable(tensor, 80)}': "
        super().__init__(
            f"refusing {printable(path, 200)}: {where}{reason}" + (f" ({advice})" if advice else "")
        )


class Budget:
    """Bytes of tensor data a reader has committed to allocate; refuses past `limits`."""

    def __init__(self, path, limits: Limits):
        self.path, self.limits, self.used = path, limits, 0

    def check_tensor(self, nbytes: int, tensor, what: str = "tensor") -> None:
        if nbytes > self.limits.tensor_bytes:
            raise WeightFileError(
                self.path,
                f"its {what} of {nbytes:,} bytes exceeds the cap of "
                f"{self.limits.tensor_bytes:,} bytes per tensor",
                tensor,
            )

    def take(self, nbytes: int, tensor, what: str = "tensor") -> None:
        self.check_tensor(nbytes, tensor, what)
        if self.used + nbytes > self.limits.total_bytes:
            raise WeightFileError(
                self.path,
                f"the file's tensors exceed the cap of {self.limits.total_bytes:,} bytes in all",
                tensor,
            )
        self.used += nbytes


def open_regular(path):
    """`path` opened for binary reading, refused unless it is a regular file: a FIFO would
    block forever and a device such as /dev/zero never ends."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise WeightFileError(path, "no such file", advice="check the path") from None
    except OSError as error:
        raise WeightFileError(path, f"cannot be opened ({error.strerror})", advice="") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WeightFileError(path, "not a regular file", advice="pass the weight file itself")
    return os.fdopen(fd, "rb")


def file_size(file) -> int:
    return os.fstat(file.fileno()).st_size


def read_into(file, array, path, tensor=None) -> None:
    """Fills `array` (already allocated within the caps) from `file`'s current position;
    a short read is a truncated file. Reads in 4 MiB pieces, so no second full-size copy."""
    buffer = memoryview(array.reshape(-1).view("u1"))
    done, total = 0, buffer.nbytes
    while done < total:
        want = min(total - done, 1 << 22)
        got = file.readinto(buffer[done : done + want])
        if not got:
            raise WeightFileError(path, f"data ends after {done:,} of {total:,} bytes", tensor)
        done += got
