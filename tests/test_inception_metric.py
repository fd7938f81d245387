"""Tests of the tweaked inception score I' (eq. 6.62) against a numpy transcription."""

import functools
import math

import chex
import jax
import numpy as np
import pytest

from uncertainty_jax import metrics


def _np_kl(p, q):
  """KL(p || q) in float64 by its definition, with 0 log 0 = 0."""
  return sum(pc * (math.log(pc) - (math.log(qc) if qc > 0 else -math.inf))
             for pc, qc in zip(p, q) if pc > 0)


def _np_floored(table, floor):
  table = np.maximum(np.asarray(table, np.float64), floor)
  return table / table.sum(axis=1, keepdims=True)


def _np_tweaked_is(table, floor):
  """Eq. 6.62 on the floored, renormalised table: mean over x of KL(p(y) || p(y|x))."""
  table = _np_floored(table, floor)
  marginal = table.mean(axis=0)
  return np.mean([_np_kl(marginal, row) for row in table])


def _dirichlet(seed, n, c, alpha=1.0):
  return np.random.default_rng(seed).dirichlet(np.full(c, alpha), n).astype(np.float32)


def _one_hot(labels, c):
  return np.eye(c, dtype=np.float32)[labels]


_HAND_BUILT = np.float32([[0.7, 0.2, 0.1],
                          [0.1, 0.8, 0.1],
                          [0.3, 0.3, 0.4],
                          [0.05, 0.05, 0.9]])


class TestTweakedInceptionScore:

  @pytest.mark.parametrize('table', [_HAND_BUILT, _dirichlet(0, 50, 10), _dirichlet(1, 7, 4, 0.2)],
                           ids=['hand_built', 'dirichlet_50x10', 'peaked_7x4'])
  def test_matches_numpy(self, table):
    got = jax.jit(metrics.tweaked_inception_score)(table)
    chex.assert_shape(got, ())
    np.testing.assert_allclose(got, _np_tweaked_is(table, 1e-12), rtol=1e-5, atol=1e-6)

  def test_is_the_literal_formula_without_small_entries(self):
    # Entries all above the floor: the floor changes nothing, I' is eq. 6.62 on the raw table.
    marginal = _HAND_BUILT.astype(np.float64).mean(axis=0)
    literal = np.mean([_np_kl(marginal, row) for row in _HAND_BUILT.astype(np.float64)])
    np.testing.assert_allclose(metrics.tweaked_inception_score(_HAND_BUILT), literal, rtol=1e-5)
    np.testing.assert_allclose(metrics.tweaked_inception_score(_HAND_BUILT, floor=0.0), literal,
                               rtol=1e-5)

  def test_kl_arguments_are_swapped(self):
    # The usual inception score's KL(p(y|x) || p(y)) gives another number on this table.
    table = _HAND_BUILT.astype(np.float64)
    marginal = table.mean(axis=0)
    usual = np.mean([_np_kl(row, marginal) for row in table])
    swapped = np.mean([_np_kl(marginal, row) for row in table])
    assert abs(usual - swapped) > 1e-2
    got = float(metrics.tweaked_inception_score(_HAND_BUILT))
    assert abs(got - swapped) < 1e-5
    assert abs(got - usual) > 1e-2

  @pytest.mark.parametrize('row', [[0.2, 0.5, 0.3], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
  def test_zero_when_all_rows_equal(self, row):
    table = np.tile(np.float32(row), (6, 1))
    np.testing.assert_allclose(metrics.tweaked_inception_score(table), 0.0, atol=1e-6)

  def test_non_negative(self):
    for seed in range(3):
      assert float(metrics.tweaked_inception_score(_dirichlet(seed, 20, 5, 0.5))) >= -1e-6

  def test_invariant_to_sample_order(self):
    table = _dirichlet(3, 30, 6)
    perm = np.random.default_rng(4).permutation(30)
    np.testing.assert_allclose(metrics.tweaked_inception_score(table[perm]),
                               metrics.tweaked_inception_score(table), rtol=1e-6)

  def test_floor_on_a_table_with_exact_zeros(self):
    table = np.float32([[1.0, 0.0, 0.0],
                        [0.0, 0.6, 0.4],
                        [0.5, 0.5, 0.0]])
    # Without a floor the swapped KL is infinite: p(y) > 0 where some p(y|x) = 0.
    assert np.isposinf(float(metrics.tweaked_inception_score(table, floor=0.0)))
    values = {}
    for floor in [1e-12, 1e-6, 1e-3]:
      values[floor] = float(metrics.tweaked_inception_score(table, floor=floor))
      assert math.isfinite(values[floor])
      np.testing.assert_allclose(values[floor], _np_tweaked_is(table, floor), rtol=1e-5)
    # A smaller floor rules out more of the marginal's mass, so the score grows.
    assert values[1e-12] > values[1e-6] > values[1e-3]

  def test_floored_rows_are_renormalised(self):
    # Equal one-hot rows stay equal once floored, so I' is exactly 0, not log(1 + (C - 1) floor).
    table = np.tile(np.float32([0.0, 1.0, 0.0, 0.0]), (3, 1))
    np.testing.assert_allclose(metrics.tweaked_inception_score(table, floor=1e-3), 0.0, atol=1e-7)

  @pytest.mark.parametrize('num_classes, floor', [(10, 1e-12), (4, 1e-6), (3, 1e-2)])
  def test_even_one_hot_closed_form(self, num_classes, floor):
    table = _one_hot(np.tile(np.arange(num_classes), 3), num_classes)
    c = num_classes
    closed_form = ((c - 1) / c * math.log(1 / floor) - math.log(c)
                   + math.log(1 + (c - 1) * floor))
    got = float(metrics.tweaked_inception_score(table, floor=floor))
    np.testing.assert_allclose(got, closed_form, rtol=1e-5)
    np.testing.assert_allclose(got, _np_tweaked_is(table, floor), rtol=1e-5)

  def test_even_one_hot_scores_above_other_tables(self):
    c = 10
    best = float(metrics.tweaked_inception_score(_one_hot(np.arange(2 * c) % c, c)))
    uneven = _one_hot(np.array([0] * 11 + list(range(1, c)) * 1), c)  # class 0 over-represented
    two_classes = _one_hot(np.arange(20) % 2, c)
    for table in [uneven, two_classes, _dirichlet(0, 40, c, 0.1), _dirichlet(1, 40, c)]:
      assert float(metrics.tweaked_inception_score(table)) < best

  def test_jit_with_floor_and_integer_table(self):
    table = np.eye(3, dtype=np.int32)[[0, 1, 2, 1]]
    got = jax.jit(functools.partial(metrics.tweaked_inception_score, floor=1e-4))(table)
    np.testing.assert_allclose(got, _np_tweaked_is(table, 1e-4), rtol=1e-5)

  @pytest.mark.parametrize('table, match', [
      (np.full(3, 1 / 3), r'\[N, C\]'),
      (np.full((2, 2, 2), 0.5), r'\[N, C\]'),
      (np.zeros((0, 3)), r'\[N, C\]'),
      (np.float32([[1.2, -0.2], [0.5, 0.5]]), '>= 0'),
      (np.float32([[np.nan, 1.0], [0.5, 0.5]]), '>= 0'),
      (np.float32([[0.3, 0.3], [0.5, 0.5]]), 'sum to 1'),
      (np.float32([[2.0, -1.0], [0.5, 0.5]]), '>= 0'),
      (np.float32([[3.0, 1.0], [2.0, 5.0]]), 'sum to 1'),  # logits, not probabilities
  ])
  def test_bad_class_probs(self, table, match):
    with pytest.raises(ValueError, match=match):
      metrics.tweaked_inception_score(table)

  def test_bad_class_probs_as_jax_array(self):
    with pytest.raises(ValueError, match='sum to 1'):
      metrics.tweaked_inception_score(jax.numpy.asarray([[0.3, 0.3], [0.5, 0.5]]))

  def test_shape_checked_under_jit(self):
    with pytest.raises(ValueError, match=r'\[N, C\]'):
      jax.jit(metrics.tweaked_inception_score)(np.full(3, 1 / 3))

  @pytest.mark.parametrize('floor', [-1e-3, 0.25, 1.0, float('nan'), '1e-12', None, True,
                                     np.array([1e-3])])
  def test_bad_floor(self, floor):
    # C = 4 classes: the floor must be below 1/4.
    with pytest.raises(ValueError, match='floor'):
      metrics.tweaked_inception_score(_dirichlet(0, 3, 4), floor=floor)
