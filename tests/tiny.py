"""Tiny models, states and batches shared by the tests (8 px images, 5 labels).

The tiny state is built so that reading the wrong variables shows: f_ext is another network
than G (its own initialisation, like a pretrained backbone), and G's running BatchNorm
statistics are far from what a training-mode pass measures on a batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import evaluate, steps
from jaxgan.base_config import get_base_config
from jaxgan.models.critic import Critic
from jaxgan.models.resnet import resnet_small
from jaxgan.state import create_train_state

L, SIZE, BATCH, N_CRITIC = 5, 8, 8, 3
LEARNING_RATE = 1e-2


def make_context(optimizer="adam", **method):
    """A StepContext over a tiny G and D. optimizer="sgd" makes an update `−lr · gradient`, so
    a test can read the gradient a step used from the parameters it changed."""
    generator = resnet_small(num_labels=L, width=4)
    critic = Critic(
        embed_dim=8, hidden_dim=16, num_layers=2, conditional=method.pop("conditional", True)
    )
    make_tx = {"adam": optax.adam, "sgd": optax.sgd}[optimizer]
    return steps.StepContext(
        generator, critic, make_tx(LEARNING_RATE), make_tx(LEARNING_RATE), **method
    )


def _shifted_statistics(batch_stats, key):
    """Running means and variances unlike a fresh network's zeros and ones."""
    leaves, treedef = jax.tree.flatten_with_path(batch_stats)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys, strict=True):
        noise = jax.random.uniform(k, leaf.shape, minval=0.5, maxval=1.5)
        out.append(noise * 2.0 if path[-1].key == "var" else noise - 1.0)
    return jax.tree.unflatten(treedef, out)


def make_state(ctx, seed=0, ema=None):
    """`ema`: keep G's moving average (default: when the context's ema_decay is on)."""
    ema = ctx.ema_decay > 0 if ema is None else ema
    g_key, f_key, critic_key, run_key, stats_key = jax.random.split(jax.random.key(seed), 5)
    image = jnp.zeros((1, SIZE, SIZE, 3))
    g_vars = ctx.generator.init(g_key, image, train=False)
    g_vars = {**g_vars, "batch_stats": _shifted_statistics(g_vars["batch_stats"], stats_key)}
    f_vars = ctx.generator.init(f_key, image, train=False)
    features = ctx.generator.apply(f_vars, image, train=False, features_only=True)
    critic_params = ctx.critic.init(critic_key, jnp.zeros((1, L)), features)["params"]
    state = create_train_state(
        run_key, g_vars, critic_params, ctx.generator_tx, ctx.critic_tx, ema=ema
    )
    return state.replace(f_variables=f_vars)


def make_batch(seed, leading=()):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(*leading, BATCH, SIZE, SIZE, 3)).astype(np.float32),
        "labels": (rng.random((*leading, BATCH, L)) < 0.4).astype(np.float32),
    }


def critic_batches(seed, kinds=("matched", "generated", "mismatched")):
    return {kind: make_batch(seed + i, (N_CRITIC,)) for i, kind in enumerate(kinds)}


def classifier(state, mesh) -> evaluate.Classifier:
    """Evaluation's compiled G (`evaluate.Classifier`) on the tiny G's evaluation variables
    of `state`, over `mesh`: what `--mode=eval` and prediction run."""
    config = get_base_config()
    config.model.name, config.model.width = "resnet_small", 4
    config.data.image_size = SIZE
    config.schedule.eval_batch_size = BATCH
    names = [str(i) for i in range(L)]
    return evaluate.Classifier(config, names, mesh, variables=evaluate.eval_variables(state))
