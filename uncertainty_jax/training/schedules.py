"""Schedules for learning rates and loss weights, and the optimizers built from them."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "linear", "geometric", "cosine")
OPTIMIZERS = ("sgd", "momentum", "adam")


def make_schedule(kind: str, start: float, end: Optional[float], total_steps: int,
                  *, field: str = "schedule") -> optax.Schedule:
  """A schedule from `start` at step 0 to `end` at `total_steps` (held there afterwards).

  Args:
    kind: 'constant' (always `start`), 'linear', 'geometric' (exponential interpolation; both ends
      must be positive) or 'cosine'.
    start: value at step 0.
    end: value at `total_steps`; ignored by 'constant', and `None` means `start`.
    total_steps: length of the schedule.
    field: the config field the kind came from, for error messages.
  """
  if kind not in SCHEDULES:
    raise ValueError(f"{field}: unknown schedule {kind!r}; valid: {list(SCHEDULES)}")
  end = start if end is None else end
  steps = max(int(total_steps), 1)
  if kind == "constant" or start == end:
    return optax.constant_schedule(start)
  if kind == "linear":
    return optax.linear_schedule(start, end, steps)
  if kind == "cosine":
    return optax.cosine_decay_schedule(start, steps, alpha=end / start if start else 0.0)
  if start <= 0 or end <= 0:
    raise ValueError(f"{field}: a geometric schedule needs positive ends, got {start} -> {end}")

  def geometric(step):
    frac = jnp.clip(step / steps, 0.0, 1.0)
    return start * (end / start) ** frac
  return geometric


def make_optimizer(name: str, learning_rate: optax.ScalarOrSchedule, *, adam_beta1: float = 0.5,
                   momentum: float = 0.9, field: str = "optimizer") -> optax.GradientTransformation:
  """'sgd' (plain, as Model 1), 'momentum' (heavy ball) or 'adam' (as Model 2)."""
  if name == "sgd":
    return optax.sgd(learning_rate)
  if name == "momentum":
    return optax.sgd(learning_rate, momentum=momentum)
  if name == "adam":
    return optax.adam(learning_rate, b1=adam_beta1)
  raise ValueError(f"{field}: unknown optimizer {name!r}; valid: {list(OPTIMIZERS)}")


def check_pair_optimizers(config) -> None:
  """Checks a config's `g_optimizer`, `d_optimizer`, `g_learning_rate` and `d_learning_rate`;
  each error names the field, its value and what is accepted."""
  for side in ("g", "d"):
    name = config[f"{side}_optimizer"]
    if name not in OPTIMIZERS:
      raise ValueError(f"{side}_optimizer: unknown optimizer {name!r}; valid: {list(OPTIMIZERS)}")
    if not config[f"{side}_learning_rate"] > 0:
      raise ValueError(f"{side}_learning_rate: {config[f'{side}_learning_rate']!r} must be "
                       f"positive")


class SweepableState(NamedTuple):
  """The state of `sweepable_optimizer`: Adam's moments and the two hyperparameters as arrays."""

  adam: Any
  learning_rate: jax.Array
  use_adam: jax.Array


def sweepable_optimizer(name: str, learning_rate: float, *, adam_beta1: float = 0.5,
                        field: str = "optimizer") -> optax.GradientTransformation:
  """Plain SGD or Adam, chosen and scaled by arrays in the optimizer state.

  Identical in its updates to `make_optimizer('sgd' | 'adam', learning_rate)`, but the choice and
  the (constant) learning rate are state leaves rather than Python values, so networks that differ
  only in them train together under `jax.vmap` (`training.sweep`, the grid search of Table 6.1).
  Adam's moments are kept, and ignored, for SGD members.
  """
  if name not in ("sgd", "adam"):
    raise ValueError(f"{field}: unknown optimizer {name!r} for a sweep; valid: ['sgd', 'adam']")
  adam = optax.scale_by_adam(b1=adam_beta1)

  def init(params):
    return SweepableState(adam=adam.init(params),
                          learning_rate=jnp.asarray(learning_rate, jnp.float32),
                          use_adam=jnp.asarray(name == "adam"))

  def update(grads, state, params=None):
    adam_updates, adam_state = adam.update(grads, state.adam, params)
    updates = jax.tree_util.tree_map(
        lambda a, g: -state.learning_rate * jnp.where(state.use_adam, a, g), adam_updates, grads)
    return updates, state._replace(adam=adam_state)

  return optax.GradientTransformation(init, update)
