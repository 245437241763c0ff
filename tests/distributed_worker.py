"""One process of the multi-process test (tests/test_distributed.py), run as a script:

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR DATA_DIR

With NUM_PROCESSES > 1 it joins the others through `jax.distributed.initialize` (coordinator
on localhost:PORT); each process sees the CPU devices XLA_FLAGS gives it. It trains the
tiny config through `train.train_and_evaluate`, as `python -m jaxgan.main --distributed`
does, then process 0 writes the final state's arrays to WORKDIR/final_state.npz.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import tiny_run  # noqa: E402  (tests/, the script's own folder)


def tiny_config(data_dir):
    """The loop tests' tiny run, saving at each phase's end only, evaluating in two batches."""
    return tiny_run.tiny_config(data_dir, eval_batch_size=32, checkpoint_every=2)


def main(process_id, num_processes, port, workdir, data_dir):
    import jax

    if num_processes > 1:
        jax.distributed.initialize(
            f"localhost:{port}", num_processes=num_processes, process_id=process_id
        )
    import numpy as np

    from jaxgan import train

    train.train_and_evaluate(tiny_config(data_dir), workdir)
    run = train.Run(tiny_config(data_dir), workdir)
    run.restore()
    state = jax.device_get(run.state)  # replicated: every process holds all of it
    run.checkpointer.close()
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_flatten_with_path(state)[0]
        np.savez(
            os.path.join(workdir, "final_state.npz"),
            **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves},
        )


if __name__ == "__main__":
    pid, count, port, workdir, data_dir = sys.argv[1:6]
    main(int(pid), int(count), int(port), workdir, data_dir)
