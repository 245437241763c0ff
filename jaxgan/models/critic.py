"""The critic D(y, x) of paper §4.1: a WGAN critic on (label set, image features) pairs."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class Critic(nn.Module):
    """z → Dense(embed), y → Dense(embed), concatenate, num_layers × [Dense(hidden) + leaky
    ReLU], Dense(1). No sigmoid (a Wasserstein critic) and no batch norm (the gradient
    penalty is per example). With `conditional=False` it scores the label set alone, D(y).
    """

    embed_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 8
    negative_slope: float = 0.2
    conditional: bool = True

    @nn.compact
    def __call__(self, labels: jax.Array, features: jax.Array | None = None) -> jax.Array:
        h = nn.Dense(self.embed_dim, name="label_embed")(labels)
        if self.conditional:
            if features is None:
                raise ValueError("a conditional critic needs image features")
            z = nn.Dense(self.embed_dim, name="feature_embed")(features)
            h = jnp.concatenate([z, h], axis=-1)
        for i in range(self.num_layers):
            h = nn.leaky_relu(nn.Dense(self.hidden_dim, name=f"hidden_{i}")(h), self.negative_slope)
        return nn.Dense(1, name="score")(h)[..., 0]


def create_critic(config) -> Critic:
    return Critic(
        embed_dim=config.critic.embed_dim,
        hidden_dim=config.critic.hidden_dim,
        num_layers=config.critic.num_layers,
        negative_slope=config.critic.negative_slope,
        conditional=config.method.conditional,
    )
