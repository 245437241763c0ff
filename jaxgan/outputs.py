"""Where runs write: one writer per workdir (and per dataset build), and every output place
checked before any work.

One writer. Training and `--mode=eval` hold an exclusive lock (`fcntl.flock`) on
`<workdir>/run.lock` for their whole run; a second one on the same workdir is refused in one
line naming the holder's pid, host and start time, which the holder records in the file. The
operating system releases the lock with the process, however it ends (a `kill -9` included),
so a stale file never blocks a rerun. In a multi-process run, whose processes share the
workdir, process 0 takes the lock for all and tells the others whether it got it. A dataset's
preparation is guarded the same way (`exclusive`, in `datasets.open_source`): a second one of
the same records waits for the first and then reads what it prepared.

Outputs checked. `check_writable` is called before the first image is read or the model
restored: the folder exists or can be made, a file can be written there, and no folder sits
where an output file goes.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time

LOCK_FILE = "run.lock"
MAX_LOCK_RECORD_BYTES = 4096  # what a holder records: pid, host, what, since
# Errors of a file system that has no locks (some FUSE mounts): the run goes on, warned.
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class Busy(ValueError):
    """Another process holds the lock; the message (one line) names it."""


def _one_line(text, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _holder(fd: int) -> str:
    """Who holds the lock, from what it recorded (read bounded, any content survived)."""
    try:
        raw = os.pread(fd, MAX_LOCK_RECORD_BYTES, 0)
        record = json.loads(raw.decode("utf-8", "replace"))
    except (OSError, ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        return "another process (it has not recorded which yet)"
    pid, host = _one_line(record.get("pid", "?")), _one_line(record.get("host", "?"))
    since = _one_line(record.get("since", "?"))
    return f"{_one_line(record.get('what', 'a run'))} (pid {pid} on host {host}, since {since})"


class Lock:
    """An exclusive lock on the file `path`, recording `what` holds it."""

    def __init__(self, path: str, what: str):
        self.path, self.what, self.fd = path, what, None

    def acquire(self, wait: bool = False, busy_message=None, on_wait=None) -> "Lock":
        """Takes the lock. Busy (message `busy_message(holder)`) if another process holds it,
        or with `wait`, `on_wait(holder)` and then waits for it. ValueError (one line) if the
        lock file cannot be made or is not a regular file."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ValueError(f"{self.path} is not a regular file (a link); remove it") from None
            raise ValueError(
                f"cannot create the lock file {self.path} ({error.strerror}); the folder must "
                "be writable"
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"{self.path} is not a regular file; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise Busy(busy_message(holder) if busy_message else holder) from None
                if on_wait:
                    on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as error:
                if error.errno not in NO_LOCKS:
                    raise ValueError(f"cannot lock {self.path} ({error.strerror})") from None
                print(
                    f"warning: the file system of {self.path} has no locks ({error.strerror}); "
                    "make sure no other run writes there",
                    file=sys.stderr,
                )
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": self.what,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, it just names no one
            pass
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays, for the next holder
            self.fd = None


def workdir_lock(workdir: str, what: str) -> Lock:
    """`workdir`'s lock, taken (Busy, one line, if another run holds it)."""
    path = os.path.join(workdir, LOCK_FILE)
    return Lock(path, what).acquire(
        busy_message=lambda holder: (
            f"--workdir={workdir} is in use: {holder} holds {path}; wait for it to end or use "
            "another --workdir"
        )
    )


@contextlib.contextmanager
def one_writer(workdir: str, what: str):
    """Holds `workdir`'s lock for the block. With several processes, process 0 takes it for
    all (they share the workdir) and every process stops if it could not."""
    import jax

    lock, problem = None, None
    if jax.process_index() == 0:
        try:
            lock = workdir_lock(workdir, what)
        except ValueError as error:
            problem = error
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        locked = multihost_utils.broadcast_one_to_all(np.int32(problem is None))
        if not int(locked) and problem is None:
            problem = Busy(
                f"process 0 could not take the lock of --workdir={workdir} (another run holds "
                "it, or it cannot be written; process 0 says which)"
            )
    if problem is not None:
        raise problem
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


@contextlib.contextmanager
def exclusive(path: str, what: str, waiting_for: str):
    """Holds the lock file `path` for the block, waiting for another holder to finish first
    (one line on stderr says so): for work that a second process should not redo at the same
    time but can use once done, such as building a dataset."""
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def say(holder):
        print(f"waiting for {waiting_for} to finish: {holder} holds {path}", file=sys.stderr,
              flush=True)  # fmt: skip

    lock = Lock(path, what).acquire(wait=True, on_wait=say)
    try:
        yield
    finally:
        lock.release()


def check_writable(folder: str, files=(), folders=(), flag: str = "--workdir") -> None:
    """Before any work: `folder` (named by `flag` in the messages) exists or can be made and
    takes a file; none of `files` in it is a folder and none of `folders` a file. ValueError,
    one line, naming the path and the fix."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{flag}: {folder} is a file, not a folder; choose another {flag}")
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write_probe_{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
        os.remove(probe)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(
            f"{flag}: a file blocks the path {folder}; choose another {flag}"
        ) from None
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise ValueError(
                f"the disk holding {folder} is full; free space or choose another {flag}"
            ) from None
        raise ValueError(
            f"cannot write to {folder} ({error.strerror or error}); choose a writable {flag}"
        ) from None
    for name in files:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            raise ValueError(
                f"{flag}: {path} is a folder, where a file is to be written; move it or choose "
                f"another {flag}"
            )
    for name in folders:
        path = os.path.join(folder, name)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ValueError(
                f"{flag}: {path} is a file, where a folder is to be written; move it or choose "
                f"another {flag}"
            )
