"""FLOPs of a JAX function counted from its jaxpr: the same number on every backend.

XLA's cost analysis counts the program after the backend has lowered it, and on a GPU the
convolutions handed to cuDNN are custom calls it does not count (a ResNet-101 BCE step of about
1,500 GFLOP read as 19 GFLOP there). This module counts the program before any backend sees
it: the jaxpr (`jax.make_jaxpr`). It counts the two primitives that hold a network's
arithmetic, `conv_general_dilated` and `dot_general`, as 2 FLOPs per multiply-add, and nothing
else (element-wise ops, reductions, BatchNorm, the optimiser's update: a few per cent of a
ResNet's FLOPs, and memory-bound anyway).

What is counted:

- `dot_general`: 2 × (output elements) × (size of the contracted dimensions).
- `conv_general_dilated`: 2 × (output batch × output features) × (the kernel's input features,
  which are already per group: `feature_group_count` and `batch_group_count` need nothing
  more) × (the (output position, kernel tap) pairs of each spatial dimension, multiplied over
  the dimensions). Strides, window (rhs) dilation and padding are read from the output shape:
  every output position meets every kernel tap, padding included, as the usual
  k²·Cin·Cout·H·W count of a network does. Input (lhs) dilation, which is how a gradient
  expresses a transposed convolution, is the exception: a tap that falls between two dilated
  input pixels multiplies an inserted zero, and no implementation computes it, so it is not
  counted. With that rule the input gradient and the kernel gradient of a convolution with
  'SAME'-style padding (every layer of the project's ResNets and VGG) count exactly what its
  forward counts, and a training step counts 3 × the forward, less the input gradient of the
  first layer, which no step computes (ResNet-18: 2.93 ×). The input gradient of an unpadded
  ('VALID') convolution is a convolution padded by the kernel's size less one, whose padded
  taps count: it counts more than its forward (Inception-v3's step: 3.01 × its forward).
  XLA counts neither padded taps nor inserted zeros: on unpadded convolutions, their kernel
  gradients and dots the two counts agree exactly (tests/test_flops.py).
- Sub-jaxprs, recursively: `jit`/`pjit`, `closed_call`, `remat`/`checkpoint`,
  `custom_jvp_call` and `custom_vjp_call` (their primal computation: inside a gradient the
  rules' own computations appear in the traced program and are counted there), `scan` × its
  length, `while` × its trip count where the jaxpr fixes it (a counter compared with a constant
  bound and stepped by a constant, started from a constant: `lax.while_loop` with literal
  bounds) and otherwise once, noted in `Count.unknown_trip_counts`; `cond`: the most expensive
  branch (an upper bound: which branch runs is known only when it runs); `shard_map` and
  `pmap` × the number of shards their body runs on (the body sees one shard's shapes). Any other
  primitive holding jaxprs is counted as one call of each (and noted in `Count.unknown`).

Only what the outputs need is counted (JAX's dead-code elimination first, as XLA's compiler
does). Counts are of the global computation: a function traced on global (sharded) arrays counts all
devices' FLOPs together.
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.extend.core as jex

# Primitives whose sub-jaxprs run once per call of the primitive (names vary across versions).
_CALLS = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "remat",
        "remat2",
        "checkpoint",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "custom_lin",
    }
)


@dataclasses.dataclass
class Count:
    """FLOPs (2 per multiply-add) by primitive, and what the count could not pin down."""

    by_primitive: dict[str, float] = dataclasses.field(default_factory=dict)
    unknown_trip_counts: int = 0  # while loops counted once: their trip count is not static
    unknown: set[str] = dataclasses.field(default_factory=set)  # other primitives with jaxprs

    @property
    def flops(self) -> float:
        return sum(self.by_primitive.values())

    def add(self, other: "Count", times: float = 1.0) -> None:
        for name, value in other.by_primitive.items():
            self.by_primitive[name] = self.by_primitive.get(name, 0.0) + times * value
        self.unknown_trip_counts += other.unknown_trip_counts
        self.unknown |= other.unknown


def dot_general_flops(lhs_shape, rhs_shape, out_shape, dimension_numbers) -> float:
    """2 × output elements × contracted size."""
    del rhs_shape
    (lhs_contract, _), _ = dimension_numbers
    return 2.0 * math.prod(out_shape) * math.prod(lhs_shape[d] for d in lhs_contract)


def _pairs(out: int, taps: int, stride: int, rhs_dilation: int, lhs_dilation: int, low: int):
    """(output position, kernel tap) pairs of one spatial dimension that multiply a pixel of
    the input or its padding, not a zero inserted by input dilation."""
    if lhs_dilation == 1:
        return out * taps
    return sum(
        1
        for o in range(out)
        for k in range(taps)
        if (o * stride + k * rhs_dilation - low) % lhs_dilation == 0
    )


def conv_flops(
    lhs_shape,
    rhs_shape,
    out_shape,
    *,
    dimension_numbers,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    **unused,
) -> float:
    """2 × output batch × output features × kernel input features × tap pairs (see above)."""
    del lhs_shape, unused
    _, rhs_spec, out_spec = dimension_numbers
    out_batch, out_features = out_shape[out_spec[0]], out_shape[out_spec[1]]
    kernel_in = rhs_shape[rhs_spec[1]]  # per group already
    pairs = math.prod(
        _pairs(out_shape[o], rhs_shape[r], s, rd, ld, low)
        for o, r, s, rd, ld, (low, _) in zip(
            out_spec[2:],
            rhs_spec[2:],
            window_strides,
            rhs_dilation,
            lhs_dilation,
            padding,
            strict=True,
        )
    )
    return 2.0 * out_batch * out_features * kernel_in * pairs


def _shape(var) -> tuple:
    return tuple(var.aval.shape)


def _jaxpr(value):
    """The Jaxpr of a Jaxpr or ClosedJaxpr param."""
    return value.jaxpr if isinstance(value, jex.ClosedJaxpr) else value


def _literal(var, consts: dict):
    """The constant value of a jaxpr input, or None where it is not one."""
    if isinstance(var, jex.Literal):
        return var.val
    return consts.get(var)


def _closed_consts(closed) -> dict:
    if isinstance(closed, jex.ClosedJaxpr):
        return dict(zip(closed.jaxpr.constvars, closed.consts, strict=True))
    return {}


def while_trip_count(eqn) -> int | None:
    """The trip count of a `while` whose condition is `counter < bound` with the bound, the
    counter's start and its step in the body all constants; None otherwise."""
    params = eqn.params
    cond, body = params["cond_jaxpr"], params["body_jaxpr"]
    cond_nconsts, body_nconsts = params["cond_nconsts"], params["body_nconsts"]
    cond_jaxpr, body_jaxpr = _jaxpr(cond), _jaxpr(body)
    if len(cond_jaxpr.eqns) != 1 or cond_jaxpr.eqns[0].primitive.name != "lt":
        return None
    counter, bound_var = cond_jaxpr.eqns[0].invars
    carries = cond_jaxpr.invars[cond_nconsts:]
    if counter not in carries:
        return None
    index = carries.index(counter)
    outer_consts = dict(
        zip(cond_jaxpr.invars[:cond_nconsts], eqn.invars[:cond_nconsts], strict=True)
    )
    bound = _literal(bound_var, _closed_consts(cond))
    if bound is None and bound_var in outer_consts:
        bound = _literal(outer_consts[bound_var], {})
    start = _literal(eqn.invars[cond_nconsts + body_nconsts + index], {})
    body_in = body_jaxpr.invars[body_nconsts + index]
    body_out = body_jaxpr.outvars[index]
    step = None
    for body_eqn in body_jaxpr.eqns:
        if body_eqn.outvars == [body_out] and body_eqn.primitive.name == "add":
            a, b = body_eqn.invars
            if a is body_in:
                step = _literal(b, _closed_consts(body))
            elif b is body_in:
                step = _literal(a, _closed_consts(body))
    if bound is None or start is None or step is None or int(step) <= 0:
        return None
    return max(0, -(-(int(bound) - int(start)) // int(step)))


def _shards(eqn) -> int:
    """How many shards a shard_map or pmap body runs on."""
    params = eqn.params
    if "axis_size" in params:  # xla_pmap
        return int(params["axis_size"])
    mesh = params["mesh"]
    names = None
    for key in ("newly_manual_axes", "manual_axes", "axis_names"):
        if params.get(key) is not None:
            names = params[key]
            break
    if names is None:
        names = mesh.axis_names
    return math.prod(dict(mesh.shape)[name] for name in names)


def count_jaxpr(jaxpr) -> Count:
    """The Count of a Jaxpr or ClosedJaxpr."""
    total = Count()
    for eqn in _jaxpr(jaxpr).eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            flops = dot_general_flops(
                _shape(eqn.invars[0]),
                _shape(eqn.invars[1]),
                _shape(eqn.outvars[0]),
                eqn.params["dimension_numbers"],
            )
            total.add(Count({name: flops}))
        elif name == "conv_general_dilated":
            flops = conv_flops(
                _shape(eqn.invars[0]),
                _shape(eqn.invars[1]),
                _shape(eqn.outvars[0]),
                **eqn.params,
            )
            total.add(Count({name: flops}))
        elif name == "scan":
            total.add(count_jaxpr(eqn.params["jaxpr"]), eqn.params["length"])
        elif name == "while":
            trips = while_trip_count(eqn)
            if trips is None:
                total.unknown_trip_counts += 1
                trips = 1
            total.add(count_jaxpr(eqn.params["body_jaxpr"]), trips)
            total.add(count_jaxpr(eqn.params["cond_jaxpr"]), trips + 1)
        elif name == "cond":
            branches = [count_jaxpr(b) for b in eqn.params["branches"]]
            total.add(max(branches, key=lambda c: c.flops))
        elif name in ("shard_map", "xla_pmap"):
            for sub in jex.jaxprs_in_params(eqn.params):
                total.add(count_jaxpr(sub), _shards(eqn))
        else:
            subs = list(jex.jaxprs_in_params(eqn.params))
            if subs and name not in _CALLS:
                total.unknown.add(name)
            for sub in subs:
                total.add(count_jaxpr(sub))
    return total


def live(closed: jex.ClosedJaxpr) -> jex.Jaxpr:
    """The jaxpr without the equations none of its outputs needs, as XLA drops them (the
    forward of a layer whose value the gradient does not read, say). Through JAX's own
    dead-code elimination (not public API: without it, every equation counts)."""
    try:
        from jax._src.interpreters import partial_eval as pe

        jaxpr, _, _ = pe.dce_jaxpr_consts(
            closed.jaxpr, [True] * len(closed.jaxpr.outvars), instantiate=True
        )
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another JAX
        return closed.jaxpr
    return jaxpr


def trace(fn: Callable, *args, **kwargs) -> jex.ClosedJaxpr:
    """The jaxpr of `fn(*args, **kwargs)`. A `jax.jit`-wrapped function is traced as itself
    (`.trace`), so the compiled steps count as they are, compiler options and all (which
    `jax.make_jaxpr` refuses on a nested jit)."""
    if hasattr(fn, "trace"):
        return fn.trace(*args, **kwargs).jaxpr
    return jax.make_jaxpr(fn)(*args, **kwargs)


def count(fn: Callable, *args, **kwargs) -> Count:
    """Traces `fn(*args, **kwargs)` (arrays or `jax.ShapeDtypeStruct`s; nothing runs) and
    counts the FLOPs of what its outputs need."""
    return count_jaxpr(live(trace(fn, *args, **kwargs)))


def flops(fn: Callable, *args, **kwargs) -> float:
    """FLOPs (2 per multiply-add) of the convolutions and matrix products of `fn(*args)`."""
    return count(fn, *args, **kwargs).flops
