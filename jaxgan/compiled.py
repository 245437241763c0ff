"""The step functions compiled for a device mesh.

The one place that decides their shardings and buffer donation: the trainer runs what
`compile_steps` returns, and the test that compares 1 and 4 devices runs the same thing.
"""

import dataclasses
import functools
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
