"""Chapter 3's losses: prediction error, curvature (eq. 3.6, 3.12), and inference of delta (eq. 3.13).

`linearization_loss` is eq. 3.6: half the squared L2 prediction error of each example, minus lambda
times the cosine between the successive code differences (z2 - z1) and (z3 - z2), both averaged
over the batch. `infer_latent` is the inner loop of Algorithm 3.1: k gradient steps on delta from
0, with the model held fixed.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# Keeps the cosine's gradient finite when a code difference is exactly zero.
_COSINE_EPS = 1e-12


def prediction_error(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Half the squared L2 distance per example, `[B, ...]` x2 -> `[B]` (eq. 3.6's first term)."""
  diff = (pred - target).reshape(pred.shape[0], -1)
  return 0.5 * jnp.sum(jnp.square(diff), axis=-1)


def curvature_cosine(z1: jax.Array, z2: jax.Array, z3: jax.Array) -> jax.Array:
  """The cosine between `z2 - z1` and `z3 - z2` per example, `[B, N]` x3 -> `[B]` in [-1, 1].

  1 is a straight trajectory at any speed; eq. 3.6 subtracts it, so a straight one costs least.
  """
  d1, d2 = z2 - z1, z3 - z2
  dot = jnp.sum(d1 * d2, axis=-1)
  # The epsilon inside each root keeps the gradient finite where a difference is zero.
  norm1 = jnp.sqrt(jnp.sum(jnp.square(d1), axis=-1) + _COSINE_EPS)
  norm2 = jnp.sqrt(jnp.sum(jnp.square(d2), axis=-1) + _COSINE_EPS)
  return dot / (norm1 * norm2)


def linearization_loss(pred: jax.Array, target: jax.Array, z1: jax.Array, z2: jax.Array,
                       z3: jax.Array, lambda_curvature: float
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 3.6 (3.12 with delta in `pred`), averaged over the batch.

  Args:
    pred, target: the predicted and true third frames, `[B, S, S, C]`.
    z1, z2, z3: the codes the curvature is measured on, `[B, N]` (the phases alone with phase
      pooling).
    lambda_curvature: lambda, >= 0.

  Returns:
    `(loss, terms)`: the scalar loss and `{'prediction': ..., 'cosine': ...}`, batch means.
  """
  prediction = jnp.mean(prediction_error(pred, target))
  cosine = jnp.mean(curvature_cosine(z1, z2, z3))
  return prediction - lambda_curvature * cosine, {"prediction": prediction, "cosine": cosine}


def infer_latent(loss_fn: Callable[[jax.Array], jax.Array], delta0: jax.Array, steps: int,
                 learning_rate: float) -> jax.Array:
  """Gradient descent on delta (Algorithm 3.1's inner loop), inside whatever jit calls it.

  Args:
    loss_fn: `delta [B, L] -> [B]`, each example's prediction error given its delta; examples
      must not interact, so that the gradient of the sum is each example's own.
    delta0: `[B, L]`, the start (zeros in Algorithm 3.1).
    steps: k >= 0, the number of steps (0 returns `delta0`).
    learning_rate: alpha, the step size.

  Returns:
    `delta_k`, `[B, L]`, with no gradient path back through the loop (the model's update treats
    it as a constant, as Algorithm 3.1 does).
  """
  grad = jax.grad(lambda d: jnp.sum(loss_fn(d)))

  def step(_, delta):
    return delta - learning_rate * grad(delta)

  delta = jax.lax.fori_loop(0, steps, step, delta0)
  return jax.lax.stop_gradient(delta)
