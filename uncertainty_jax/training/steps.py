"""The one train-step kind: a discriminator update, then a generator update (Algorithm 4.1).

A task supplies two losses as pure functions of parameters; this module differentiates them, applies
the optimizers and jits the whole step with explicit shardings and a donated state. Systems without
a discriminator (`state.discriminator is None`) run the generator update alone with the same code.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training.state import PairState

Metrics = dict[str, jax.Array]
# loss_fn(params, state, batch, rng) -> (loss, (metrics, new_batch_stats))
LossFn = Callable[[Any, PairState, Any, jax.Array], tuple[jax.Array, tuple[Metrics, Any]]]


class AdversarialLosses(Protocol):
  """What a task gives the step builder."""

  def discriminator_loss(self, params, state: PairState, batch, rng) -> tuple[jax.Array, tuple]:
    ...

  def generator_loss(self, params, state: PairState, batch, rng) -> tuple[jax.Array, tuple]:
    ...


def _update(network, loss_fn: LossFn, state: PairState, batch, rng, prefix: str):
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (metrics, batch_stats)), grads = grad_fn(network.params, state, batch, rng)
  metrics = dict(metrics)
  metrics[f"{prefix}/loss"] = loss
  metrics[f"{prefix}/grad_norm"] = optax.global_norm(grads)
  return network.apply_gradients(grads, batch_stats=batch_stats), metrics


def train_step(losses: AdversarialLosses, state: PairState, batch, key: jax.Array
               ) -> tuple[PairState, Metrics]:
  """One iteration of Algorithm 4.1 (unjitted; see `make_train_step`).

  The discriminator is updated first with the generator fixed; the generator update then sees the
  updated discriminator. The step's randomness is `fold_in(key, state.step)`, so a resumed run draws
  the same numbers as an uninterrupted one.

  Returns:
    The new state and a flat dict of scalar metrics: each loss's terms, `d/loss`, `g/loss` and
    their gradient norms.
  """
  rng = jax.random.fold_in(key, state.step)
  d_rng, g_rng = jax.random.split(rng)
  metrics: Metrics = {}
  if state.discriminator is not None:
    disc, d_metrics = _update(state.discriminator, losses.discriminator_loss, state, batch, d_rng, "d")
    state = state.replace(discriminator=disc)
    metrics.update(d_metrics)
  gen, g_metrics = _update(state.generator, losses.generator_loss, state, batch, g_rng, "g")
  metrics.update(g_metrics)
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  return state.replace(step=state.step + 1, generator=gen), metrics


def make_train_step(losses: AdversarialLosses, mesh: Mesh):
  """Compiles `train_step` for `mesh`: state replicated and donated, batch split over 'data'.

  Returns:
    `step(state, batch, key) -> (state, metrics)`, compiled once per state/batch structure.
  """
  repl = sharding_lib.replicated(mesh)

  def step(state, batch, key):
    return train_step(losses, state, batch, key)

  return jax.jit(step, in_shardings=(repl, sharding_lib.batch_sharding(mesh), repl),
                 out_shardings=(repl, repl), donate_argnums=(0,))
