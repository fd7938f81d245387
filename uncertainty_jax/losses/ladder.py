"""Ladder Network losses of chapter 6's semi-supervised experiment (thesis 6.3.2, EBGAN-LN).

The cost of a Ladder Network (Rasmus et al., 2015, eq. 3 and Algorithm 1) is a supervised
cross-entropy on the labelled examples plus the denoising cost

  C_d = sum_l lambda_l / (N n_l) sum_n ||z_l(n) - z^_l,BN(n)||^2,

the squared error between the clean encoder's normalised activations and the decoder's
normalised estimates, per unit of layer `l` (width `n_l`) and per example. EBGAN-LN uses the
bottom-layer term as the discriminator's energy: `ladder_energy`. The functions take the outputs of
`models.ladder.LadderNetwork`, not the network.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import jax
import jax.numpy as jnp

from uncertainty_jax.losses.energy import autoencoder_energy


def _check_layers(z_clean: Sequence[jax.Array], z_hat_bn: Sequence[jax.Array],
                  cost_weights: Sequence[float]) -> tuple[list[jax.Array], list[jax.Array]]:
  if isinstance(cost_weights, (str, bytes)) or not isinstance(cost_weights, Sequence) or any(
      isinstance(w, bool) or not isinstance(w, numbers.Real) for w in cost_weights):
    raise ValueError(f'cost_weights: {cost_weights!r} is not a sequence of Python numbers')
  if any(not (math.isfinite(w) and w >= 0) for w in cost_weights):
    raise ValueError(f'cost_weights: {tuple(cost_weights)!r} has a negative or non-finite '
                     'weight; expected finite numbers >= 0')
  z_clean, z_hat_bn = [jnp.asarray(z) for z in z_clean], [jnp.asarray(z) for z in z_hat_bn]
  if not z_clean or len(z_clean) != len(z_hat_bn) or len(z_clean) != len(cost_weights):
    raise ValueError(f'cost_weights: {len(cost_weights)} weights for {len(z_clean)} layers of '
                     f'z_clean and {len(z_hat_bn)} of z_hat_bn; expected one weight per layer '
                     'and at least one layer')
  batch = z_clean[0].shape[:1]
  for l, (z, z_hat) in enumerate(zip(z_clean, z_hat_bn)):
    if z.ndim != 2 or z.shape != z_hat.shape or z.shape[:1] != batch:
      raise ValueError(f'z_hat_bn: layer {l} has shape {z_hat.shape} and z_clean {z.shape}; '
                       f'expected equal [B, n_l] shapes with B = {batch[0]} in every layer')
  return z_clean, z_hat_bn


def denoising_cost_per_sample(z_clean: Sequence[jax.Array], z_hat_bn: Sequence[jax.Array],
                              cost_weights: Sequence[float]) -> jax.Array:
  """The denoising cost of each example: `sum_l lambda_l ||z_l - z^_l,BN||^2 / n_l`.

  Layers of weight 0 are left out of the sum (their terms are not computed).

  Args:
    z_clean: `L + 1` arrays `[B, n_l]`, the targets (`LadderOutputs.z_clean`).
    z_hat_bn: `L + 1` arrays `[B, n_l]`, the estimates (`LadderOutputs.z_hat_bn`).
    cost_weights: `L + 1` Python numbers >= 0, `lambda_0` (the input layer) first
      (`LadderNetwork.cost_weights`).

  Returns:
    `[B]`, non-negative.

  Raises:
    ValueError: on lists of different lengths, mismatched shapes, or a negative weight.
  """
  z_clean, z_hat_bn = _check_layers(z_clean, z_hat_bn, cost_weights)
  total = jnp.zeros(z_clean[0].shape[:1], jnp.result_type(z_clean[0], z_hat_bn[0], jnp.float32))
  for weight, z, z_hat in zip(cost_weights, z_clean, z_hat_bn):
    if weight:
      total = total + weight * jnp.mean(jnp.square(z - z_hat), axis=1)
  return total


def denoising_cost(z_clean: Sequence[jax.Array], z_hat_bn: Sequence[jax.Array],
                   cost_weights: Sequence[float]) -> jax.Array:
  """The denoising cost `C_d` of Rasmus et al. (2015): `denoising_cost_per_sample`'s batch mean.

  Args:
    z_clean: `L + 1` arrays `[B, n_l]` (`LadderOutputs.z_clean`).
    z_hat_bn: `L + 1` arrays `[B, n_l]` (`LadderOutputs.z_hat_bn`).
    cost_weights: `L + 1` Python numbers >= 0 (`LadderNetwork.cost_weights`).

  Returns:
    A scalar.
  """
  return jnp.mean(denoising_cost_per_sample(z_clean, z_hat_bn, cost_weights))


def ladder_energy(x: jax.Array, reconstruction: jax.Array) -> jax.Array:
  """The EBGAN-LN energy: the bottom layer's squared reconstruction error, mean over the inputs.

  `||x - x^||^2 / D` per example, which is `autoencoder_energy(x, reconstruction)` (its default
  'mean' reduction) and the layer-0 term of `denoising_cost_per_sample` with weight 1: the input
  layer has no batch norm, so `z_0 = x` and `z^_0,BN = x^` (`LadderOutputs.reconstruction`).

  Args:
    x: `[B, D]`, the clean inputs.
    reconstruction: `[B, D]`, the decoder's bottom output.

  Returns:
    `[B]`, non-negative.

  Raises:
    ValueError: if the shapes differ or are not `[B, D]`.
  """
  x = jnp.asarray(x)
  if x.ndim != 2:
    raise ValueError(f'x: shape {x.shape} is not [B, D]')
  return autoencoder_energy(x, reconstruction, reduction='mean')


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Softmax cross-entropy averaged over the labelled rows of a mixed batch.

    sum_i m_i (-log softmax(logits_i)[y_i]) / max(1, sum_i m_i)

  Rows where `mask` is false contribute nothing, not even a gradient, whatever their label (e.g.
  -1); with no labelled row the result is 0.

  Args:
    logits: `[B, C]`.
    labels: `[B]` integer classes in [0, C) where `mask` is true.
    mask: `[B]` booleans (nonzero numbers count as true), true for the labelled rows.

  Returns:
    A scalar.

  Raises:
    ValueError: if the shapes do not match or `labels` is not integer.
  """
  logits, labels, mask = jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask)
  if logits.ndim != 2:
    raise ValueError(f'logits: shape {logits.shape} is not [B, C]')
  if labels.shape != logits.shape[:1]:
    raise ValueError(f'labels: shape {labels.shape}, expected [{logits.shape[0]}] for logits '
                     f'{logits.shape}')
  if mask.shape != logits.shape[:1]:
    raise ValueError(f'mask: shape {mask.shape}, expected [{logits.shape[0]}] for logits '
                     f'{logits.shape}')
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f'labels: dtype {labels.dtype} is not an integer dtype')
  mask = mask.astype(bool)
  # Unlabelled rows may hold any label; index with a valid one and zero the row out after.
  safe = jnp.where(mask, labels, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]
  nll = jnp.where(mask, nll, 0.0)
  return jnp.sum(nll) / jnp.maximum(jnp.sum(mask), 1).astype(nll.dtype)
