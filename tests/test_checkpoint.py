import chex
import jax
import numpy as np
import pytest
from tiny import make_context, make_state

from jaxgan.checkpoint import Checkpointer

META = {
    "model": "resnet_small",
    "model_width": 4,
    "num_labels": 5,
    "data": "digit_scenes",
    "conditional": True,
}


def test_round_trip_restores_every_field(tmp_path):
    ctx = make_context()
    state = make_state(ctx, seed=0).replace(step=np.int32(7), d_step=np.int32(21))
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(state, META)
    checkpointer.wait()

    fresh = make_state(ctx, seed=1)  # other values, same structure
    pairs = zip(jax.tree.leaves(fresh), jax.tree.leaves(state), strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)
    restored = Checkpointer(str(tmp_path)).restore(fresh, META)
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(state))
    assert int(restored.step) == 7 and int(restored.d_step) == 21


def test_keeps_only_the_newest(tmp_path):
    ctx = make_context()
    checkpointer = Checkpointer(str(tmp_path), max_to_keep=2)
    for step in (1, 2, 3):
        checkpointer.save(make_state(ctx).replace(step=np.int32(step)), META)
    checkpointer.wait()
    assert checkpointer.all_steps() == [2, 3] and checkpointer.latest_step() == 3


@pytest.mark.parametrize("field,value", [("model", "resnet50"), ("num_labels", 80)])
def test_refuses_a_checkpoint_of_another_model(tmp_path, field, value):
    ctx = make_context()
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(make_state(ctx), META)
    checkpointer.wait()
    with pytest.raises(ValueError, match=f"{field}=.*fresh --workdir"):
        checkpointer.restore(make_state(ctx), {**META, field: value})


def test_missing_step_is_a_clear_error(tmp_path):
    ctx = make_context()
    with pytest.raises(ValueError, match="no checkpoint at step 5"):
        Checkpointer(str(tmp_path)).restore(make_state(ctx), META, step=5)
