"""The step functions compiled for a device mesh.

The one place that decides their shardings and buffer donation: the trainer runs what
`compile_steps` returns, and the test that compares 1 and 4 devices runs the same thing.
"""

import concurrent.futures
import dataclasses
import functools
import time
from collections.abc import Callable

import jax
from jax.sharding import Mesh, NamedSharding

from jaxgan import parallel, runtime, steps


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
    """The jitted steps and the shardings their inputs must have.

    supervised(state, batch) -> (state, metrics); adversarial(state, critic_batches,
    generator_batch) -> (state, metrics). The state is replicated and donated (its old buffers
    are reused); batches are split over 'data'. (Evaluation compiles G alone:
    `evaluate.Classifier`.)
    """

    supervised: Callable
    adversarial: Callable
    replicated: NamedSharding
    data: NamedSharding
    stacked: NamedSharding  # critic batches: [n_critic, B, ...], B split over 'data'


def compile_steps(ctx: steps.StepContext, mesh: Mesh) -> CompiledSteps:
    repl, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    stacked = parallel.batch_sharded(mesh, leading_axes=1)
    options = runtime.compiler_options(mesh.devices.flat[0].platform)
    donating = functools.partial(jax.jit, donate_argnums=0, compiler_options=options)
    return CompiledSteps(
        supervised=donating(
            functools.partial(steps.supervised_step, ctx=ctx),
            in_shardings=(repl, data),
            out_shardings=(repl, repl),
        ),
        adversarial=donating(
            functools.partial(steps.adversarial_step, ctx=ctx),
            in_shardings=(repl, stacked, data),
            out_shardings=(repl, repl),
        ),
        replicated=repl,
        data=data,
        stacked=stacked,
    )


def shapes_of(tree):
    """Shapes, dtypes and shardings of global arrays: what `jit(...).lower` takes."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def adversarial_shapes(steps_: CompiledSteps, state, batch: dict, n_critic: int, kinds):
    """The adversarial update's arguments' shapes, from the state and a supervised batch (the
    update reads batches of the same kind: per critic update one per pair kind, stacked over
    `n_critic`, then the generator's)."""

    def stacked(x):
        return jax.ShapeDtypeStruct((n_critic, *x.shape), x.dtype, sharding=steps_.stacked)

    critic = {kind: jax.tree.map(stacked, batch) for kind in kinds}
    return shapes_of(state), critic, shapes_of(batch)


class CompiledAhead:
    """A jitted step compiled from its arguments' shapes in a background thread, so that the
    loop does not stop for it when it is first called (the adversarial update is compiled
    while the supervised phase runs). Calling it waits for the compilation if unfinished."""

    def __init__(self, jitted: Callable, *shapes):
        self.started = time.perf_counter()
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile-ahead")
        self._compiled = pool.submit(lambda: jitted.lower(*shapes).compile())
        pool.shutdown(wait=False)

    def done(self) -> bool:
        return self._compiled.done()

    def __call__(self, *args):
        return self._compiled.result()(*args)
