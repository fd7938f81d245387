"""Many configurations of one task trained together under `jax.vmap`: a sweep.

Configurations that share every shape (the same architecture) but differ in seeds, learning rates,
the choice of SGD or Adam, dropout rates or loss weights become the members of one stacked
`PairState`: the task is built with `sweepable=True`, so those values are arrays in the state
(`schedules.sweepable_optimizer`, `PairState.hparams`), and one compiled step, the loop's own
`steps.train_step` under `vmap`, trains every member on the same data batch with its own random
numbers. Small models that leave most of a CPU or an accelerator idle one at a time fill it
together.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.training import steps as steps_lib
from uncertainty_jax.training.state import PairState


@dataclasses.dataclass(frozen=True)
class Member:
  """One configuration of a sweep: its seed, optimizers and the hyperparameters in `hparams`.

  Attributes:
    seed: initialisation and the member's random numbers (latents, dropout).
    optimizers: `{'g': (name, learning_rate), 'd': (name, learning_rate)}`, name 'sgd' or 'adam'.
    hparams: values for the keys of the task's `PairState.hparams` (e.g. `dropout_d`,
      `lambda_pt`); keys left out keep the config's value.
  """

  seed: int
  optimizers: dict
  hparams: dict = dataclasses.field(default_factory=dict)


def _stack(values: Sequence[Any], dtype) -> jax.Array:
  return jnp.asarray(np.asarray(values), dtype)


def init_members(task, members: Sequence[Member]) -> PairState:
  """A stacked `PairState` (leading axis = member) for a task built with `sweepable=True`."""
  if not members:
    raise ValueError("members: a sweep needs at least one member")
  keys = jnp.stack([jax.random.split(jax.random.PRNGKey(m.seed))[0] for m in members])
  state = jax.jit(jax.vmap(task.init_state))(keys)
  nets = {}
  for side, name in (("g", "generator"), ("d", "discriminator")):
    net = getattr(state, name)
    if net is None:
      continue
    opt = net.opt_state
    lrs = [m.optimizers[side][1] for m in members]
    adams = [m.optimizers[side][0] == "adam" for m in members]
    for m in members:
      if m.optimizers[side][0] not in ("sgd", "adam"):
        raise ValueError(f"optimizers: unknown optimizer {m.optimizers[side][0]!r} for side "
                         f"{side!r}; valid: ['sgd', 'adam']")
    opt = opt._replace(learning_rate=_stack(lrs, jnp.float32), use_adam=_stack(adams, bool))
    nets[name] = net.replace(opt_state=opt)
  hparams = dict(state.hparams or {})
  for name in hparams:
    hparams[name] = _stack([m.hparams.get(name, float(hparams[name][0])) for m in members],
                           hparams[name].dtype)
  unknown = {k for m in members for k in m.hparams} - set(hparams)
  if unknown:
    raise ValueError(f"hparams: {sorted(unknown)} are not hyperparameters of this task; valid: "
                     f"{sorted(hparams)}")
  return state.replace(hparams=hparams, **nets)


def member_keys(members: Sequence[Member]) -> jax.Array:
  """`[M]` step keys: each member's stream of randomness, from its seed as the loop derives it."""
  return jnp.stack([jax.random.split(jax.random.PRNGKey(m.seed))[1] for m in members])


def make_sweep_step(task) -> Callable:
  """`step(states, batch, keys) -> (states, metrics)`: the loop's train step, vmapped over members.

  The batch is shared (not mapped); states and keys carry the member axis; metrics are `[M]`.
  """

  def one(state, batch, key):
    return steps_lib.train_step(task, state, batch, key)

  return jax.jit(jax.vmap(one, in_axes=(0, None, 0)), donate_argnums=(0,))


@dataclasses.dataclass
class SweepResult:
  """What `train_members` returns.

  Attributes:
    state: the stacked final state.
    final: the last step's metrics, `{name: np.ndarray [M]}`.
    nonfinite: `[M]` bool, whether any step's losses were NaN or infinite.
    seconds: wall time of the training loop (compilation included).
  """

  state: PairState
  final: dict
  nonfinite: np.ndarray
  seconds: float


def train_members(task, dataset, members: Sequence[Member], steps: int, *,
                  progress: Optional[Callable[[int], None]] = None) -> SweepResult:
  """Trains `members` of `task` together for `steps` steps on `dataset.train_batch(0..steps-1)`."""
  if steps < 1:
    raise ValueError(f"steps: {steps!r} must be a positive integer")
  start = time.time()
  state = init_members(task, members)
  keys = member_keys(members)
  step_fn = make_sweep_step(task)
  bad = jnp.zeros((len(members),), bool)
  metrics = {}
  for i in range(steps):
    state, metrics = step_fn(state, dataset.train_batch(i), keys)
    bad = bad | ~jnp.isfinite(metrics["g/loss"]) | ~jnp.isfinite(metrics.get("d/loss", 0.0))
    if progress is not None:
      progress(i + 1)
  final = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
  nonfinite = np.asarray(bad)
  return SweepResult(state=state, final=final, nonfinite=nonfinite, seconds=time.time() - start)


def unstack(state: PairState, index: int) -> PairState:
  """Member `index` of a stacked state."""
  return jax.tree_util.tree_map(lambda x: x[index], state)
