"""Tests of the EBGAN losses (eq. 6.1, 6.2, 6.60, 6.61) against numpy transcriptions."""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax import losses


def _uniform(seed, shape, low=-1.0, high=1.0):
  return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _np_pulling_away(embeddings):
  """Eq. 6.61 with a double loop over ordered pairs, in float64; a zero vector has cosine 0."""
  s = np.asarray(embeddings, np.float64).reshape(len(embeddings), -1)
  n = len(s)
  total = 0.0
  for i, j in itertools.product(range(n), range(n)):
    if i == j:
      continue
    ni, nj = np.linalg.norm(s[i]), np.linalg.norm(s[j])
    cos = 0.0 if ni == 0 or nj == 0 else s[i] @ s[j] / (ni * nj)
    total += cos ** 2
  return total / (n * (n - 1))


class TestAutoencoderEnergy:

  @pytest.mark.parametrize('reduction', ['mean', 'sum'])
  @pytest.mark.parametrize('shape', [(3, 5, 7, 2), (4, 10)])
  def test_matches_numpy(self, reduction, shape):
    x, rec = _uniform(0, shape), _uniform(1, shape)
    got = jax.jit(functools.partial(losses.autoencoder_energy, reduction=reduction))(x, rec)
    chex.assert_shape(got, (shape[0],))
    diff = (rec.astype(np.float64) - x).reshape(shape[0], -1)
    squared_norm = np.array([d @ d for d in diff])  # ||Dec(Enc(x)) - x||_2^2 of eq. 6.60
    expected = squared_norm if reduction == 'sum' else squared_norm / diff.shape[1]
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_zero_for_perfect_reconstruction(self):
    x = _uniform(0, (3, 4, 4, 1))
    np.testing.assert_array_equal(losses.autoencoder_energy(x, x), np.zeros(3))

  def test_non_negative(self):
    energy = losses.autoencoder_energy(_uniform(0, (16, 6, 6, 3)), _uniform(1, (16, 6, 6, 3)))
    assert np.all(np.asarray(energy) >= 0)
    assert np.all(np.asarray(energy) > 0)  # random images differ somewhere

  def test_sum_is_mean_times_elements_per_sample(self):
    x, rec = _uniform(0, (2, 8, 5, 3)), _uniform(1, (2, 8, 5, 3))
    mean = losses.autoencoder_energy(x, rec, reduction='mean')
    total = losses.autoencoder_energy(x, rec, reduction='sum')
    np.testing.assert_allclose(total, mean * 8 * 5 * 3, rtol=1e-6)

  def test_gradient(self):
    x, rec = _uniform(0, (2, 3, 3, 2)), _uniform(1, (2, 3, 3, 2))
    grad = jax.grad(lambda r: jnp.sum(losses.autoencoder_energy(x, r)))(jnp.asarray(rec))
    chex.assert_tree_all_finite(grad)
    np.testing.assert_allclose(grad, 2 * (rec - x) / 18, rtol=1e-5, atol=1e-7)

  def test_bad_input(self):
    with pytest.raises(ValueError, match='reconstruction'):
      losses.autoencoder_energy(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match='rank >= 2'):
      losses.autoencoder_energy(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match='reduction'):
      losses.autoencoder_energy(np.zeros((2, 4)), np.zeros((2, 4)), reduction='max')


def _np_discriminator_loss(real, fake, margin):
  return np.mean(real) + np.mean(np.maximum(margin - np.asarray(fake, np.float64), 0.0))


class TestEbganDiscriminatorLoss:

  @pytest.mark.parametrize('real, fake, margin', [
      ([0.5, 1.5], [0.2, 3.0, 12.0], 2.0),  # the hinge active on one sample out of three
      ([0.5, 1.5], [2.5, 3.0], 2.0),         # every fake beyond the margin: hinge inactive
      ([0.1, 0.3, 0.0], [0.2, 1.0], 10),     # every fake within the margin: hinge active
      ([0.5, 1.5], [0.0, 0.7], 0.0),         # margin 0: only the real term is left
  ])
  def test_matches_numpy(self, real, fake, margin):
    real, fake = np.float32(real), np.float32(fake)
    got = jax.jit(functools.partial(losses.ebgan_discriminator_loss, margin=margin))(real, fake)
    chex.assert_shape(got, ())
    np.testing.assert_allclose(got, _np_discriminator_loss(real, fake, margin), rtol=1e-6)

  def test_inactive_hinge_leaves_the_real_term(self):
    real, fake = _uniform(0, 8, 0, 1), _uniform(1, 8, 5, 6)
    np.testing.assert_allclose(losses.ebgan_discriminator_loss(real, fake, 4.0), np.mean(real),
                               rtol=1e-6)
    np.testing.assert_allclose(losses.ebgan_discriminator_loss(real, fake, 0), np.mean(real),
                               rtol=1e-6)

  def test_gradient(self):
    real, fake = np.float32([0.5, 1.5]), np.float32([0.2, 3.0, 12.0])
    g_real, g_fake = jax.grad(losses.ebgan_discriminator_loss, argnums=(0, 1))(real, fake, 2.0)
    chex.assert_tree_all_finite((g_real, g_fake))
    np.testing.assert_allclose(g_real, np.full(2, 1 / 2), rtol=1e-6)
    # d/dE of [m - E]^+ / B' is -1/B' inside the margin and 0 beyond it.
    np.testing.assert_allclose(g_fake, np.float32([-1 / 3, 0, 0]), rtol=1e-6)

  @pytest.mark.parametrize('margin', [-1.0, float('nan'), float('inf'), True, '1', None,
                                      np.array([1.0])])
  def test_bad_margin(self, margin):
    with pytest.raises(ValueError, match='margin'):
      losses.ebgan_discriminator_loss(np.zeros(2), np.zeros(2), margin)

  def test_traced_scalar_margin_is_a_schedule_value(self):
    real, fake = np.float32([0.5, 1.5]), np.float32([0.2, 3.0, 0.9])
    margin = jnp.float32(1.0)
    got = jax.jit(losses.ebgan_discriminator_loss)(real, fake, margin)
    np.testing.assert_allclose(got, np.mean(real) + np.mean(np.maximum(1.0 - fake, 0)), rtol=1e-6)
    with pytest.raises(ValueError, match='margin'):
      losses.ebgan_discriminator_loss(real, fake, jnp.ones((2,)))


class TestEbganGeneratorLoss:

  def test_matches_numpy_and_gradient(self):
    fake = _uniform(0, 6, 0, 3)
    np.testing.assert_allclose(jax.jit(losses.ebgan_generator_loss)(fake), np.mean(fake),
                               rtol=1e-6)
    grad = jax.grad(losses.ebgan_generator_loss)(fake)
    chex.assert_tree_all_finite(grad)
    np.testing.assert_allclose(grad, np.full(6, 1 / 6), rtol=1e-6)

  def test_keeps_a_gradient_beyond_the_margin(self):
    # Section 6.2.1: unlike the hinge of eq. 6.1, eq. 6.2 pushes energies down past the margin.
    fake = np.float32([5.0, 7.0])
    g_gen = jax.grad(losses.ebgan_generator_loss)(fake)
    g_hinge = jax.grad(losses.ebgan_discriminator_loss, argnums=1)(np.zeros(2, np.float32), fake,
                                                                   2.0)
    assert np.all(np.asarray(g_gen) > 0)
    np.testing.assert_array_equal(g_hinge, np.zeros(2))


class TestPullingAwayTerm:

  @pytest.mark.parametrize('shape', [(5, 3, 4), (7, 16), (2, 3)])
  def test_matches_numpy_double_loop(self, shape):
    s = _uniform(0, shape)
    got = jax.jit(losses.pulling_away_term)(s)
    chex.assert_shape(got, ())
    np.testing.assert_allclose(got, _np_pulling_away(s), rtol=1e-5)

  def test_invariant_to_scaling_each_embedding(self):
    s = _uniform(0, (6, 8))
    rng = np.random.default_rng(1)
    scales = (rng.choice([-1, 1], 6) * 10.0 ** rng.uniform(-2, 2, 6)).astype(np.float32)
    np.testing.assert_allclose(losses.pulling_away_term(s * scales[:, None]),
                               losses.pulling_away_term(s), rtol=1e-5)

  def test_one_for_identical_directions(self):
    # Anti-parallel embeddings count as aligned: the cosine is squared.
    direction = _uniform(0, (1, 2, 3))
    s = direction * np.float32([1.0, 3.0, -0.5, -2.0])[:, None, None]
    np.testing.assert_allclose(losses.pulling_away_term(s), 1.0, rtol=1e-6)

  def test_zero_for_orthogonal(self):
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))
    s = (q.T[:5] * np.float64([1, 2, 0.5, 4, 3])[:, None]).astype(np.float32)
    np.testing.assert_allclose(losses.pulling_away_term(s), 0.0, atol=1e-6)

  def test_in_unit_interval(self):
    for seed in range(3):
      value = float(losses.pulling_away_term(_uniform(seed, (9, 4))))
      assert 0.0 <= value <= 1.0

  def test_zero_vectors(self):
    s = _uniform(0, (4, 5))
    s[2] = 0.0
    value, grad = jax.value_and_grad(losses.pulling_away_term)(jnp.asarray(s))
    np.testing.assert_allclose(value, _np_pulling_away(s), rtol=1e-5)
    chex.assert_tree_all_finite(grad)
    value, grad = jax.value_and_grad(losses.pulling_away_term)(jnp.zeros((3, 4)))
    assert float(value) == 0.0
    chex.assert_tree_all_finite(grad)

  def test_gradient_matches_finite_differences(self):
    s = _uniform(0, (4, 3)).astype(np.float64)
    grad = np.asarray(jax.grad(losses.pulling_away_term)(jnp.asarray(s, jnp.float32)))
    chex.assert_tree_all_finite(grad)
    h = 1e-6
    expected = np.zeros_like(s)
    for idx in np.ndindex(*s.shape):
      plus, minus = s.copy(), s.copy()
      plus[idx] += h
      minus[idx] -= h
      expected[idx] = (_np_pulling_away(plus) - _np_pulling_away(minus)) / (2 * h)
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-5)

  def test_bad_input(self):
    with pytest.raises(ValueError, match='N >= 2'):
      losses.pulling_away_term(np.ones((1, 4)))
    with pytest.raises(ValueError, match='N >= 2'):
      jax.jit(losses.pulling_away_term)(np.ones((1, 4)))
    with pytest.raises(ValueError, match='rank >= 2'):
      losses.pulling_away_term(np.ones(4))
