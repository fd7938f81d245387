"""Tests for uncertainty_jax.evaluation.mode_coverage: nearest modes, coverage, KL to uniform."""

import math

import numpy as np
import pytest
import scipy.stats

from uncertainty_jax.evaluation import mode_coverage as mc

# The toy2d ring: 8 modes on a circle of radius 2.
_RING = np.stack([2 * np.cos(np.arange(8) * np.pi / 4), 2 * np.sin(np.arange(8) * np.pi / 4)], 1)
_STD = 0.02


def _at_modes(counts):
  """`counts[k]` copies of mode k of the ring, `[sum(counts), 2]`."""
  return np.repeat(_RING, counts, axis=0)


def _kl_to_uniform(counts):
  """KL(p || uniform) by scipy's reference implementation (which uses 0 log 0 = 0)."""
  counts = np.asarray(counts, np.float64)
  return scipy.stats.entropy(counts / counts.sum(), np.full(len(counts), 1 / len(counts)))


class TestNearestMode:

  def test_points_at_modes(self):
    order = np.array([3, 0, 7, 7, 1])
    index, distance = mc.nearest_mode(_RING[order], _RING)
    np.testing.assert_array_equal(index, order)
    np.testing.assert_array_equal(distance, np.zeros(5))

  def test_matches_brute_force(self):
    rng = np.random.default_rng(0)
    points = rng.uniform(-3, 3, size=(200, 2))
    index, distance = mc.nearest_mode(points, _RING)
    all_distances = np.linalg.norm(points[:, None, :] - _RING[None], axis=-1)
    np.testing.assert_array_equal(index, np.argmin(all_distances, axis=1))
    np.testing.assert_allclose(distance, all_distances.min(axis=1), rtol=1e-12)
    assert index.dtype == np.int64 and index.shape == (200,) and distance.shape == (200,)

  def test_tie_goes_to_lowest_index(self):
    index, distance = mc.nearest_mode([[0.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0]])
    assert index[0] == 0 and distance[0] == 1.0

  def test_non_finite_points_have_no_mode(self):
    points = np.array([[np.nan, 0.0], [2.0, 0.0], [np.inf, 1.0]])
    index, distance = mc.nearest_mode(points, _RING)
    np.testing.assert_array_equal(index, [-1, 0, -1])
    np.testing.assert_array_equal(distance, [np.inf, 0.0, np.inf])

  @pytest.mark.parametrize('points, modes, match', [
      (np.zeros((4, 3)), _RING, 'points.shape'),
      (np.zeros(4), _RING, 'points.shape'),
      (np.zeros((0, 2)), _RING, 'points.shape'),
      (np.zeros((4, 2)), np.zeros((0, 2)), 'modes.shape'),
      (np.zeros((4, 2)), np.array([[0.0, np.nan]]), 'modes'),
      ([['a', 'b']], _RING, 'points'),
  ])
  def test_bad_shapes(self, points, modes, match):
    with pytest.raises(ValueError, match=match):
      mc.nearest_mode(points, modes)


class TestModeCoverage:

  def test_balanced_samples_at_modes(self):
    result = mc.mode_coverage(_at_modes([5] * 8), _RING, _STD)
    assert result['modes_covered'] == 8
    assert result['num_modes'] == 8
    assert result['high_quality_fraction'] == 1.0
    np.testing.assert_array_equal(result['counts'], [5] * 8)
    assert result['kl_to_uniform'] == pytest.approx(0.0, abs=1e-12)
    assert result['radius'] == pytest.approx(3 * _STD)
    assert result['min_count'] == mc.DEFAULT_MIN_COUNT == 1

  def test_unbalanced_counts_match_reference(self):
    counts = [1, 2, 3, 4, 5, 6, 7, 8]
    result = mc.mode_coverage(_at_modes(counts), _RING, _STD)
    np.testing.assert_array_equal(result['counts'], counts)
    assert result['kl_to_uniform'] == pytest.approx(_kl_to_uniform(counts), rel=1e-12)
    p = np.array(counts) / np.sum(counts)
    assert result['kl_to_uniform'] == pytest.approx(np.sum(p * np.log(8 * p)), rel=1e-12)

  def test_one_mode_empty(self):
    counts = [4, 4, 4, 0, 4, 4, 4, 4]
    result = mc.mode_coverage(_at_modes(counts), _RING, _STD)
    assert result['modes_covered'] == 7
    np.testing.assert_array_equal(result['counts'], counts)
    # 0 log 0 = 0: p uniform over 7 of 8 modes gives log(8 / 7).
    assert result['kl_to_uniform'] == pytest.approx(math.log(8 / 7), rel=1e-12)
    assert result['kl_to_uniform'] == pytest.approx(_kl_to_uniform(counts), rel=1e-12)

  def test_collapse_on_one_mode(self):
    result = mc.mode_coverage(_at_modes([0, 0, 30, 0, 0, 0, 0, 0]), _RING, _STD)
    assert result['modes_covered'] == 1
    assert result['kl_to_uniform'] == pytest.approx(math.log(8), rel=1e-12)

  def test_points_far_away(self):
    points = np.full((10, 2), 50.0)
    result = mc.mode_coverage(points, _RING, _STD)
    assert result['modes_covered'] == 0
    assert result['high_quality_fraction'] == 0.0
    np.testing.assert_array_equal(result['counts'], np.zeros(8))
    assert math.isnan(result['kl_to_uniform'])

  def test_radius_boundary(self):
    # Along the radial direction of mode 0, at 2.9 and 3.1 standard deviations.
    points = np.array([[2 + 2.9 * _STD, 0.0], [2 + 3.1 * _STD, 0.0]])
    result = mc.mode_coverage(points, _RING, _STD)
    assert result['high_quality_fraction'] == 0.5
    np.testing.assert_array_equal(result['counts'], [1, 0, 0, 0, 0, 0, 0, 0])
    wider = mc.mode_coverage(points, _RING, _STD, radius_stds=3.2)
    np.testing.assert_array_equal(wider['counts'], [2, 0, 0, 0, 0, 0, 0, 0])
    narrower = mc.mode_coverage(points, _RING, _STD, radius_stds=1.0)
    assert narrower['high_quality_fraction'] == 0.0

  def test_min_count(self):
    counts = [5, 1, 2, 0, 0, 0, 0, 0]
    points = _at_modes(counts)
    assert mc.mode_coverage(points, _RING, _STD)['modes_covered'] == 3
    assert mc.mode_coverage(points, _RING, _STD, min_count=2)['modes_covered'] == 2
    assert mc.mode_coverage(points, _RING, _STD, min_count=6)['modes_covered'] == 0

  def test_low_quality_and_non_finite_samples(self):
    points = np.concatenate([_at_modes([1] * 8), [[0.0, 0.0], [np.nan, np.nan]]])
    result = mc.mode_coverage(points, _RING, _STD)
    assert result['high_quality_fraction'] == pytest.approx(8 / 10)
    assert result['modes_covered'] == 8
    assert result['kl_to_uniform'] == pytest.approx(0.0, abs=1e-12)

  def test_gaussian_mixture_fraction(self):
    # For an isotropic 2-D Gaussian, |x - mu| / std is Rayleigh distributed:
    # P(|x - mu| <= 3 std) = 1 - exp(-9 / 2).
    rng = np.random.default_rng(1)
    n = 20000
    points = _RING[rng.integers(0, 8, n)] + _STD * rng.normal(size=(n, 2))
    result = mc.mode_coverage(points, _RING, _STD)
    expected = 1 - math.exp(-4.5)
    assert abs(result['high_quality_fraction'] - expected) < 4 * math.sqrt(
        expected * (1 - expected) / n)
    assert result['modes_covered'] == 8
    assert result['counts'].sum() == round(result['high_quality_fraction'] * n)

  def test_numpy_outputs(self):
    result = mc.mode_coverage(_at_modes([1] * 8), _RING, _STD)
    assert isinstance(result['modes_covered'], int)
    assert isinstance(result['high_quality_fraction'], float)
    assert isinstance(result['counts'], np.ndarray) and result['counts'].dtype == np.int64

  @pytest.mark.parametrize('kwargs, match', [
      ({'std': 0.0}, 'std'),
      ({'std': -1.0}, 'std'),
      ({'std': float('nan')}, 'std'),
      ({'std': True}, 'std'),
      ({'radius_stds': 0.0}, 'radius_stds'),
      ({'radius_stds': -3.0}, 'radius_stds'),
      ({'min_count': 0}, 'min_count'),
      ({'min_count': 1.5}, 'min_count'),
      ({'min_count': True}, 'min_count'),
  ])
  def test_bad_arguments(self, kwargs, match):
    arguments = {'std': _STD, **kwargs}
    std = arguments.pop('std')
    with pytest.raises(ValueError, match=match):
      mc.mode_coverage(_at_modes([1] * 8), _RING, std, **arguments)

  def test_bad_shapes(self):
    with pytest.raises(ValueError, match='points.shape'):
      mc.mode_coverage(np.zeros((3, 3)), _RING, _STD)
