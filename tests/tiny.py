"""Tiny models, states and batches shared by the tests (8 px images, 5 labels)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import steps
from jaxgan.models.discriminator import Discriminator
from jaxgan.models.resnet import resnet_small
from jaxgan.state import create_train_state, snapshot_feature_extractor

L, SIZE, BATCH, N_CRITIC = 5, 8, 8, 3


def make_context(**method):
    generator = resnet_small(num_labels=L, width=4)
    discriminator = Discriminator(
        embed_dim=8, hidden_dim=16, num_layers=2, conditional=method.pop("conditional", True)
    )
    return steps.StepContext(generator, discriminator, optax.adam(1e-2), optax.adam(1e-2), **method)


def make_state(ctx, seed=0):
    g_key, d_key, run_key = jax.random.split(jax.random.key(seed), 3)
    image = jnp.zeros((1, SIZE, SIZE, 3))
    g_vars = ctx.generator.init(g_key, image, train=False)
    features = ctx.generator.apply(g_vars, image, train=False, features_only=True)
    d_params = ctx.discriminator.init(d_key, jnp.zeros((1, L)), features)["params"]
    state = create_train_state(run_key, g_vars, d_params, ctx.g_tx, ctx.d_tx)
    return snapshot_feature_extractor(state)


def make_batch(seed, leading=()):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(*leading, BATCH, SIZE, SIZE, 3)).astype(np.float32),
        "labels": (rng.random((*leading, BATCH, L)) < 0.4).astype(np.float32),
    }


def critic_batches(seed):
    return {
        kind: make_batch(seed + i, (N_CRITIC,))
        for i, kind in enumerate(("matched", "generated", "mismatched"))
    }
