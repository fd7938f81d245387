"""Tests of uncertainty_jax.evaluation.modes: assignment to futures and the mode-fidelity scores."""

import numpy as np
import pytest

from uncertainty_jax.evaluation import modes

_N, _K, _H, _W, _C = 3, 4, 5, 6, 3


def _futures(seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (_N, _K, _H, _W, _C)).astype(np.float32)


def _constant_futures(num_inputs, num_modes):
  """Future k of every input is the constant image 0.4 k - 0.6: RMSEs between them are exact."""
  values = 0.4 * np.arange(num_modes) - 0.6
  return np.broadcast_to(values[None, :, None, None, None],
                         (num_inputs, num_modes, 2, 2, 1)).astype(np.float64)


def _pick(futures, index):
  """`[N, S, H, W, C]`: sample s of input n is future `index[n, s]`."""
  return futures[np.arange(futures.shape[0])[:, None], index]


def _np_kl(p, q):
  return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0))


def _np_jensen_shannon(p, q):
  m = (p + q) / 2
  return 0.5 * _np_kl(p, m) + 0.5 * _np_kl(q, m)


class TestAssignModes:

  def test_samples_equal_to_futures(self):
    futures = _futures()
    index = np.random.default_rng(1).integers(0, _K, (_N, 5))
    got_index, distance = modes.assign_modes(_pick(futures, index), futures)
    np.testing.assert_array_equal(got_index, index)
    np.testing.assert_array_equal(distance, 0.0)
    assert got_index.shape == distance.shape == (_N, 5)

  def test_distance_is_rmse_to_nearest(self):
    futures = _futures()
    samples = np.random.default_rng(2).uniform(-1, 1, (_N, 7, _H, _W, _C))
    index, distance = modes.assign_modes(samples, futures)
    for n in range(_N):
      for s in range(7):
        rmse = [np.linalg.norm(samples[n, s] - futures[n, k]) / np.sqrt(_H * _W * _C)
                for k in range(_K)]
        assert index[n, s] == np.argmin(rmse)
        np.testing.assert_allclose(distance[n, s], min(rmse), rtol=1e-6)

  def test_noisy_samples_keep_their_mode(self):
    futures = _futures()
    index = np.random.default_rng(3).integers(0, _K, (_N, 4))
    noise = np.random.default_rng(4).normal(0, 0.01, (_N, 4, _H, _W, _C))
    got_index, distance = modes.assign_modes(_pick(futures, index) + noise, futures)
    np.testing.assert_array_equal(got_index, index)
    np.testing.assert_allclose(distance, np.sqrt(np.mean(noise**2, axis=(2, 3, 4))),
                               rtol=1e-6)


class TestModeScores:

  def test_keys(self):
    futures = _futures()
    scores = modes.mode_scores(futures[:, :1], futures, np.full(_K, 1 / _K))
    assert tuple(scores) == modes.MODE_SCORES
    assert all(isinstance(value, float) for value in scores.values())

  def test_coverage_and_divergence_from_counts(self):
    futures = _constant_futures(3, 4)
    index = np.array([[0, 0, 1], [2, 2, 2], [0, 1, 3]])
    probs = np.array([0.4, 0.3, 0.3, 0.0])
    scores = modes.mode_scores(_pick(futures, index), futures, probs)
    # Mode 3 has probability 0: it is not among the modes to cover, and hitting it covers nothing.
    expected_coverage = np.mean([len({0, 1}) / 3, len({2}) / 3, len({0, 1}) / 3])
    np.testing.assert_allclose(scores['mode_coverage'], expected_coverage, rtol=1e-12)
    frequencies = np.bincount(index.ravel(), minlength=4) / index.size
    np.testing.assert_allclose(frequencies, [3 / 9, 2 / 9, 3 / 9, 1 / 9])
    np.testing.assert_allclose(scores['mode_divergence'],
                               _np_jensen_shannon(frequencies, probs), rtol=1e-12)
    assert scores['mode_distance'] == 0.0

  def test_divergence_closed_forms(self):
    futures = _constant_futures(2, 2)
    # Disjoint supports: ln 2, the maximum.
    only_first = _pick(futures, np.zeros((2, 3), int))
    np.testing.assert_allclose(modes.mode_scores(only_first, futures, [0.0, 1.0])
                               ['mode_divergence'], np.log(2), rtol=1e-12)
    # Frequencies equal to the probabilities: 0.
    half = _pick(futures, np.array([[0, 1], [1, 0]]))
    assert modes.mode_scores(half, futures, [0.5, 0.5])['mode_divergence'] == 0.0
    # q = (1, 0), p = (1/2, 1/2), m = (3/4, 1/4): KL(p || m) = 1/2 ln(2/3) + 1/2 ln 2 and
    # KL(q || m) = ln(4/3).
    expected = 0.25 * np.log(2 / 3) + 0.25 * np.log(2) + 0.5 * np.log(4 / 3)
    np.testing.assert_allclose(modes.mode_scores(only_first, futures, [0.5, 0.5])
                               ['mode_divergence'], expected, rtol=1e-12)

  def test_faithful_sampler(self):
    futures = _futures()
    index = np.tile(np.arange(_K), (_N, 2))  # every mode twice per input
    scores = modes.mode_scores(_pick(futures, index), futures, np.full(_K, 1 / _K))
    assert scores['mode_distance'] == 0.0
    assert scores['mode_coverage'] == 1.0
    assert scores['mode_divergence'] == 0.0
    mean = futures.astype(np.float64).mean(axis=1)
    expected_blur = np.mean([min(np.sqrt(np.mean((mean[n] - futures[n, k])**2))
                                 for k in range(_K)) for n in range(_N)])
    np.testing.assert_allclose(scores['blur_distance'], expected_blur, rtol=1e-6)

  def test_collapsed_sharp_predictor(self):
    futures = _futures()
    probs = np.array([0.4, 0.2, 0.2, 0.2])
    scores = modes.mode_scores(futures[:, :1], futures, probs)  # always 'the most likely'
    assert scores['mode_distance'] == 0.0 and scores['blur_distance'] == 0.0
    assert scores['mode_coverage'] == 1 / _K
    np.testing.assert_allclose(scores['mode_divergence'],
                               _np_jensen_shannon(np.eye(_K)[0], probs), rtol=1e-12)
    assert scores['mode_divergence'] > 0.2

  def test_average_of_futures_is_blurred(self):
    futures = _futures()
    probs = np.array([0.4, 0.2, 0.2, 0.2])
    average = modes.average_future(futures, probs)
    np.testing.assert_allclose(average, np.tensordot(probs, futures, axes=([0], [1])),
                               rtol=1e-6, atol=1e-7)
    blurred = modes.mode_scores(average[:, None], futures, probs)
    for k in range(_K):
      sharp = modes.mode_scores(futures[:, k:k + 1], futures, probs)
      assert blurred['blur_distance'] > sharp['blur_distance'] == 0.0
      assert blurred['mode_distance'] > sharp['mode_distance'] == 0.0
    rmse = np.sqrt(np.mean((average[:, None] - futures)**2, axis=(2, 3, 4)))
    np.testing.assert_allclose(blurred['blur_distance'], rmse.min(axis=1).mean(), rtol=1e-6)
    assert blurred['blur_distance'] > 0.2

  def test_blur_of_disagreeing_samples(self):
    futures = _constant_futures(1, 2)  # values -0.6 and -0.2
    scores = modes.mode_scores(_pick(futures, np.array([[0, 1]])), futures, [0.5, 0.5])
    # The mean sample is -0.4, 0.2 from both futures.
    np.testing.assert_allclose(scores['blur_distance'], 0.2, rtol=1e-12)
    assert scores['mode_distance'] == 0.0


class TestBadInput:

  @pytest.mark.parametrize('samples_shape, futures_shape, match', [
      ((_N, _H, _W, _C), (_N, _K, _H, _W, _C), 'samples'),
      ((_N, 2, _H, _W, _C), (_N, _H, _W, _C), 'futures'),
      ((_N + 1, 2, _H, _W, _C), (_N, _K, _H, _W, _C), 'samples'),
      ((_N, 2, _H, _W + 1, _C), (_N, _K, _H, _W, _C), 'samples'),
      ((_N, 0, _H, _W, _C), (_N, _K, _H, _W, _C), 'samples'),
      ((_N, 2, _H, _W, _C), (_N, 0, _H, _W, _C), 'futures'),
  ])
  def test_shapes(self, samples_shape, futures_shape, match):
    with pytest.raises(ValueError, match=match):
      modes.assign_modes(np.zeros(samples_shape), np.zeros(futures_shape))
    with pytest.raises(ValueError, match=match):
      modes.mode_scores(np.zeros(samples_shape), np.zeros(futures_shape), np.full(_K, 1 / _K))

  @pytest.mark.parametrize('probs', [
      [0.5, 0.5], [0.4, 0.3, 0.3, 0.3], [0.6, 0.6, -0.2, 0.0], [np.nan, 0.5, 0.5, 0.0], 'abcd'])
  def test_probs(self, probs):
    futures = _futures()
    with pytest.raises(ValueError, match='probs'):
      modes.mode_scores(futures[:, :1], futures, probs)
    with pytest.raises(ValueError, match='probs'):
      modes.average_future(futures, probs)
