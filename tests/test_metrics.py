"""Tests of uncertainty_jax.metrics against numpy (eq. 4.7, 4.8) and scikit-image."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import metrics as skmetrics

from uncertainty_jax import metrics


def _images(seed, shape, low=-1.0, high=1.0):
  return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _smooth_and_noisy(seed, shape):
  """A smooth image in [-1, 1] and a noisy copy of it, `[H, W, C]` each."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  yy, xx = np.mgrid[:h, :w]
  phases = rng.uniform(0, 2 * np.pi, c)
  smooth = 0.8 * np.sin(xx[..., None] / 4.0 + yy[..., None] / 6.0 + phases)
  noisy = np.clip(smooth + rng.normal(0, 0.1, shape), -1, 1)
  return noisy.astype(np.float32), smooth.astype(np.float32)


def _np_sharpness(pred, target, max_val):
  """Eq. 4.8 with explicit pixel loops over i, j >= 1, for one `[H, W, C]` pair."""
  y, yhat = target.astype(np.float64), pred.astype(np.float64)
  h, w, _ = y.shape
  terms = []
  for i in range(1, h):
    for j in range(1, w):
      grad_y = np.abs(y[i, j] - y[i - 1, j]) + np.abs(y[i, j] - y[i, j - 1])
      grad_yhat = np.abs(yhat[i, j] - yhat[i - 1, j]) + np.abs(yhat[i, j] - yhat[i, j - 1])
      terms.extend(np.abs(grad_y - grad_yhat))
  return 10 * np.log10(max_val ** 2 / np.mean(terms))


def _sk_ssim(pred, target, max_val):
  return skmetrics.structural_similarity(
      pred.astype(np.float64), target.astype(np.float64), gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=max_val, channel_axis=-1)


class TestPsnr:

  @pytest.mark.parametrize('shape', [(7, 9, 3), (2, 5, 6, 1), (2, 3, 4, 4, 2)])
  def test_matches_numpy_and_skimage(self, shape):
    pred, target = _images(0, shape), _images(1, shape)
    got = jax.jit(functools.partial(metrics.psnr, max_val=2.0))(pred, target)
    chex.assert_shape(got, shape[:-3])
    flat_pred = pred.reshape((-1,) + shape[-3:]).astype(np.float64)
    flat_target = target.reshape((-1,) + shape[-3:]).astype(np.float64)
    numpy_psnr = [10 * np.log10(4.0 / np.mean((p - t) ** 2))
                  for p, t in zip(flat_pred, flat_target)]
    sk_psnr = [skmetrics.peak_signal_noise_ratio(t, p, data_range=2.0)
               for p, t in zip(flat_pred, flat_target)]
    np.testing.assert_allclose(got.reshape(-1), numpy_psnr, rtol=1e-5)
    np.testing.assert_allclose(got.reshape(-1), sk_psnr, rtol=1e-5)

  def test_unit_range(self):
    pred, target = _images(2, (8, 8, 3), 0, 1), _images(3, (8, 8, 3), 0, 1)
    np.testing.assert_allclose(metrics.psnr(pred, target, 1.0),
                               skmetrics.peak_signal_noise_ratio(target, pred, data_range=1.0),
                               rtol=1e-5)

  def test_rescaling_range_keeps_psnr(self):
    # The same images mapped from [0, 1] to [-1, 1] have the same PSNR once max_val follows.
    pred, target = _images(4, (8, 8, 3), 0, 1), _images(5, (8, 8, 3), 0, 1)
    np.testing.assert_allclose(metrics.psnr(2 * pred - 1, 2 * target - 1, 2.0),
                               metrics.psnr(pred, target, 1.0), rtol=1e-5)

  def test_identical_is_inf(self):
    x = _images(6, (2, 8, 8, 3))
    got = jax.jit(metrics.psnr)(x, x, 2.0)
    assert np.all(np.isposinf(got))

  def test_traced_max_val(self):
    pred, target = _images(7, (8, 8, 1)), _images(8, (8, 8, 1))
    np.testing.assert_allclose(jax.jit(metrics.psnr)(pred, target, jnp.float32(2.0)),
                               metrics.psnr(pred, target, 2.0), rtol=1e-6)


class TestSsim:

  @pytest.mark.parametrize('shape', [(11, 11, 1), (16, 23, 3), (32, 32, 3), (40, 17, 2)])
  def test_random_images_match_skimage(self, shape):
    target = _images(10, shape)
    pred = np.clip(target + np.random.default_rng(11).normal(0, 0.3, shape), -1, 1)
    got = jax.jit(functools.partial(metrics.ssim, max_val=2.0))(pred, target)
    chex.assert_shape(got, ())
    np.testing.assert_allclose(got, _sk_ssim(pred, target, 2.0), atol=1e-4)
    unrelated = _images(12, shape)
    np.testing.assert_allclose(metrics.ssim(unrelated, target, 2.0),
                               _sk_ssim(unrelated, target, 2.0), atol=1e-4)

  @pytest.mark.parametrize('shape', [(12, 14, 1), (24, 24, 3)])
  def test_smooth_and_noisy_match_skimage(self, shape):
    pred, target = _smooth_and_noisy(13, shape)
    got = metrics.ssim(pred, target, 2.0)
    expected = _sk_ssim(pred, target, 2.0)
    assert expected > 0.5  # The pair is similar, so this checks more than noise-level agreement.
    np.testing.assert_allclose(got, expected, atol=1e-4)

  def test_unit_range_matches_skimage(self):
    target = _images(14, (16, 16, 3), 0, 1)
    pred = np.clip(target + np.random.default_rng(15).normal(0, 0.1, target.shape), 0, 1)
    np.testing.assert_allclose(metrics.ssim(pred, target, 1.0), _sk_ssim(pred, target, 1.0),
                               atol=1e-4)

  def test_batched_leading_axes(self):
    shape = (2, 3, 13, 15, 3)
    target = _images(16, shape)
    pred = np.clip(target + np.random.default_rng(17).normal(0, 0.2, shape), -1, 1)
    got = jax.jit(metrics.ssim)(pred, target, 2.0)
    chex.assert_shape(got, (2, 3))
    for a in range(2):
      for b in range(3):
        np.testing.assert_allclose(got[a, b], _sk_ssim(pred[a, b], target[a, b], 2.0), atol=1e-4)

  def test_identical_is_one(self):
    x = _images(18, (2, 12, 12, 3))
    np.testing.assert_allclose(metrics.ssim(x, x, 2.0), [1.0, 1.0], atol=1e-6)

  def test_too_small(self):
    with pytest.raises(ValueError, match=r'H and W >= 11.*\[10, 12\]'):
      metrics.ssim(jnp.zeros((10, 12, 1)), jnp.zeros((10, 12, 1)), 2.0)


class TestSharpnessDifference:

  @pytest.mark.parametrize('shape', [(5, 7, 3), (2, 6, 4, 1), (2, 2, 3, 5, 2)])
  def test_matches_numpy(self, shape):
    pred, target = _images(20, shape), _images(21, shape)
    got = jax.jit(functools.partial(metrics.sharpness_difference, max_val=2.0))(pred, target)
    chex.assert_shape(got, shape[:-3])
    flat_pred = pred.reshape((-1,) + shape[-3:])
    flat_target = target.reshape((-1,) + shape[-3:])
    expected = [_np_sharpness(p, t, 2.0) for p, t in zip(flat_pred, flat_target)]
    np.testing.assert_allclose(got.reshape(-1), expected, rtol=1e-5)

  def test_smooth_pair_unit_range(self):
    pred, target = _smooth_and_noisy(22, (9, 10, 3))
    pred, target = (pred + 1) / 2, (target + 1) / 2
    np.testing.assert_allclose(metrics.sharpness_difference(pred, target, 1.0),
                               _np_sharpness(pred, target, 1.0), rtol=1e-5)

  def test_negated_image_has_identical_sharpness(self):
    # Eq. 4.8 compares gradient magnitudes, which negation keeps.
    x = _images(23, (6, 6, 1))
    assert np.isposinf(metrics.sharpness_difference(-x, x, 2.0))

  def test_identical_is_inf(self):
    x = _images(24, (3, 6, 6, 2))
    assert np.all(np.isposinf(jax.jit(metrics.sharpness_difference)(x, x, 2.0)))

  def test_too_small(self):
    with pytest.raises(ValueError, match='H and W >= 2'):
      metrics.sharpness_difference(jnp.zeros((1, 5, 1)), jnp.zeros((1, 5, 1)), 2.0)


class TestMasked:

  def test_zeroes_outside_mask_in_both(self):
    pred, target = _images(30, (2, 4, 5, 3)), _images(31, (2, 4, 5, 3))
    mask = np.random.default_rng(32).uniform(size=(2, 4, 5)) > 0.5
    got_pred, got_target = jax.jit(metrics.masked)(pred, target, mask)
    np.testing.assert_array_equal(got_pred, np.where(mask[..., None], pred, 0.0))
    np.testing.assert_array_equal(got_target, np.where(mask[..., None], target, 0.0))

  def test_broadcast_mask_over_batch(self):
    pred, target = _images(33, (3, 4, 4, 2)), _images(34, (3, 4, 4, 2))
    mask = np.eye(4, dtype=bool)
    got_pred, got_target = metrics.masked(pred, target, mask)
    np.testing.assert_array_equal(got_pred, pred * np.eye(4)[None, :, :, None])
    np.testing.assert_array_equal(got_target, target * np.eye(4)[None, :, :, None])

  def test_metrics_on_masked_images(self):
    # Outside the mask both images are 0, so only the kept pixels contribute to the error.
    pred, target = _images(35, (8, 8, 3)), _images(36, (8, 8, 3))
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:7] = True
    mse = np.mean(((pred - target) ** 2)[mask]) * mask.mean()
    np.testing.assert_allclose(metrics.psnr(*metrics.masked(pred, target, mask), 2.0),
                               10 * np.log10(4.0 / mse), rtol=1e-5)

  def test_bad_mask_shape(self):
    with pytest.raises(ValueError, match=r'mask must be \[\.\.\., H, W\].*\(4, 4, 3\)'):
      metrics.masked(jnp.zeros((4, 4, 3)), jnp.zeros((4, 4, 3)), jnp.ones((4, 4, 3), bool))


class TestBadInput:

  @pytest.mark.parametrize('metric', [metrics.psnr, metrics.ssim, metrics.sharpness_difference])
  def test_shape_mismatch(self, metric):
    with pytest.raises(ValueError, match=r'\(12, 12, 3\).*\(12, 12, 1\)'):
      metric(jnp.zeros((12, 12, 3)), jnp.zeros((12, 12, 1)), 2.0)

  @pytest.mark.parametrize('metric', [metrics.psnr, metrics.ssim, metrics.sharpness_difference])
  @pytest.mark.parametrize('max_val', [0.0, -2.0])
  def test_bad_max_val(self, metric, max_val):
    with pytest.raises(ValueError, match='max_val must be a positive number'):
      metric(jnp.zeros((12, 12, 1)), jnp.ones((12, 12, 1)), max_val)

  @pytest.mark.parametrize('metric', [metrics.psnr, metrics.ssim, metrics.sharpness_difference])
  def test_rank_too_small(self, metric):
    with pytest.raises(ValueError, match='rank >= 3'):
      metric(jnp.zeros((12, 12)), jnp.zeros((12, 12)), 2.0)
