"""The variational terms of chapter 5 (eq. 5.5, 5.7): Gaussian KL and the reconstruction error."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, the regulariser of eq. 5.5.

  `0.5 * sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1)` (Kingma & Welling, 2013, appendix B).

  Args:
    mu: `[B, D]` posterior means.
    logvar: `[B, D]` log posterior variances.

  Returns:
    `[B]` divergences in nats.
  """
  mu, logvar = jnp.asarray(mu), jnp.asarray(logvar)
  if mu.shape != logvar.shape or mu.ndim != 2:
    raise ValueError(f'mu and logvar must both be [B, D], got {mu.shape} and {logvar.shape}')
  return 0.5 * jnp.sum(mu * mu + jnp.exp(logvar) - logvar - 1.0, axis=-1)


def squared_error(pred: jax.Array, target: jax.Array) -> jax.Array:
  """`||pred - target||^2` per example, summed over all but the first axis: `[B, ...] -> [B]`.

  With a Gaussian likelihood of standard deviation `sigma` per pixel, the negative
  log-likelihood of eq. 5.5 is this divided by `2 sigma^2`, plus a constant.
  """
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  if pred.shape != target.shape or pred.ndim < 2:
    raise ValueError(f'pred and target must have the same shape [B, ...], got {pred.shape} and '
                     f'{target.shape}')
  diff = pred - target
  return jnp.sum((diff * diff).reshape(diff.shape[0], -1), axis=-1)
