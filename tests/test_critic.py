import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models.critic import Critic


def param_shapes(params):
    return {name: {k: v.shape for k, v in layer.items()} for name, layer in params.items()}


def test_paper_architecture():
    d = Critic()  # defaults: the paper's 256 / 8 x 512 / 1
    params = d.init(jax.random.key(0), jnp.zeros((2, 80)), jnp.zeros((2, 2048)))["params"]
    shapes = param_shapes(params)
    assert shapes["label_embed"]["kernel"] == (80, 256)
    assert shapes["feature_embed"]["kernel"] == (2048, 256)
    assert shapes["hidden_0"]["kernel"] == (512, 512)  # the two 256-d embeddings, concatenated
    assert [f"hidden_{i}" for i in range(8)] == sorted(k for k in shapes if k.startswith("hidden"))
    assert shapes["score"]["kernel"] == (512, 1)
    assert set(shapes) == {"label_embed", "feature_embed", "score"} | {
        f"hidden_{i}" for i in range(8)
    }


def test_scores_equal_the_layers_written_out():
    """z → Dense, y → Dense, concatenate [z, y], leaky-ReLU(0.2) hidden layers, a linear score."""
    d = Critic(embed_dim=8, hidden_dim=16, num_layers=3)
    labels = (jax.random.uniform(jax.random.key(5), (4, 6)) < 0.5).astype(jnp.float32)
    features = jax.random.normal(jax.random.key(6), (4, 7))
    params = jax.tree.map(np.asarray, d.init(jax.random.key(7), labels, features)["params"])

    def dense(name, x):
        return x @ params[name]["kernel"] + params[name]["bias"]

    h = np.concatenate([dense("feature_embed", features), dense("label_embed", labels)], -1)
    for i in range(3):
        pre = dense(f"hidden_{i}", h)
        h = np.where(pre > 0, pre, 0.2 * pre)
    expected = dense("score", h)[:, 0]
    np.testing.assert_allclose(
        d.apply({"params": params}, labels, features), expected, rtol=1e-5, atol=1e-6
    )


def test_scores_are_unbounded_per_example_and_depend_on_both_inputs():
    d = Critic(embed_dim=8, hidden_dim=16, num_layers=2)
    labels = jnp.eye(4)[:3]
    features = jax.random.normal(jax.random.key(1), (3, 5))
    params = d.init(jax.random.key(2), labels, features)
    scores = d.apply(params, labels, features)
    assert scores.shape == (3,)
    # No batch statistics: an example's score does not depend on the rest of the batch.
    np.testing.assert_allclose(d.apply(params, labels[:1], features[:1]), scores[:1], rtol=1e-6)
    assert not np.allclose(d.apply(params, labels, features * 2), scores)
    assert not np.allclose(d.apply(params, 1 - labels, features), scores)
    big = d.apply(jax.tree.map(lambda p: p * 3, params), labels, features)
    assert np.abs(big).max() > 1  # a critic, not a probability


def test_unconditional_critic_ignores_the_image():
    d = Critic(embed_dim=8, hidden_dim=16, num_layers=2, conditional=False)
    labels = jnp.eye(4)[:3]
    params = d.init(jax.random.key(3), labels)
    assert "feature_embed" not in params["params"]
    np.testing.assert_array_equal(
        d.apply(params, labels, jnp.ones((3, 5))), d.apply(params, labels, None)
    )


def test_conditional_critic_needs_features():
    d = Critic(embed_dim=8, hidden_dim=16, num_layers=2)
    with pytest.raises(ValueError, match="needs image features"):
        d.init(jax.random.key(4), jnp.zeros((1, 4)))
