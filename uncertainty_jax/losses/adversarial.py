"""Adversarial losses of chapter 4 (eq. 4.2-4.4) and the combined generator objective (eq. 4.6).

Discriminators output logits; `sigmoid(logits)` is the probability `D(.)` of the thesis. Working
from logits keeps the binary cross-entropy finite when a discriminator is confident.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from uncertainty_jax.losses.reconstruction import gradient_difference_loss, lp_loss


def binary_cross_entropy_with_logits(logits: jax.Array, labels: jax.Array | float) -> jax.Array:
  """The binary cross-entropy of eq. 4.3, averaged over elements, from logits.

  Computes `mean(-(z log s + (1 - z) log(1 - s)))` with `s = sigmoid(logits)` and `z = labels`, in
  the stable form `max(x, 0) - x z + log(1 + exp(-|x|))`. Eq. 4.3 sums over elements; the mean keeps
  the loss independent of the batch size.

  Args:
    logits: discriminator outputs before the sigmoid, any shape, e.g. `[B]` or `[B, 1]`.
    labels: targets in [0, 1], the shape of `logits`, or a scalar applied to every element.

  Returns:
    A scalar.

  Raises:
    ValueError: if `labels` is neither a scalar nor of the shape of `logits`.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels, dtype=logits.dtype)
  if labels.ndim and labels.shape != logits.shape:
    raise ValueError(f'labels must be a scalar or have the shape of logits, got logits '
                     f'{logits.shape} and labels {labels.shape}')
  losses = (jnp.maximum(logits, 0) - logits * labels
            + jnp.log1p(jnp.exp(-jnp.abs(logits))))
  return jnp.mean(losses)


def discriminator_bce_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """The discriminator loss of eq. 4.2 at one scale: `BCE(real, 1) + BCE(fake, 0)`.

  Args:
    real_logits: the discriminator's logits on true frames, `[B]` or `[B, 1]`.
    fake_logits: its logits on generated frames, `[B']` or `[B', 1]`.

  Returns:
    A scalar, the sum of the two mean cross-entropies. Sum it over scales for eq. 4.2.
  """
  return (binary_cross_entropy_with_logits(real_logits, 1.0)
          + binary_cross_entropy_with_logits(fake_logits, 0.0))


def generator_bce_loss(fake_logits: jax.Array) -> jax.Array:
  """The generator's adversarial loss of eq. 4.4 at one scale: `BCE(fake, 1)`.

  Args:
    fake_logits: the discriminator's logits on generated frames, `[B]` or `[B, 1]`.

  Returns:
    A scalar, the mean cross-entropy. Sum it over scales for eq. 4.4.
  """
  return binary_cross_entropy_with_logits(fake_logits, 1.0)


def _check_logits_shape(k: int, logits: jax.Array, pred: jax.Array) -> None:
  batch = pred.shape[:1]
  if logits.shape not in (batch, batch + (1,)):
    raise ValueError(f'fake_logits[{k}] must have shape [B] or [B, 1] with B = {pred.shape[0]} '
                     f'from preds[{k}] {pred.shape}, got {logits.shape}')


def combined_generator_loss(
    preds: Sequence[jax.Array],
    targets: Sequence[jax.Array],
    fake_logits: Sequence[jax.Array] | None,
    *,
    lambda_adv: float | jax.Array,
    lambda_lp: float | jax.Array,
    p: float,
    lambda_gdl: float | jax.Array,
    alpha: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The generator objective of eq. 4.6, summed over the scales of a multi-scale generator.

    total = lambda_adv * sum_k adv_k + lambda_lp * sum_k lp_k + lambda_gdl * sum_k gdl_k

  with `adv_k = generator_bce_loss(fake_logits[k])`, `lp_k = lp_loss(preds[k], targets[k], p)` and
  `gdl_k = gradient_difference_loss(preds[k], targets[k], alpha)` (mean reductions). The scales are
  summed, not averaged, as eq. 4.2 and 4.4 sum over scales.

  Args:
    preds: one prediction per scale, coarse to fine, `[B, H_k, W_k, C]` each.
    targets: the true frames at the same scales, shaped like `preds`.
    fake_logits: the scale discriminators' logits on `preds`, one `[B]` or `[B, 1]` array per scale,
      or None to train without the adversarial term (no `adv` entries are then reported).
    lambda_adv: weight of the adversarial term; may be a traced scalar (a schedule).
    lambda_lp: weight of the Lp term; may be traced.
    p: the Lp exponent, a positive Python number.
    lambda_gdl: weight of the GDL term; may be traced.
    alpha: the GDL exponent, a Python number >= 1.

  Returns:
    `(total, terms)`: the scalar loss and a flat dict of scalars with keys `lp/scale_k`,
    `gdl/scale_k` and, unless `fake_logits` is None, `adv/scale_k` for k = 0 (coarsest) to N - 1,
    their sums over scales `lp`, `gdl` (and `adv`), and `total`. The per-term values are unweighted.

  Raises:
    ValueError: if the sequences are empty or of different lengths, if a `fake_logits[k]` is not
      `[B]` or `[B, 1]` with the batch size of `preds[k]`, or on the errors of `lp_loss` and
      `gradient_difference_loss`.
  """
  preds, targets = list(preds), list(targets)
  if not preds:
    raise ValueError('preds must hold at least one scale, got an empty sequence')
  if len(targets) != len(preds):
    raise ValueError(f'targets must have one entry per scale of preds ({len(preds)}), got '
                     f'{len(targets)}')
  if fake_logits is not None:
    fake_logits = list(fake_logits)
    if len(fake_logits) != len(preds):
      raise ValueError(f'fake_logits must have one entry per scale of preds ({len(preds)}), got '
                       f'{len(fake_logits)}')

  terms = {}
  for k, (pred, target) in enumerate(zip(preds, targets)):
    terms[f'lp/scale_{k}'] = lp_loss(pred, target, p)
    terms[f'gdl/scale_{k}'] = gradient_difference_loss(pred, target, alpha)
  lp = sum(terms[f'lp/scale_{k}'] for k in range(len(preds)))
  gdl = sum(terms[f'gdl/scale_{k}'] for k in range(len(preds)))
  terms['lp'], terms['gdl'] = lp, gdl
  total = lambda_lp * lp + lambda_gdl * gdl
  if fake_logits is not None:
    for k, (logits, pred) in enumerate(zip(fake_logits, preds)):
      _check_logits_shape(k, jnp.asarray(logits), jnp.asarray(pred))
      terms[f'adv/scale_{k}'] = generator_bce_loss(logits)
    adv = sum(terms[f'adv/scale_{k}'] for k in range(len(preds)))
    terms['adv'] = adv
    total = total + lambda_adv * adv
  terms['total'] = total
  return total, terms
