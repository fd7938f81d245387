"""Pixel-space losses of chapter 4: Lp (eq. 4.1) and the gradient difference loss (GDL, eq. 4.5).

Both losses are means over elements rather than the sums the thesis writes, so that a learning
rate or a loss weight does not depend on the batch size or the image size.
`gradient_difference_loss` offers `reduction='sum'` for the literal sum of eq. 4.5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_REDUCTIONS = ('mean', 'sum')


def _static_number(name: str, value) -> float:
  """`value` as a Python float; it must be known when the loss is traced."""
  try:
    return float(value)
  except TypeError as e:  # A tracer raises ConcretizationTypeError, a TypeError.
    raise ValueError(f'{name} must be a concrete number, got {value!r}; pass it as a Python '
                     'number (it selects the loss, it is not a traced hyperparameter)') from e


def _check_same_shape(pred: jax.Array, target: jax.Array) -> None:
  if pred.shape != target.shape:
    raise ValueError(f'pred and target must have the same shape, got pred {pred.shape} and '
                     f'target {target.shape}')


def _abs_pow(nonneg: jax.Array, exponent: float) -> jax.Array:
  """`nonneg ** exponent` for a non-negative array, exact and cheap for exponents 1 and 2."""
  if exponent == 1.0:
    return nonneg
  if exponent == 2.0:
    return nonneg * nonneg
  return nonneg ** exponent


def lp_loss(pred: jax.Array, target: jax.Array, p: float) -> jax.Array:
  """The Lp loss of eq. 4.1, `||pred - target||_p^p`, divided by the number of elements.

  Args:
    pred: predictions, any shape, e.g. `[B, H, W, C]`.
    target: ground truth, the shape of `pred`.
    p: the exponent, a positive Python number (the thesis uses 1 and 2).

  Returns:
    The scalar `mean(|pred - target| ** p)` over all elements.

  Raises:
    ValueError: if the shapes differ or `p <= 0`.
  """
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  _check_same_shape(pred, target)
  p = _static_number('p', p)
  if p <= 0:
    raise ValueError(f'p must be a positive number, got {p}')
  return jnp.mean(_abs_pow(jnp.abs(pred - target), p))


def gradient_difference_loss(pred: jax.Array, target: jax.Array, alpha: float,
                             reduction: str = 'mean') -> jax.Array:
  """The image gradient difference loss (GDL) of eq. 4.5.

  With `dy` the differences of vertically adjacent pixels (along H) and `dx` those of horizontally
  adjacent pixels (along W), taken inside the image without padding, the loss sums

    | |dy(target)| - |dy(pred)| |^alpha   over the (H - 1) x W pairs of each channel, and
    | |dx(target)| - |dx(pred)| |^alpha   over the H x (W - 1) pairs of each channel,

  over every channel and every leading (batch) index. `reduction='sum'` returns that sum, eq. 4.5
  literally. `reduction='mean'` divides it by `pred.size`, the number of pixels-with-channel of the
  whole batch `B * H * W * C` (not by the number of neighbour pairs), which keeps the scale of
  `lp_loss`: both then are per-element averages and a loss weight means the same for any batch or
  image size. Identical images, and images that differ by a constant, have zero GDL.

  Args:
    pred: predicted images `[..., H, W, C]`.
    target: ground-truth images, the shape of `pred`.
    alpha: the exponent, a Python number >= 1 (the thesis uses integers, 1 in its experiments).
    reduction: 'mean' or 'sum', as above.

  Returns:
    A scalar.

  Raises:
    ValueError: if the shapes differ, the images are not at least `[H, W, C]`, `alpha < 1`, or
      `reduction` is unknown.
  """
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  _check_same_shape(pred, target)
  if pred.ndim < 3:
    raise ValueError(f'pred must be images [..., H, W, C] of rank >= 3, got shape {pred.shape}')
  alpha = _static_number('alpha', alpha)
  if alpha < 1:
    raise ValueError(f'alpha must be a number >= 1, got {alpha}')
  if reduction not in _REDUCTIONS:
    raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')

  def abs_grads(x):
    dy = jnp.abs(x[..., 1:, :, :] - x[..., :-1, :, :])
    dx = jnp.abs(x[..., :, 1:, :] - x[..., :, :-1, :])
    return dy, dx

  true_dy, true_dx = abs_grads(target)
  pred_dy, pred_dx = abs_grads(pred)
  total = (jnp.sum(_abs_pow(jnp.abs(true_dy - pred_dy), alpha))
           + jnp.sum(_abs_pow(jnp.abs(true_dx - pred_dx), alpha)))
  if reduction == 'sum':
    return total
  return total / pred.size
