"""Tests of uncertainty_jax.losses against numpy transcriptions of eq. 4.1-4.6."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax import losses


def _images(seed, shape):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _np_gdl_sum(pred, target, alpha):
  """Eq. 4.5 term by term, with explicit pixel loops, summed over all images and channels."""
  pred = pred.reshape((-1,) + pred.shape[-3:]).astype(np.float64)
  target = target.reshape((-1,) + target.shape[-3:]).astype(np.float64)
  _, h, w, _ = pred.shape
  total = 0.0
  for y, yhat in zip(target, pred):
    for i in range(h):
      for j in range(w):
        if i >= 1:
          total += np.sum(np.abs(np.abs(y[i, j] - y[i - 1, j])
                                 - np.abs(yhat[i, j] - yhat[i - 1, j])) ** alpha)
        if j >= 1:
          total += np.sum(np.abs(np.abs(y[i, j - 1] - y[i, j])
                                 - np.abs(yhat[i, j - 1] - yhat[i, j])) ** alpha)
  return total


def _np_bce(probs, labels):
  return np.mean(-(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


class TestLpLoss:

  @pytest.mark.parametrize('p', [1, 2, 1.5, 3])
  @pytest.mark.parametrize('shape', [(3, 5, 7, 2), (1, 9, 4, 3), (6,)])
  def test_matches_numpy(self, p, shape):
    pred, target = _images(0, shape), _images(1, shape)
    got = jax.jit(functools.partial(losses.lp_loss, p=p))(pred, target)
    expected = np.sum(np.abs(pred.astype(np.float64) - target) ** p) / pred.size
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_zero_for_identical(self):
    x = _images(0, (2, 4, 4, 3))
    assert float(losses.lp_loss(x, x, 1)) == 0.0

  def test_gradient(self):
    pred, target = _images(0, (2, 3, 3, 1)), _images(1, (2, 3, 3, 1))
    grad = jax.grad(losses.lp_loss)(jnp.asarray(pred), target, 2)
    np.testing.assert_allclose(grad, 2 * (pred - target) / pred.size, rtol=1e-5)

  def test_shape_mismatch(self):
    with pytest.raises(ValueError, match=r'\(2, 4, 4, 3\).*\(2, 4, 5, 3\)'):
      losses.lp_loss(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 4, 5, 3)), 1)

  @pytest.mark.parametrize('p', [0, -1, -0.5])
  def test_bad_p(self, p):
    with pytest.raises(ValueError, match='p must be a positive number'):
      losses.lp_loss(jnp.zeros((2, 2)), jnp.zeros((2, 2)), p)


class TestGradientDifferenceLoss:

  @pytest.mark.parametrize('alpha', [1, 2, 3, 1.5])
  @pytest.mark.parametrize('shape', [(2, 5, 7, 3), (1, 6, 3, 1), (2, 3, 4, 4, 2)])
  def test_sum_matches_numpy(self, alpha, shape):
    pred, target = _images(2, shape), _images(3, shape)
    gdl = jax.jit(functools.partial(losses.gradient_difference_loss, alpha=alpha, reduction='sum'))
    np.testing.assert_allclose(gdl(pred, target), _np_gdl_sum(pred, target, alpha), rtol=1e-5)

  @pytest.mark.parametrize('alpha', [1, 2])
  def test_mean_is_sum_over_element_count(self, alpha):
    shape = (3, 5, 6, 2)
    pred, target = _images(4, shape), _images(5, shape)
    got = jax.jit(functools.partial(losses.gradient_difference_loss, alpha=alpha))(pred, target)
    np.testing.assert_allclose(got, _np_gdl_sum(pred, target, alpha) / (3 * 5 * 6 * 2), rtol=1e-5)

  @pytest.mark.parametrize('reduction', ['mean', 'sum'])
  def test_zero_for_identical_and_constant_offset(self, reduction):
    x = _images(6, (2, 8, 8, 3))
    assert float(losses.gradient_difference_loss(x, x, 1, reduction=reduction)) == 0.0
    # Powers of two keep x + offset exact, so the neighbour differences are unchanged.
    x = np.round(x * 64) / 64
    offset = np.float32(0.25)
    np.testing.assert_allclose(
        losses.gradient_difference_loss(x + offset, x, 2, reduction=reduction), 0.0, atol=1e-12)

  def test_checkerboard_against_flat(self):
    # Every neighbour pair of a 0/1 checkerboard differs by 1, of a flat image by 0.
    flat = np.zeros((1, 4, 4, 1), np.float32)
    checker = (np.indices((4, 4)).sum(0) % 2).astype(np.float32)[None, :, :, None]
    got = float(losses.gradient_difference_loss(checker, flat, 1, reduction='sum'))
    assert got == _np_gdl_sum(checker, flat, 1) == 2 * 4 * 3

  def test_gradient_nonzero(self):
    pred, target = _images(7, (2, 6, 6, 3)), _images(8, (2, 6, 6, 3))
    grad = jax.grad(losses.gradient_difference_loss)(jnp.asarray(pred), target, 1)
    chex.assert_tree_all_finite(grad)
    assert float(jnp.mean(jnp.abs(grad) > 0)) > 0.5

  def test_shape_mismatch(self):
    with pytest.raises(ValueError, match=r'\(1, 4, 4, 3\).*\(1, 4, 4, 1\)'):
      losses.gradient_difference_loss(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 4, 1)), 1)

  @pytest.mark.parametrize('alpha', [0, 0.5, -1])
  def test_bad_alpha(self, alpha):
    with pytest.raises(ValueError, match='alpha must be a number >= 1'):
      losses.gradient_difference_loss(jnp.zeros((4, 4, 1)), jnp.zeros((4, 4, 1)), alpha)

  def test_bad_reduction(self):
    with pytest.raises(ValueError, match="reduction must be one of .*'max'"):
      losses.gradient_difference_loss(jnp.zeros((4, 4, 1)), jnp.zeros((4, 4, 1)), 1,
                                      reduction='max')

  def test_rank_too_small(self):
    with pytest.raises(ValueError, match='rank >= 3'):
      losses.gradient_difference_loss(jnp.zeros((4, 4)), jnp.zeros((4, 4)), 1)

  def test_traced_alpha_rejected(self):
    with pytest.raises(ValueError, match='alpha must be a concrete number'):
      jax.jit(losses.gradient_difference_loss)(jnp.zeros((4, 4, 1)), jnp.zeros((4, 4, 1)), 1.0)


class TestBinaryCrossEntropy:

  def test_matches_numpy_from_probabilities(self):
    rng = np.random.default_rng(9)
    logits = rng.normal(0, 3, (16, 1)).astype(np.float32)
    labels = rng.uniform(0, 1, (16, 1)).astype(np.float32)
    got = jax.jit(losses.binary_cross_entropy_with_logits)(logits, labels)
    np.testing.assert_allclose(got, _np_bce(_sigmoid(logits), labels), rtol=1e-5)

  @pytest.mark.parametrize('label', [0.0, 1.0])
  def test_scalar_label(self, label):
    logits = np.linspace(-4, 4, 9, dtype=np.float32)
    got = losses.binary_cross_entropy_with_logits(logits, label)
    np.testing.assert_allclose(got, _np_bce(_sigmoid(logits), np.full(9, label)), rtol=1e-5)

  def test_stable_for_confident_logits(self):
    # -log(sigmoid(-100)) = log(1 + e^100) = 100 + log(1 + e^-100): sigmoid would round to 1 first.
    got = losses.binary_cross_entropy_with_logits(jnp.array([100.0, -100.0]), jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(got, 100.0, rtol=1e-6)
    grad = jax.grad(losses.binary_cross_entropy_with_logits)(jnp.array([100.0, -100.0]),
                                                             jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(grad, [0.5, -0.5], rtol=1e-6)

  def test_label_shape_mismatch(self):
    with pytest.raises(ValueError, match=r'\(4,\).*\(4, 1\)'):
      losses.binary_cross_entropy_with_logits(jnp.zeros((4,)), jnp.zeros((4, 1)))


class TestAdversarialLosses:

  @pytest.mark.parametrize('shape', [(5,), (5, 1)])
  def test_zero_logits(self, shape):
    zeros = jnp.zeros(shape)
    np.testing.assert_allclose(losses.generator_bce_loss(zeros), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(losses.discriminator_bce_loss(zeros, zeros), 2 * np.log(2),
                               rtol=1e-6)

  def test_known_logits(self):
    real = np.array([2.0, -1.0, 0.5], np.float32)
    fake = np.array([[-3.0], [1.0]], np.float32)
    np.testing.assert_allclose(
        jax.jit(losses.discriminator_bce_loss)(real, fake),
        np.mean(np.log1p(np.exp(-real.astype(np.float64)))) + np.mean(np.log1p(np.exp(fake))),
        rtol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.generator_bce_loss)(fake),
                               np.mean(np.log1p(np.exp(-fake.astype(np.float64)))), rtol=1e-6)

  def test_perfect_discriminator(self):
    # A discriminator sure of the truth has near-zero loss; the generator it fools has a large one.
    real, fake = jnp.full((4,), 30.0), jnp.full((4,), -30.0)
    assert float(losses.discriminator_bce_loss(real, fake)) < 1e-12
    np.testing.assert_allclose(losses.generator_bce_loss(fake), 30.0, rtol=1e-6)


def _scales(seed, batch=2, sizes=((4, 4), (8, 8), (16, 16)), channels=3):
  preds = [_images(seed + k, (batch, h, w, channels)) for k, (h, w) in enumerate(sizes)]
  targets = [_images(seed + 10 + k, (batch, h, w, channels)) for k, (h, w) in enumerate(sizes)]
  return preds, targets


class TestCombinedGeneratorLoss:

  def test_total_is_weighted_sum_of_terms(self):
    preds, targets = _scales(20)
    fake = [np.random.default_rng(30 + k).normal(size=(2, 1)).astype(np.float32) for k in range(3)]
    fn = functools.partial(losses.combined_generator_loss, p=1, alpha=1)

    @jax.jit
    def run(preds, targets, fake, lambdas):
      return fn(preds, targets, fake, lambda_adv=lambdas[0], lambda_lp=lambdas[1],
                lambda_gdl=lambdas[2])

    lambdas = jnp.array([0.05, 1.0, 0.7])
    total, terms = run(preds, targets, fake, lambdas)
    expected_keys = {f'{n}/scale_{k}' for n in ('lp', 'gdl', 'adv') for k in range(3)}
    assert set(terms) == expected_keys | {'lp', 'gdl', 'adv', 'total'}
    lp = [np.mean(np.abs(p.astype(np.float64) - t)) for p, t in zip(preds, targets)]
    gdl = [_np_gdl_sum(p, t, 1) / p.size for p, t in zip(preds, targets)]
    adv = [np.mean(np.log1p(np.exp(-f.astype(np.float64)))) for f in fake]
    for k in range(3):
      np.testing.assert_allclose(terms[f'lp/scale_{k}'], lp[k], rtol=1e-5)
      np.testing.assert_allclose(terms[f'gdl/scale_{k}'], gdl[k], rtol=1e-5)
      np.testing.assert_allclose(terms[f'adv/scale_{k}'], adv[k], rtol=1e-5)
    np.testing.assert_allclose(terms['lp'], sum(lp), rtol=1e-5)
    np.testing.assert_allclose(terms['gdl'], sum(gdl), rtol=1e-5)
    np.testing.assert_allclose(terms['adv'], sum(adv), rtol=1e-5)
    hand = 0.05 * sum(adv) + 1.0 * sum(lp) + 0.7 * sum(gdl)
    np.testing.assert_allclose(total, hand, rtol=1e-5)
    np.testing.assert_allclose(terms['total'], hand, rtol=1e-5)

  def test_without_adversarial_term(self):
    preds, targets = _scales(40, sizes=((5, 7), (10, 14)), channels=1)
    total, terms = losses.combined_generator_loss(preds, targets, None, lambda_adv=0.05,
                                                  lambda_lp=1.0, p=2, lambda_gdl=2.0, alpha=2)
    assert set(terms) == {'lp/scale_0', 'lp/scale_1', 'gdl/scale_0', 'gdl/scale_1', 'lp', 'gdl',
                          'total'}
    lp = sum(np.mean((p.astype(np.float64) - t) ** 2) for p, t in zip(preds, targets))
    gdl = sum(_np_gdl_sum(p, t, 2) / p.size for p, t in zip(preds, targets))
    np.testing.assert_allclose(total, lp + 2.0 * gdl, rtol=1e-5)

  def test_gradient_reaches_every_scale(self):
    preds, targets = _scales(50)
    fake = [jnp.zeros((2,)) for _ in range(3)]

    def loss(preds):
      return losses.combined_generator_loss(preds, targets, fake, lambda_adv=0.05, lambda_lp=1.0,
                                            p=1, lambda_gdl=1.0, alpha=1)[0]

    grads = jax.jit(jax.grad(loss))([jnp.asarray(p) for p in preds])
    for g in grads:
      chex.assert_tree_all_finite(g)
      assert float(jnp.max(jnp.abs(g))) > 0

  def test_mismatched_lengths(self):
    preds, targets = _scales(60)
    kwargs = dict(lambda_adv=1.0, lambda_lp=1.0, p=1, lambda_gdl=1.0, alpha=1)
    with pytest.raises(ValueError, match=r'targets must have one entry per scale of preds \(3\)'):
      losses.combined_generator_loss(preds, targets[:2], None, **kwargs)
    with pytest.raises(ValueError, match=r'fake_logits must have one entry per scale .*got 2'):
      losses.combined_generator_loss(preds, targets, [jnp.zeros(2)] * 2, **kwargs)
    with pytest.raises(ValueError, match='preds must hold at least one scale'):
      losses.combined_generator_loss([], [], None, **kwargs)

  def test_bad_logits_shape(self):
    preds, targets = _scales(70)
    with pytest.raises(ValueError, match=r'fake_logits\[1\] must have shape \[B\] or \[B, 1\]'):
      losses.combined_generator_loss(preds, targets, [jnp.zeros(2), jnp.zeros((3,)), jnp.zeros(2)],
                                     lambda_adv=1.0, lambda_lp=1.0, p=1, lambda_gdl=1.0, alpha=1)

  def test_scale_shape_mismatch(self):
    preds, targets = _scales(80)
    targets[2] = targets[2][:, :8]
    with pytest.raises(ValueError, match=r'\(2, 16, 16, 3\).*\(2, 8, 16, 3\)'):
      losses.combined_generator_loss(preds, targets, None, lambda_adv=1.0, lambda_lp=1.0, p=1,
                                     lambda_gdl=1.0, alpha=1)
