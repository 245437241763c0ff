"""The train state: both networks, both optimiser states, the frozen f_ext, counters, RNG;
and the optimiser that updates them."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

Variables = dict[str, Any]

# method.feature_extractor: f_ext is a "snapshot" of G taken when the adversarial phase starts,
# or the "pretrained" ImageNet backbone (model.pretrained).
FEATURE_EXTRACTORS = ("snapshot", "pretrained")


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint must hold to continue training exactly.

    step: generator updates so far, over both phases (the supervised phase is steps
      [0, supervised_steps)).
    critic_updates: critic updates so far.
    g_params / g_batch_stats / g_opt_state: the generator G and its Adam state.
    critic_params / critic_opt_state: the critic D and its Adam state.
    f_variables: the frozen feature extractor f_ext ({'params', 'batch_stats'} of G's
      backbone), a snapshot taken when the adversarial phase starts (or the pretrained one).
    f_ext_taken: whether `f_variables` is what the adversarial phase must use (the snapshot
      has been taken, or f_ext is the pretrained backbone). Recorded in the state, so a run
      resumed anywhere in the adversarial phase knows whether the snapshot is still due.
    rng: raw key data of the run's base key; steps fold counters into it.
    g_ema: the exponential moving average of G's variables ({'params', 'batch_stats'}) when
      `model.ema_decay` > 0, updated with every generator update; {} when off (nothing is
      stored or computed, so a run without EMA is exactly what it was before EMA existed).
    """

    step: jax.Array
    critic_updates: jax.Array
    g_params: Any
    g_batch_stats: Any
    g_opt_state: optax.OptState
    critic_params: Any
    critic_opt_state: optax.OptState
    f_variables: Variables
    f_ext_taken: jax.Array
    rng: jax.Array
    g_ema: Variables

    @property
    def g_variables(self) -> Variables:
        return {"params": self.g_params, "batch_stats": self.g_batch_stats}

    def key(self) -> jax.Array:
        return jax.random.wrap_key_data(self.rng)


def make_optimizer(learning_rate: float, optim_config) -> optax.GradientTransformation:
    """Adam from `config.optim` (b1, b2), AdamW when `optim_config.weight_decay` is set: the
    optimiser of both networks, as the training loop and the step benchmark build it."""
    if optim_config.weight_decay:
        return optax.adamw(
            learning_rate, optim_config.b1, optim_config.b2, weight_decay=optim_config.weight_decay
        )
    return optax.adam(learning_rate, optim_config.b1, optim_config.b2)


def copy_tree(tree):
    """A copy with fresh buffers, so that donating one tree never invalidates the other."""
    return jax.tree.map(jnp.copy, tree)


def snapshot_feature_extractor(state: TrainState, from_ema: bool = False) -> TrainState:
    """f_ext := G as it is now (taken when the adversarial phase starts), or G's
    moving average with `from_ema` (`method.snapshot_ema`)."""
    if from_ema and not state.g_ema:
        raise ValueError("method.snapshot_ema needs model.ema_decay > 0")
    source = state.g_ema if from_ema else state.g_variables
    return state.replace(f_variables=copy_tree(source), f_ext_taken=jnp.ones((), jnp.bool_))


def create_train_state(
    rng: jax.Array,
    g_variables: Variables,
    critic_params: Any,
    generator_tx,
    critic_tx,
    f_ext_taken: bool = False,
    ema: bool = False,
) -> TrainState:
    """A fresh state; f_ext starts as a copy of G's initial (possibly pretrained) variables.
    `f_ext_taken`: True when that copy is the f_ext to use (the pretrained backbone), False
    when a snapshot must replace it when the adversarial phase starts. `ema`: keep a moving
    average of G's variables, starting from these."""
    g_params = g_variables["params"]
    batch_stats = g_variables.get("batch_stats", {})
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        critic_updates=jnp.zeros((), jnp.int32),
        g_params=g_params,
        g_batch_stats=batch_stats,
        g_opt_state=generator_tx.init(g_params),
        critic_params=critic_params,
        critic_opt_state=critic_tx.init(critic_params),
        f_variables=copy_tree({"params": g_params, "batch_stats": batch_stats}),
        f_ext_taken=jnp.asarray(f_ext_taken, jnp.bool_),
        rng=jax.random.key_data(rng),
        g_ema=copy_tree({"params": g_params, "batch_stats": batch_stats}) if ema else {},
    )
