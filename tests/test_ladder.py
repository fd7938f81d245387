"""Tests of the Ladder Network (models.ladder), its losses (losses.ladder) and the semi-supervised
batches (data.labelled), against numpy transcriptions of Rasmus et al. (2015), Algorithm 1."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uncertainty_jax import losses
from uncertainty_jax.data import images
from uncertainty_jax.data import labelled
from uncertainty_jax.models import ladder

SIZES = (16, 8, 10)
DIM = 64
BATCH = 6
BOTTOM_COST = (1.0, 0.0, 0.0, 0.0)


def _uniform(seed, shape, low=-1.0, high=1.0):
  return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_combinator(z, u, a):
  """Eq. (2) of Rasmus et al. (2015), with a[i] = a_{i+1}."""
  mu = a[0] * _np_sigmoid(a[1] * u + a[2]) + a[3] * u + a[4]
  v = a[5] * _np_sigmoid(a[6] * u + a[7]) + a[8] * u + a[9]
  return (z - mu) * v + mu


def _np_normalise(z, stats, eps):
  """(z - mean) / sqrt(var + eps) with the batch's statistics, or with `stats` = (mean, var)."""
  mean, var = (z.mean(0), z.var(0)) if stats is None else stats
  std = np.sqrt(var + eps)
  return (z - mean) / std, mean, std


def _np_ladder(variables, x, eps=ladder.BN_EPSILON, running=False):
  """Algorithm 1 without noise (the noisy path is then the clean one), in float64.

  Returns (logits, z_clean, z_hat_bn, batch statistics {name: (mean, var)} of the batch norms).
  With `running`, every batch norm uses the running averages of `variables['batch_stats']`.
  """
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables['params'])
  bs = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables['batch_stats'])
  stats = lambda name: (bs[name]['mean'], bs[name]['var']) if running else None
  num_layers = len(SIZES)
  x = np.asarray(x, np.float64)
  zs, means, stds, batch_stats, h = [x], [], [], {}, x
  for l in range(1, num_layers + 1):
    pre = h @ p[f'encoder_{l}']['kernel']
    batch_stats[f'encoder_bn_{l}'] = (pre.mean(0), pre.var(0))
    z, mean, std = _np_normalise(pre, stats(f'encoder_bn_{l}'), eps)
    zs.append(z)
    means.append(mean)
    stds.append(std)
    if l < num_layers:
      h = np.maximum(z + p[f'beta_{l}'], 0.0)
    else:
      logits = p['gamma'] * (z + p[f'beta_{l}'])
      h = np.exp(logits - logits.max(1, keepdims=True))
      h /= h.sum(1, keepdims=True)
  z_hat = [None] * (num_layers + 1)
  for l in range(num_layers, -1, -1):
    u = h if l == num_layers else z_hat[l + 1] @ p[f'decoder_{l + 1}']['kernel']
    batch_stats[f'decoder_bn_{l}'] = (u.mean(0), u.var(0))
    u, _, _ = _np_normalise(u, stats(f'decoder_bn_{l}'), eps)
    z_hat[l] = _np_combinator(zs[l], u, p[f'combinator_{l}'])
  z_hat_bn = [z_hat[0]] + [(z_hat[l] - means[l - 1]) / stds[l - 1]
                           for l in range(1, num_layers + 1)]
  return logits, zs, z_hat_bn, batch_stats


def _model(noise_std=0.0, cost_weights=BOTTOM_COST):
  return ladder.LadderNetwork(layer_sizes=SIZES, cost_weights=cost_weights, noise_std=noise_std)


@functools.lru_cache(maxsize=1)
def _variables():
  """Initial variables with random combinators (at the reference start the decoder outputs 0)
  and running averages away from their start."""
  x = _uniform(0, (BATCH, DIM))
  variables = _model().init({'params': jax.random.key(0)}, x, train=True)
  params = dict(variables['params'])
  rng = np.random.default_rng(1)
  for name in params:
    if name.startswith('combinator_'):
      params[name] = params[name] + rng.normal(0, 0.5, params[name].shape).astype(np.float32)
  batch_stats = jax.tree_util.tree_map(
      lambda a: jnp.asarray(rng.uniform(-0.5, 0.5, a.shape) + (a == 1) * rng.uniform(
          0.5, 1.5, a.shape), jnp.float32), variables['batch_stats'])
  return {'params': params, 'batch_stats': batch_stats}


@functools.partial(jax.jit, static_argnames=('noise_std', 'train'))
def _apply(variables, x, key, noise_std, train):
  return _model(noise_std).apply(variables, x, train=train, rngs={'noise': key},
                                 mutable=['batch_stats'] if train else False)


class TestCombinator:

  def test_matches_numpy(self):
    z, u = _uniform(0, (3, 5), -2, 2), _uniform(1, (3, 5), -2, 2)
    a = _uniform(2, (10, 5), -1.5, 1.5)
    got = jax.jit(ladder.combinator)(z, u, a)
    chex.assert_shape(got, (3, 5))
    np.testing.assert_allclose(got, _np_combinator(z.astype(np.float64), u, a), rtol=1e-5,
                               atol=1e-6)

  def test_reference_start_outputs_zero(self):
    a = ladder.combinator_init(jax.random.key(0), (10, 4))
    expected = np.zeros((10, 4))
    expected[[1, 6]] = 1  # a2 = a7 = 1, Rasmus et al.'s code
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(
        ladder.combinator(_uniform(0, (3, 4)), _uniform(1, (3, 4)), a), np.zeros((3, 4)))

  def test_bad_shapes(self):
    with pytest.raises(ValueError, match='a: shape'):
      ladder.combinator(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match='u: shape'):
      ladder.combinator(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match='shape'):
      ladder.combinator_init(jax.random.key(0), (9, 3))


class TestLadderNetwork:

  def test_train_outputs_match_numpy(self):
    variables, x = _variables(), _uniform(3, (BATCH, DIM))
    out, updates = _apply(variables, x, jax.random.key(0), 0.0, True)
    chex.assert_shape([out.logits_clean, out.logits_noisy], (BATCH, SIZES[-1]))
    chex.assert_shape(out.reconstruction, x.shape)
    chex.assert_shape(list(out.z_clean), [(BATCH, n) for n in (DIM, *SIZES)])
    chex.assert_shape(list(out.z_hat_bn), [(BATCH, n) for n in (DIM, *SIZES)])
    logits, zs, z_hat_bn, stats = _np_ladder(variables, x)
    tol = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.logits_clean, logits, **tol)
    for got, expected in zip(out.z_clean + out.z_hat_bn, zs + z_hat_bn):
      np.testing.assert_allclose(got, expected, **tol)
    np.testing.assert_allclose(out.reconstruction, z_hat_bn[0], **tol)
    # Running averages: m <- momentum m + (1 - momentum) batch_m, for every batch norm.
    m = ladder.BN_MOMENTUM
    for name, (mean, var) in stats.items():
      old = variables['batch_stats'][name]
      np.testing.assert_allclose(updates['batch_stats'][name]['mean'],
                                 m * np.asarray(old['mean']) + (1 - m) * mean, **tol)
      np.testing.assert_allclose(updates['batch_stats'][name]['var'],
                                 m * np.asarray(old['var']) + (1 - m) * var, **tol)

  def test_eval_uses_running_averages(self):
    variables, x = _variables(), _uniform(3, (BATCH, DIM))
    out = _apply(variables, x, jax.random.key(0), 0.3, False)
    logits, zs, z_hat_bn, _ = _np_ladder(variables, x, running=True)
    tol = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.logits_clean, logits, **tol)
    np.testing.assert_array_equal(out.logits_noisy, out.logits_clean)
    for got, expected in zip(out.z_clean + out.z_hat_bn, zs + z_hat_bn):
      np.testing.assert_allclose(got, expected, **tol)

  def test_eval_independent_of_batch_composition(self):
    variables, x = _variables(), _uniform(4, (BATCH, DIM))
    batch = _apply(variables, x, jax.random.key(0), 0.3, False)
    alone = _apply(variables, x[2:3], jax.random.key(0), 0.3, False)
    for got, expected in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(batch)):
      np.testing.assert_allclose(got[0], expected[2], rtol=1e-5, atol=1e-5)

  def test_zero_noise_noisy_path_equals_clean_path(self):
    variables, x = _variables(), _uniform(5, (BATCH, DIM))
    out, _ = _apply(variables, x, jax.random.key(0), 0.0, True)
    # Both paths run (sharing parameters); under jit XLA may fuse them differently, hence the
    # float32 rounding tolerance.
    np.testing.assert_allclose(out.logits_noisy, out.logits_clean, rtol=1e-5, atol=1e-6)
    unjitted, _ = _apply.__wrapped__(variables, x, jax.random.key(0), 0.0, True)
    np.testing.assert_array_equal(unjitted.logits_noisy, unjitted.logits_clean)

  def test_noise_changes_only_the_noisy_path(self):
    variables, x = _variables(), _uniform(5, (BATCH, DIM))
    clean, clean_updates = _apply(variables, x, jax.random.key(0), 0.0, True)
    noisy, noisy_updates = _apply(variables, x, jax.random.key(0), 0.3, True)
    assert np.max(np.abs(noisy.logits_noisy - noisy.logits_clean)) > 1e-3
    assert np.max(np.abs(noisy.reconstruction - clean.reconstruction)) > 1e-3
    np.testing.assert_allclose(noisy.logits_clean, clean.logits_clean, rtol=1e-6, atol=1e-6)
    for a, b in zip(noisy.z_clean, clean.z_clean):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # The encoder's running averages are the clean path's, whatever the noise.
    for l in range(1, len(SIZES) + 1):
      chex.assert_trees_all_close(noisy_updates['batch_stats'][f'encoder_bn_{l}'],
                                  clean_updates['batch_stats'][f'encoder_bn_{l}'], rtol=1e-6)
    # Another key, other noise.
    other, _ = _apply(variables, x, jax.random.key(1), 0.3, True)
    assert np.max(np.abs(other.logits_noisy - noisy.logits_noisy)) > 1e-3

  def test_reference_start_reconstructs_zero(self):
    x = _uniform(6, (BATCH, DIM))
    variables = _model().init({'params': jax.random.key(0)}, x, train=True)
    out, _ = _apply(variables, x, jax.random.key(0), 0.3, True)
    np.testing.assert_array_equal(out.reconstruction, np.zeros_like(x))

  def test_gradients_reach_every_parameter(self):
    variables, x = _variables(), _uniform(7, (BATCH, DIM))
    labels = np.arange(BATCH, dtype=np.int32) % SIZES[-1]
    mask = np.arange(BATCH) < BATCH // 2

    def loss(params):
      out, _ = _model(0.3).apply({**variables, 'params': params}, x, train=True,
                                 rngs={'noise': jax.random.key(0)}, mutable=['batch_stats'])
      return (losses.masked_cross_entropy(out.logits_noisy, labels, mask)
              + losses.denoising_cost(out.z_clean, out.z_hat_bn, BOTTOM_COST))

    grads = jax.jit(jax.grad(loss))(variables['params'])
    chex.assert_tree_all_finite(grads)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
      assert np.max(np.abs(grad)) > 0, jax.tree_util.keystr(path)

  @pytest.mark.parametrize('kwargs, match', [
      (dict(layer_sizes=()), 'layer_sizes'),
      (dict(layer_sizes=(4, 0, 10)), 'layer_sizes'),
      (dict(noise_std=-0.1), 'noise_std'),
      (dict(cost_weights=(1.0, 0.0, 0.0)), 'cost_weights'),
      (dict(cost_weights=(1.0, -1.0, 0.0, 0.0)), 'cost_weights'),
      (dict(momentum=1.0), 'momentum'),
      (dict(epsilon=0.0), 'epsilon'),
  ])
  def test_bad_attributes(self, kwargs, match):
    args = dict(layer_sizes=SIZES, cost_weights=BOTTOM_COST, noise_std=0.3) | kwargs
    with pytest.raises(ValueError, match=match):
      ladder.LadderNetwork(**args)

  def test_bad_input(self):
    with pytest.raises(ValueError, match='x: shape'):
      _model().init({'params': jax.random.key(0)}, np.zeros((2, 8, 8)), train=False)


class TestLadderLosses:

  def _layers(self):
    widths = (5, 4, 3)
    z = [_uniform(10 + i, (4, n)) for i, n in enumerate(widths)]
    z_hat = [_uniform(20 + i, (4, n)) for i, n in enumerate(widths)]
    return z, z_hat

  def test_denoising_cost_matches_numpy(self):
    z, z_hat = self._layers()
    weights = (2.0, 0.0, 0.5)
    per_sample = losses.denoising_cost_per_sample(z, z_hat, weights)
    total = jax.jit(functools.partial(losses.denoising_cost, cost_weights=weights))(z, z_hat)
    chex.assert_shape(per_sample, (4,))
    expected = sum(w * np.sum((np.float64(a) - b) ** 2, axis=1) / a.shape[1]
                   for w, a, b in zip(weights, z, z_hat))
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5)
    np.testing.assert_allclose(total, expected.mean(), rtol=1e-5)

  def test_ladder_energy_is_the_bottom_layer_cost(self):
    z, z_hat = self._layers()
    energy = losses.ladder_energy(z[0], z_hat[0])
    np.testing.assert_allclose(energy, np.mean((np.float64(z[0]) - z_hat[0]) ** 2, axis=1),
                               rtol=1e-5)
    np.testing.assert_allclose(energy, losses.autoencoder_energy(z[0], z_hat[0]), rtol=1e-6)
    np.testing.assert_allclose(
        energy, losses.denoising_cost_per_sample(z, z_hat, (1.0, 0.0, 0.0)), rtol=1e-6)

  def test_masked_cross_entropy_matches_numpy(self):
    logits = _uniform(0, (5, 4), -3, 3)
    labels = np.array([0, 3, -1, 2, -1], np.int32)  # -1: unlabelled rows
    mask = labels >= 0
    got = jax.jit(losses.masked_cross_entropy)(logits, labels, mask)
    log_probs = logits - np.log(np.sum(np.exp(np.float64(logits)), axis=1, keepdims=True))
    expected = -np.mean([log_probs[i, labels[i]] for i in np.flatnonzero(mask)])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    grad = jax.grad(losses.masked_cross_entropy)(logits, labels, mask)
    np.testing.assert_array_equal(grad[~mask], 0.0)
    assert np.all(np.abs(grad[mask]).sum(1) > 0)

  def test_masked_cross_entropy_all_unlabelled_is_zero(self):
    logits = _uniform(0, (3, 4))
    mask = np.zeros(3, bool)
    got = losses.masked_cross_entropy(logits, np.zeros(3, np.int32), mask)
    assert float(got) == 0.0
    grad = jax.grad(losses.masked_cross_entropy)(logits, np.zeros(3, np.int32), mask)
    np.testing.assert_array_equal(grad, 0.0)

  def test_bad_input(self):
    z, z_hat = self._layers()
    with pytest.raises(ValueError, match='cost_weights'):
      losses.denoising_cost(z, z_hat, (1.0, 0.0))
    with pytest.raises(ValueError, match='cost_weights'):
      losses.denoising_cost(z, z_hat, (1.0, -0.5, 0.0))
    with pytest.raises(ValueError, match='z_hat_bn'):
      losses.denoising_cost(z, [z_hat[0], z_hat[2], z_hat[1]], (1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match='labels'):
      losses.masked_cross_entropy(np.zeros((3, 4)), np.zeros(2, np.int32), np.ones(3, bool))
    with pytest.raises(ValueError, match='labels'):
      losses.masked_cross_entropy(np.zeros((3, 4)), np.zeros(3, np.float32), np.ones(3, bool))
    with pytest.raises(ValueError, match='mask'):
      losses.masked_cross_entropy(np.zeros((3, 4)), np.zeros(3, np.int32), np.ones(4, bool))
    with pytest.raises(ValueError, match='x: shape'):
      losses.ladder_energy(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))


@functools.lru_cache(maxsize=1)
def _digits_train():
  """The training split of scikit-learn's digits (1437 images), flat, through `images.Digits`."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  train = images.Digits(seed=0, batch_size=len(jax.devices()), sharding=sharding).arrays('train')
  return train['images'].reshape(len(train['images']), -1), train['labels']


class TestBalancedLabelledSubset:

  def test_balanced_fixed_by_seed_and_varies_with_it(self):
    _, labels = _digits_train()
    subset = labelled.balanced_labelled_subset(labels, 50, seed=3)
    assert subset.shape == (50,) and np.all(np.diff(subset) > 0)
    assert subset.min() >= 0 and subset.max() < len(labels)
    np.testing.assert_array_equal(np.bincount(labels[subset], minlength=10), np.full(10, 5))
    np.testing.assert_array_equal(subset, labelled.balanced_labelled_subset(labels, 50, seed=3))
    assert not np.array_equal(subset, labelled.balanced_labelled_subset(labels, 50, seed=4))

  @pytest.mark.parametrize('num_labels, match', [
      (0, 'num_labels=0'),
      (-10, 'num_labels=-10'),
      (55, 'num_labels=55.*class count 10'),
      (1440, 'num_labels=1440.*1437'),
      (1430, 'num_labels=1430.*class'),
  ])
  def test_bad_num_labels(self, num_labels, match):
    _, labels = _digits_train()
    with pytest.raises(ValueError, match=match):
      labelled.balanced_labelled_subset(labels, num_labels, seed=0)

  def test_bad_labels_and_seed(self):
    with pytest.raises(ValueError, match='labels'):
      labelled.balanced_labelled_subset(np.zeros(10, np.float32), 2, seed=0)
    with pytest.raises(ValueError, match='seed'):
      labelled.balanced_labelled_subset(np.arange(10) % 2, 2, seed=-1)


class TestSemiSupervisedBatches:

  def _make(self, seed=0, num_labels=50, bl=10, bu=479):
    x, y = _digits_train()
    return labelled.SemiSupervisedBatches.balanced(
        x, y, num_labels=num_labels, labelled_batch_size=bl, unlabelled_batch_size=bu, seed=seed)

  def test_batches_are_a_pure_function_of_seed_and_step(self):
    first, second = self._make(seed=1), self._make(seed=1)
    later = [second.batch(step) for step in (9, 3, 0)]
    earlier = [first.batch(step) for step in (0, 3, 9)][::-1]
    chex.assert_trees_all_equal(later, earlier)
    other = self._make(seed=2).batch(3)
    assert not np.array_equal(other['x_labelled'], later[1]['x_labelled'])
    assert not np.array_equal(other['x_unlabelled'], later[1]['x_unlabelled'])

  def test_contents_and_epochs(self):
    x, y = _digits_train()
    sampler = self._make()
    batches = [sampler.batch(step) for step in range(5)]
    chex.assert_shape([b['x_labelled'] for b in batches], (10, DIM))
    chex.assert_shape([b['x_unlabelled'] for b in batches], (479, DIM))
    assert all(b['y_labelled'].dtype == np.int32 for b in batches)
    # Rows are looked up by index: recover each row's index from its image.
    row_of = {x[i].tobytes(): i for i in range(len(x))}
    to_rows = lambda key, steps: [row_of[r.tobytes()] for s in steps for r in batches[s][key]]
    # 5 steps of 10 labelled rows: one epoch of the 50 labelled examples, each once.
    first_epoch = to_rows('x_labelled', range(5))
    np.testing.assert_array_equal(np.sort(first_epoch), sampler.labelled_indices)
    np.testing.assert_array_equal(
        np.concatenate([b['y_labelled'] for b in batches]), y[first_epoch])
    # 3 steps of 479 unlabelled rows: one epoch of all 1437 training images.
    np.testing.assert_array_equal(np.sort(to_rows('x_unlabelled', range(3))), np.arange(len(x)))

  def test_stacked_seeds(self):
    x, y = _digits_train()
    samplers = labelled.SemiSupervisedBatches.for_seeds(
        x, y, num_labels=20, labelled_batch_size=4, unlabelled_batch_size=8, seeds=(0, 1, 2))
    stacked = labelled.stack_batches(samplers, 7)
    chex.assert_shape([stacked['x_labelled'], stacked['y_labelled'], stacked['x_unlabelled']],
                      [(3, 4, DIM), (3, 4), (3, 8, DIM)])
    for i, sampler in enumerate(samplers):
      chex.assert_trees_all_equal(jax.tree_util.tree_map(lambda a: a[i], stacked),
                                  sampler.batch(7))
    assert not np.array_equal(samplers[0].labelled_indices, samplers[1].labelled_indices)

  def test_bad_input(self):
    x, y = _digits_train()
    make = lambda **kw: labelled.SemiSupervisedBatches(
        **(dict(images=x, labels=y, labelled_indices=np.arange(10), labelled_batch_size=2,
                unlabelled_batch_size=2, seed=0) | kw))
    with pytest.raises(ValueError, match='labelled_batch_size=0'):
      make(labelled_batch_size=0)
    with pytest.raises(ValueError, match='unlabelled_batch_size=-1'):
      make(unlabelled_batch_size=-1)
    with pytest.raises(ValueError, match='labelled_indices'):
      make(labelled_indices=np.array([0, 0, 1]))
    with pytest.raises(ValueError, match='labelled_indices'):
      make(labelled_indices=np.array([len(y)]))
    with pytest.raises(ValueError, match='images'):
      make(images=x[:-1])
    with pytest.raises(ValueError, match='seed'):
      make(seed=-3)
    with pytest.raises(ValueError, match='step'):
      make().batch(-1)
    with pytest.raises(ValueError, match='samplers'):
      labelled.stack_batches([make(), make(labelled_batch_size=3)], 0)
