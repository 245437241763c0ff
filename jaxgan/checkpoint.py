"""Orbax checkpoints of the whole train state, with metadata that says what made them.

A checkpoint holds both networks, both optimiser states, the frozen f_ext, the step counters
and the base RNG key; the data position is derived from the step counters (see
`input_pipeline`), so nothing else is needed to continue exactly. The metadata records the
model and label count so that a workdir is never silently restored into another model.
"""

import os

import flax.serialization
import jax
import orbax.checkpoint as ocp

from jaxgan.state import TrainState

# The fields whose change makes an old checkpoint unusable.
IDENTITY_FIELDS = ("model", "model_width", "num_labels", "data", "conditional")


def metadata(config, num_labels: int) -> dict:
    return {
        "model": config.model.name,
        "model_width": config.model.width,
        "num_labels": num_labels,
        "data": config.data.name,
        "conditional": config.method.conditional,
    }


class Checkpointer:
    """Saves and restores `TrainState`s under `<workdir>/checkpoints`."""

    def __init__(self, workdir: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, state: TrainState, meta: dict, metrics: dict | None = None) -> None:
        step = int(jax.device_get(state.step))
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                meta=ocp.args.JsonSave({**meta, "metrics": metrics or {}}),
            ),
            force=True,
        )

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def restore(self, target: TrainState, meta: dict, step: int | None = None) -> TrainState:
        """The state saved at `step` (default: latest), laid out like `target`.

        Raises ValueError, naming the difference, when the checkpoint was made for another
        model, label count, dataset or critic kind than `meta` describes.
        """
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise ValueError(
                f"no checkpoint at step {step} in {self.directory}; have {self.all_steps()}"
            )
        saved = self.read_meta(step)
        for field in IDENTITY_FIELDS:
            if saved.get(field) != meta.get(field):
                raise ValueError(
                    f"the checkpoint in {self.directory} was made with {field}="
                    f"{saved.get(field)!r} but the config asks for {meta.get(field)!r}; "
                    "use a fresh --workdir or the config it was trained with"
                )
        abstract = jax.tree.map(
            ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(target)
        )
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
        return flax.serialization.from_state_dict(target, restored)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
