"""Image-quality metrics of section 4.3.2: PSNR (eq. 4.7), SSIM, sharpness difference (eq. 4.8);
the tweaked inception score I' of section 6.3.1 (eq. 6.62).

Every image metric takes images `[..., H, W, C]`, batched over any leading axes, and returns one
value per image, of shape `[...]`; all are jit-able. `max_val` is the peak-to-peak range of the
intensities: pass `max_val=2.0` for the library's images in [-1, 1], and 1.0 for images in [0, 1].

Identical images have zero error, and PSNR and sharpness difference are then `+inf` (as in
`skimage.metrics.peak_signal_noise_ratio`), not a large finite number chosen by an epsilon. Averages
over a test set should account for that, e.g. a moving-area mask that selects no pixel makes the
masked prediction and truth both all zeros.

`masked` implements the moving-area protocol of Table 4.4b (footnote 2 of section 4.3.2).

`tweaked_inception_score` is the generation metric I' of chapter 6 (eq. 6.62), computed from a
classifier's probabilities on generated samples.
"""

from __future__ import annotations

import numbers

import dm_pix
import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy
import numpy as np

_SSIM_FILTER_SIZE = 11
_SSIM_FILTER_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _as_float(x) -> jax.Array:
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_images(pred: jax.Array, target: jax.Array, min_size: int = 1) -> None:
  if pred.shape != target.shape:
    raise ValueError(f'pred and target must have the same shape, got pred {pred.shape} and '
                     f'target {target.shape}')
  if pred.ndim < 3:
    raise ValueError(f'pred must be images [..., H, W, C] of rank >= 3, got shape {pred.shape}')
  if min(pred.shape[-3:-1]) < min_size:
    raise ValueError(f'pred must have H and W >= {min_size}, got [H, W] = '
                     f'{list(pred.shape[-3:-1])} from shape {pred.shape}')


def _check_max_val(max_val) -> None:
  # A traced max_val cannot be checked; concrete numbers can.
  if isinstance(max_val, numbers.Real) and not max_val > 0:
    raise ValueError(f'max_val must be a positive number (2.0 for images in [-1, 1]), got '
                     f'{max_val}')


def _peak_to_db(max_val, mean_error: jax.Array) -> jax.Array:
  """`10 log10(max_val^2 / mean_error)`, written so that a zero error gives exactly `+inf`."""
  return 10.0 * (2.0 * jnp.log10(jnp.asarray(max_val, mean_error.dtype)) - jnp.log10(mean_error))


def psnr(pred: jax.Array, target: jax.Array, max_val: float | jax.Array) -> jax.Array:
  """Peak signal-to-noise ratio of eq. 4.7, in dB: `10 log10(max_val^2 / mse)`.

  Args:
    pred: predicted images `[..., H, W, C]`.
    target: true images, the shape of `pred`.
    max_val: the peak-to-peak intensity range: 2.0 for images in [-1, 1], 1.0 for [0, 1].

  Returns:
    `[...]`, one PSNR per image, the squared error averaged over `H, W, C`; `+inf` where the images
    are identical.
  """
  pred, target = _as_float(pred), _as_float(target)
  _check_images(pred, target)
  _check_max_val(max_val)
  mse = jnp.mean(jnp.square(pred - target), axis=(-3, -2, -1))
  return _peak_to_db(max_val, mse)


def ssim(pred: jax.Array, target: jax.Array, max_val: float | jax.Array) -> jax.Array:
  """Structural similarity of Wang et al. (2004), averaged over pixels and channels.

  An 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample)
  covariances, statistics averaged over the positions where the whole window fits in the image,
  i.e. `[5:H-5, 5:W-5]`, and over channels. This equals
  `skimage.metrics.structural_similarity(pred, target, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=max_val, channel_axis=-1)`.

  Args:
    pred: predicted images `[..., H, W, C]` with `H, W >= 11`.
    target: true images, the shape of `pred`.
    max_val: the peak-to-peak intensity range: 2.0 for images in [-1, 1], 1.0 for [0, 1].

  Returns:
    `[...]`, one SSIM in [-1, 1] per image.
  """
  pred, target = _as_float(pred), _as_float(target)
  _check_images(pred, target, min_size=_SSIM_FILTER_SIZE)
  _check_max_val(max_val)
  leading, image = pred.shape[:-3], pred.shape[-3:]
  # dm_pix's valid-mode filtering crops exactly the borders skimage discards.
  values = dm_pix.ssim(pred.reshape((-1,) + image), target.reshape((-1,) + image),
                       max_val=max_val, filter_size=_SSIM_FILTER_SIZE,
                       filter_sigma=_SSIM_FILTER_SIGMA, k1=_SSIM_K1, k2=_SSIM_K2)
  return values.reshape(leading)


def sharpness_difference(pred: jax.Array, target: jax.Array, max_val: float | jax.Array
                         ) -> jax.Array:
  """Sharpness difference of eq. 4.8, in dB.

  With `grad_i y = |y[i, j] - y[i-1, j]|` (along H) and `grad_j y = |y[i, j] - y[i, j-1]|` (along
  W), on the pixels `[1:, 1:]` where both exist,

    10 log10(max_val^2 / mean |(grad_i y + grad_j y) - (grad_i yhat + grad_j yhat)|),

  the mean taken over those `(H - 1) (W - 1) C` terms. Larger is better.

  Args:
    pred: predicted images `yhat`, `[..., H, W, C]` with `H, W >= 2`.
    target: true images `y`, the shape of `pred`.
    max_val: the peak-to-peak intensity range: 2.0 for images in [-1, 1], 1.0 for [0, 1].

  Returns:
    `[...]`, one value per image; `+inf` where the images have identical gradients.
  """
  pred, target = _as_float(pred), _as_float(target)
  _check_images(pred, target, min_size=2)
  _check_max_val(max_val)

  def grad_sum(y):
    centre = y[..., 1:, 1:, :]
    return jnp.abs(centre - y[..., :-1, 1:, :]) + jnp.abs(centre - y[..., 1:, :-1, :])

  error = jnp.mean(jnp.abs(grad_sum(target) - grad_sum(pred)), axis=(-3, -2, -1))
  return _peak_to_db(max_val, error)


def masked(pred: jax.Array, target: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Sets the pixels outside `mask` to 0 in both images (moving-area protocol of Table 4.4b).

  The thesis measures quality in the moving areas by replacing the prediction's and the truth's
  intensities by 0 wherever the optical flow is small, then computing the usual metrics on the
  whole masked images. The value written is 0 in the images' own range: mid-grey for images in
  [-1, 1], black for [0, 1].

  Args:
    pred: predicted images `[..., H, W, C]`.
    target: true images, the shape of `pred`.
    mask: `[..., H, W]`, broadcastable to `pred.shape[:-1]`; True (or nonzero) where a pixel is
      kept. It applies to every channel.

  Returns:
    `(pred, target)` with the pixels outside `mask` set to 0.
  """
  pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
  _check_images(pred, target)
  try:
    ok = jnp.broadcast_shapes(mask.shape, pred.shape[:-1]) == pred.shape[:-1]
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f'mask must be [..., H, W] broadcastable to {pred.shape[:-1]} (pred '
                     f'{pred.shape} without its channel axis), got {mask.shape}')
  keep = mask.astype(bool)[..., None]
  return (jnp.where(keep, pred, jnp.zeros_like(pred)),
          jnp.where(keep, target, jnp.zeros_like(target)))


# How far from 1 the rows of a concrete probability table may sum: loose enough for float32
# softmax outputs over many classes, tight enough to reject logits or unnormalised scores.
_PROBS_SUM_TOLERANCE = 1e-3


def _check_class_probs(class_probs) -> None:
  """Shape checks always; value checks only on concrete arrays (a traced table has no values)."""
  shape = jnp.shape(class_probs)
  if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
    raise ValueError(f'class_probs must be [N, C] with N, C >= 1, got shape {shape}')
  if isinstance(class_probs, jax.core.Tracer):
    return
  values = np.asarray(class_probs, dtype=np.float64)
  if not np.all(values >= 0):  # also rejects NaN
    bad = values[~(values >= 0)].flat[0]
    raise ValueError(f'class_probs must be probabilities >= 0, got an entry {bad}')
  sums = values.sum(axis=1)
  worst = int(np.argmax(np.abs(sums - 1.0)))
  if abs(sums[worst] - 1.0) > _PROBS_SUM_TOLERANCE:
    raise ValueError(f'class_probs rows must sum to 1 (within {_PROBS_SUM_TOLERANCE}), got row '
                     f'{worst} summing to {sums[worst]}; pass softmax outputs, not logits')


def _check_floor(floor, num_classes: int) -> float:
  if isinstance(floor, bool) or not isinstance(floor, numbers.Real):
    raise ValueError(f'floor must be a Python number in [0, 1/C), got {floor!r} of type '
                     f'{type(floor).__name__}')
  floor = float(floor)
  if not 0 <= floor < 1 / num_classes:
    raise ValueError(f'floor must be a number in [0, 1/C) = [0, {1 / num_classes:g}) for C = '
                     f'{num_classes} classes, got {floor}')
  return floor


def tweaked_inception_score(class_probs: jax.Array, floor: float = 1e-12) -> jax.Array:
  """The tweaked inception score I' of eq. 6.62, in nats.

    I' = mean_x KL(p(y) || p(y|x)),   p(y) = mean_x p(y|x),

  over the generated samples `x`, with `p(y|x)` a pretrained classifier's probabilities (a small
  MNIST classifier in section 6.3.1). Compared with the inception score of Salimans et al. (2016),
  `exp(mean_x KL(p(y|x) || p(y)))`, the KL's arguments are swapped and there is no exponential.

  I' is 0 when every sample gets the same class distribution (then `p(y|x) = p(y)`), whether
  confident or not, and grows when the samples are confidently classified AND spread over the
  classes: each sample is scored by how much of the marginal's mass its prediction rules out.

  The swapped KL is infinite where `p(y|x)` has an exact zero that `p(y)` does not, which a float32
  softmax produces for a confident classifier. Each row is therefore floored and renormalised,
  `p'(y|x) = max(p(y|x), floor) / sum_y max(p(y|x), floor)`, and `p(y)` is the mean of the `p'`
  rows: I' is then eq. 6.62 exactly, for the classifier `p'`, so it stays a mean of true KL
  divergences, >= 0 and 0 for equal rows. Rows with no entry below `floor` are unchanged (up to
  the renormalisation of their rounding error). `floor=0` is eq. 6.62 for the raw table, `+inf`
  where the above happens.

  For one-hot predictions spread evenly over the `C` classes, every floored row is
  `(1, floor, ..., floor) / (1 + (C - 1) floor)` up to order, `p(y)` is uniform, and

    I' = (C - 1) / C * log(1 / floor) - log(C) + log(1 + (C - 1) floor),

  22.565 nats for C = 10 and the default floor. Less confident predictions, or classes less evenly
  represented, score lower. As that formula shows, for a confident classifier I' is dominated by
  the logarithm of its smallest probabilities, i.e. by the floor: compare scores only at one floor.

  Args:
    class_probs: `[N, C]`, the classifier's probabilities `p(y|x)` for `N >= 1` samples:
      non-negative rows summing to 1. Values are checked for concrete (numpy or jax) arrays, not
      inside `jit`.
    floor: a Python number in `[0, 1/C)`, as above.

  Returns:
    A scalar, I' in nats.

  Raises:
    ValueError: if `class_probs` is not `[N, C]`, or (when concrete) has a negative or NaN entry or
      a row whose sum is off 1 by more than 1e-3, or if `floor` is not a number in `[0, 1/C)`.
  """
  _check_class_probs(class_probs)
  probs = _as_float(class_probs)
  floor = _check_floor(floor, probs.shape[1])
  floored = jnp.maximum(probs, floor)
  floored = floored / jnp.sum(floored, axis=1, keepdims=True)
  marginal = jnp.mean(floored, axis=0)
  # xlogy gives 0 log 0 = 0 where the marginal is 0 (possible only with floor=0), and +inf where
  # the marginal is positive and a row is 0.
  kl = jnp.sum(xlogy(marginal, marginal) - xlogy(marginal, floored), axis=1)
  return jnp.mean(kl)
