"""Joining a multi-process run (`--distributed`) in bounded time.

`jax.distributed.initialize` waits for every process to reach the coordinator. Left to itself
it waits minutes in silence when the coordinator's address is wrong or a process never starts,
then aborts from C++ with a stack dump. Here the wait is bounded by `timeout_s` and ends with
one line naming what was waited for: a watchdog thread (the wait happens in C++ with Python's
lock released) prints it and ends the process before JAX's own, later, deadline.
"""

import os
import sys
import threading

NOTE_AFTER_S = 5  # a wait longer than this is announced on stdout
JAX_MARGIN_S = 30  # JAX's own deadline comes this long after ours: ours always ends it


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout_s: int) -> None:  # fmt: skip
    """`jax.distributed.initialize`, ending the process (status 1, one line on stderr) if not
    every process has joined within `timeout_s` seconds; raises ValueError (one line) for a
    run JAX cannot set up (no coordinator given or found)."""
    import jax

    where = (
        f"the coordinator at {coordinator}"
        if coordinator
        else "the coordinator JAX found in the cluster's environment"
    )
    processes = f"{num_processes} processes" if num_processes else "the cluster's processes"
    this = f" (this is process {process_id})" if process_id is not None else ""
    lock, joined = threading.Lock(), threading.Event()

    def watchdog():
        if joined.wait(min(NOTE_AFTER_S, timeout_s)):
            return
        print(f"waiting up to {timeout_s} s for the {processes} to join through {where}",
              flush=True)  # fmt: skip
        if joined.wait(max(timeout_s - NOTE_AFTER_S, 0)):
            return
        with lock:
            if joined.is_set():
                return
            sys.stdout.flush()
            print(
                f"error: not all {processes} joined through {where} within {timeout_s} s{this}; "
                "start every process with the same --coordinator_address and --num_processes "
                "(and its own --process_id), check that process 0's host and port are "
                "reachable, or raise --distributed_timeout",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)

    threading.Thread(target=watchdog, name="distributed-timeout", daemon=True).start()
    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=timeout_s + JAX_MARGIN_S,
        )
    except (ValueError, RuntimeError) as error:
        said = " ".join(str(error).split()).rstrip(".")
        raise ValueError(
            f"--distributed: {said}; pass --coordinator_address, --num_processes and "
            "--process_id, or run under SLURM, Open MPI or on a TPU pod, where JAX finds them"
        ) from None
    finally:
        with lock:
            joined.set()
