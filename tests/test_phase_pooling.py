"""Tests of phase pooling and unpooling (thesis 3.2.1, eq. 3.7 and 3.8) against numpy loops."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from uncertainty_jax.layers.phase_pooling import PoolSpec
from uncertainty_jax.layers.phase_pooling import phase_pool
from uncertainty_jax.layers.phase_pooling import phase_unpool
from uncertainty_jax.layers.phase_pooling import pooled_code_size

# The three configurations of Table 3.1, with the size of the map they pool.
SHALLOW1 = (PoolSpec(spatial=(4, 4), feature=4), (32, 32, 64))
SHALLOW2 = (PoolSpec(spatial=(2, 2), feature=4, feature_stride=2, feature_wrap=True), (32, 32, 64))
DEEP3 = (PoolSpec(spatial=(8, 8)), (8, 8, 64))
# Small layouts that exercise overlap on every axis, wrap with stride 1, and pooling over F only.
OVERLAP = (PoolSpec(spatial=(3, 2), spatial_stride=(2, 1), feature=3, feature_stride=2), (5, 4, 7))
WRAP1 = (PoolSpec(spatial=(1, 2), feature=3, feature_stride=1, feature_wrap=True), (2, 4, 5))
FEATURE_ONLY = (PoolSpec(feature=4), (3, 2, 8))

_pool = jax.jit(phase_pool, static_argnums=1)
_unpool = jax.jit(phase_unpool, static_argnums=(2, 3))


def _strides(spec):
  sh, sw = spec.spatial_stride or spec.spatial
  return sh, sw, spec.feature_stride or spec.feature


def _groups(spec, shape):
  """Yields ((h', w', f'), [(h, w, f, coords)]) for every group, members in (h, w, f) order."""
  h, w, f = shape
  gh, gw = spec.spatial
  gf = spec.feature
  sh, sw, sf = _strides(spec)
  ho, wo = (h - gh) // sh + 1, (w - gw) // sw + 1
  fo = f // sf if spec.feature_wrap else (f - gf) // sf + 1
  cy, cx, cf = np.linspace(-1, 1, gh), np.linspace(-1, 1, gw), np.linspace(-1, 1, gf)
  for i, j, k in itertools.product(range(ho), range(wo), range(fo)):
    members = []
    for a, c, e in itertools.product(range(gh), range(gw), range(gf)):
      coords = [cf[e]] if gf > 1 else []
      coords += [cx[c]] if gw > 1 else []
      coords += [cy[a]] if gh > 1 else []
      fi = (k * sf + e) % f if spec.feature_wrap else k * sf + e
      members.append((i * sh + a, j * sw + c, fi, coords))
    yield (i, j, k), members


def _reference_pool(z, spec, beta):
  """Eq. 3.7 and 3.8 group by group, in float64."""
  z = np.asarray(z, np.float64)
  groups = list(_groups(spec, z.shape[1:]))
  out = tuple(n + 1 for n in groups[-1][0])
  m = np.zeros((z.shape[0],) + out)
  p = np.zeros((z.shape[0],) + out + (len(groups[0][1][0][3]),))
  for (i, j, k), members in groups:
    vals = np.stack([z[:, a, c, e] for a, c, e, _ in members], axis=1)  # [B, S]
    e = np.exp(beta * (vals - vals.max(axis=1, keepdims=True)))
    wts = e / e.sum(axis=1, keepdims=True)
    m[:, i, j, k] = (wts * vals).sum(axis=1)
    p[:, i, j, k] = wts @ np.array([crd for *_, crd in members]).reshape(len(members), -1)
  return m, p


def _axis_split(c, g):
  """{member: weight} of linear interpolation at phase c along an axis of g members."""
  if g == 1:
    return {0: 1.0}
  u = (min(max(c, -1.0), 1.0) + 1) / 2 * (g - 1)
  lo = min(int(np.floor(u)), g - 2)
  return {lo: 1 - (u - lo), lo + 1: u - lo}


def _reference_unpool(m, p, spec, shape):
  m, p = np.asarray(m, np.float64), np.asarray(p, np.float64)
  h, w, f = shape
  out = np.zeros((m.shape[0], h, w, f))
  gh, gw = spec.spatial
  gf = spec.feature
  sh, sw, sf = _strides(spec)
  for n in range(m.shape[0]):
    for (i, j, k), _ in _groups(spec, shape):
      comps = list(p[n, i, j, k])
      cf = comps.pop(0) if gf > 1 else 0.0
      cx = comps.pop(0) if gw > 1 else 0.0
      cy = comps.pop(0) if gh > 1 else 0.0
      for (a, wa), (c, wc), (e, we) in itertools.product(
          _axis_split(cy, gh).items(), _axis_split(cx, gw).items(), _axis_split(cf, gf).items()):
        fi = (k * sf + e) % f if spec.feature_wrap else k * sf + e
        out[n, i * sh + a, j * sw + c, fi] += m[n, i, j, k] * wa * wc * we
  return out


@pytest.mark.parametrize("config, out_shape, dims, size", [
    # Shallow 1: "a code of size 16 x 4 x 8 x 8" (3.3.1); Deep 3: "dimension 192 (64 x 3)" (3.3.2).
    (SHALLOW1, (8, 8, 16), 3, 16 * 4 * 8 * 8),
    (SHALLOW2, (16, 16, 32), 3, 16 * 16 * 32 * 4),
    (DEEP3, (1, 1, 64), 2, 64 * 3),
])
def test_chapter_configurations_shapes(config, out_shape, dims, size):
  spec, shape = config
  assert spec.output_shape(*shape) == out_shape
  assert spec.phase_dims == dims
  assert pooled_code_size(spec, *shape) == size
  z = jnp.ones((2,) + shape)
  m, p = _pool(z, spec, 1.0)
  chex.assert_shape(m, (2,) + out_shape)
  chex.assert_shape(p, (2,) + out_shape + (dims,))
  chex.assert_shape(_unpool(m, p, spec, shape), (2,) + shape)


@pytest.mark.parametrize("config", [SHALLOW1, SHALLOW2, DEEP3, OVERLAP, WRAP1, FEATURE_ONLY])
def test_pool_matches_numpy_reference(config):
  spec, shape = config
  z = np.random.RandomState(0).randn(2, *shape).astype(np.float32)
  m, p = _pool(z, spec, 2.5)
  m_ref, p_ref = _reference_pool(z, spec, 2.5)
  chex.assert_trees_all_close((m, p), (m_ref, p_ref), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [SHALLOW2, OVERLAP, WRAP1])
def test_unpool_matches_numpy_reference(config):
  spec, shape = config
  rng = np.random.RandomState(1)
  out = spec.output_shape(*shape)
  m = rng.randn(2, *out).astype(np.float32)
  # Some phases outside [-1, 1] exercise the clipping.
  p = rng.uniform(-1.3, 1.3, (2, *out, spec.phase_dims)).astype(np.float32)
  chex.assert_trees_all_close(_unpool(m, p, spec, shape), _reference_unpool(m, p, spec, shape),
                              atol=1e-5)


@pytest.mark.parametrize("config", [SHALLOW1, OVERLAP, WRAP1])
def test_large_beta_gives_max_and_argmax(config):
  spec, shape = config
  rng = np.random.RandomState(2)
  # Distinct values at least 0.01 apart: beta = 1e4 puts all weight on the group maximum.
  z = (rng.permutation(2 * np.prod(shape)).reshape(2, *shape) * 0.01).astype(np.float32)
  m, p = _pool(z, spec, 1e4)
  for (i, j, k), members in _groups(spec, shape):
    for n in range(2):
      vals = [z[n, a, c, e] for a, c, e, _ in members]
      best = int(np.argmax(vals))
      np.testing.assert_allclose(m[n, i, j, k], vals[best], rtol=1e-6)
      np.testing.assert_allclose(p[n, i, j, k], members[best][3], atol=1e-5)


@pytest.mark.parametrize("config", [SHALLOW1, SHALLOW2, DEEP3])
def test_zero_beta_is_average_pooling_at_the_centre(config):
  spec, shape = config
  z = np.random.RandomState(3).randn(2, *shape).astype(np.float32)
  m, p = phase_pool(jnp.asarray(z), spec, 0.0)
  expected = np.zeros(m.shape)
  for (i, j, k), members in _groups(spec, shape):
    expected[:, i, j, k] = np.mean([z[:, a, c, e] for a, c, e, _ in members], axis=0)
  chex.assert_trees_all_close(m, expected, atol=1e-5)
  chex.assert_trees_all_close(p, np.zeros(p.shape), atol=1e-6)


def test_translated_bump_moves_phase_linearly():
  """Figure 3.1: a Gaussian bump sliding along x by sub-pixel steps traces a line in p_x."""
  h, w = 5, 8
  centres = np.linspace(2.5, 4.5, 21)  # symmetric about the group centre, x = 3.5
  ys, xs = np.mgrid[:h, :w]
  sq_dist = (xs[None] - centres[:, None, None]) ** 2 + (ys[None] - 2.0) ** 2
  bumps = np.exp(-sq_dist / (2 * 1.5 ** 2))
  m, p = phase_pool(jnp.asarray(bumps[..., None], jnp.float32), PoolSpec(spatial=(h, w)), 4.0)
  px, py = np.asarray(p[:, 0, 0, 0, 0]), np.asarray(p[:, 0, 0, 0, 1])
  slope, intercept = np.polyfit(centres, px, 1)
  residual = px - (slope * centres + intercept)
  assert slope > 0
  assert np.abs(residual).max() < 0.01 * np.ptp(px)
  np.testing.assert_allclose(px[10], 0.0, atol=1e-6)  # the bump at the centre
  np.testing.assert_allclose(py, 0.0, atol=1e-6)  # centred in y at every step
  np.testing.assert_allclose(m[:, 0, 0, 0], m[10, 0, 0, 0], rtol=0.05)  # the "what" stays put


@pytest.mark.parametrize("config", [SHALLOW1, DEEP3, FEATURE_ONLY])
def test_unpool_inverts_pool_on_one_hot_groups(config):
  spec, shape = config
  rng = np.random.RandomState(4)
  x = np.zeros((2,) + shape, np.float32)
  for _, members in _groups(spec, shape):
    for n in range(2):
      a, c, e, _ = members[rng.randint(len(members))]
      x[n, a, c, e] = rng.uniform(0.5, 1.5)
  m, p = _pool(x, spec, 1e3)
  chex.assert_trees_all_close(_unpool(m, p, spec, shape), x, atol=1e-5)


@pytest.mark.parametrize("config", [SHALLOW1, DEEP3, FEATURE_ONLY])
def test_unpool_is_linear_in_m_and_keeps_the_mass(config):
  spec, shape = config
  rng = np.random.RandomState(5)
  out = spec.output_shape(*shape)
  m1, m2 = rng.randn(2, 2, *out).astype(np.float32)
  p = rng.uniform(-1, 1, (2, *out, spec.phase_dims)).astype(np.float32)
  chex.assert_trees_all_close(_unpool(2 * m1 - 3 * m2, p, spec, shape),
                              2 * _unpool(m1, p, spec, shape) - 3 * _unpool(m2, p, spec, shape),
                              atol=1e-5)
  # Interpolation weights sum to 1 in each group: non-overlapping groups keep every group's mass.
  unpooled = np.asarray(_unpool(np.abs(m1), p, spec, shape))
  for (i, j, k), members in _groups(spec, shape):
    got = sum(unpooled[:, a, c, e] for a, c, e, _ in members)
    np.testing.assert_allclose(got, np.abs(m1[:, i, j, k]), rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 3.0])
def test_gradients_match_finite_differences(beta):
  spec, shape = OVERLAP
  rng = np.random.RandomState(6)
  z = jnp.asarray(rng.randn(1, *shape), jnp.float32)
  check_grads(jax.jit(lambda z: phase_pool(z, spec, beta)), (z,), order=1, modes=["rev"], eps=1e-3,
              atol=2e-2, rtol=2e-2)
  out = spec.output_shape(*shape)
  m = jnp.asarray(rng.randn(1, *out), jnp.float32)
  # Phases on a grid between the members, away from the kinks of the linear interpolation.
  p = jnp.asarray(rng.choice([-0.75, -0.25, 0.25, 0.75], (1, *out, spec.phase_dims)), jnp.float32)
  check_grads(jax.jit(lambda m, p: phase_unpool(m, p, spec, shape)), (m, p), order=1, modes=["rev"],
              eps=1e-3, atol=2e-2, rtol=2e-2)

  def loss(z, beta):
    m, p = phase_pool(z, spec, beta)
    return jnp.sum(phase_unpool(m, p, spec, shape) ** 2) + jnp.sum(p ** 2)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(z, beta)
  chex.assert_tree_all_finite(grads)
  assert float(jnp.abs(grads[0]).max()) > 0


@pytest.mark.parametrize("config", [OVERLAP, WRAP1])
def test_vmap_over_an_extra_axis_equals_a_loop(config):
  spec, shape = config
  z = jnp.asarray(np.random.RandomState(7).randn(3, 2, *shape), jnp.float32)
  m, p = jax.jit(jax.vmap(lambda z: phase_pool(z, spec, 2.0)))(z)
  x = jax.jit(jax.vmap(lambda m, p: phase_unpool(m, p, spec, shape)))(m, p)
  for t in range(3):
    mt, pt = _pool(z[t], spec, 2.0)
    chex.assert_trees_all_close((m[t], p[t], x[t]), (mt, pt, _unpool(mt, pt, spec, shape)),
                                atol=1e-6)


@pytest.mark.parametrize("make, pattern", [
    (lambda: PoolSpec(spatial=(0, 2)), r"PoolSpec\.spatial: got \(0, 2\)"),
    (lambda: PoolSpec(spatial=(2,)), r"PoolSpec\.spatial: got \(2,\)"),
    (lambda: PoolSpec(spatial_stride=(1, -1)), r"PoolSpec\.spatial_stride: got \(1, -1\)"),
    (lambda: PoolSpec(feature=0), r"PoolSpec\.feature: got 0"),
    (lambda: PoolSpec(feature=2.5), r"PoolSpec\.feature: got 2\.5"),
    (lambda: PoolSpec(feature=2, feature_stride=0), r"PoolSpec\.feature_stride: got 0"),
    (lambda: PoolSpec(spatial=(4, 4)).output_shape(6, 8, 4),
     r"h=6 does not fit PoolSpec\.spatial\[0\]=4 with stride 4"),
    (lambda: PoolSpec(spatial=(2, 3), spatial_stride=(2, 2)).output_shape(4, 8, 4),
     r"w=8 does not fit PoolSpec\.spatial\[1\]=3 with stride 2"),
    (lambda: PoolSpec(feature=4, feature_stride=3, feature_wrap=True).output_shape(4, 4, 64),
     r"f=64 does not fit circular PoolSpec\.feature=4 with stride 3"),
    (lambda: PoolSpec(feature=8).output_shape(4, 4, 6), r"f=6 does not fit PoolSpec\.feature=8"),
    (lambda: phase_pool(jnp.ones((1, 4, 4, 4)), PoolSpec(), -1.0), r"beta: got -1\.0"),
    (lambda: phase_pool(jnp.ones((1, 4, 4, 4)), PoolSpec(), float("nan")), r"beta: got nan"),
    (lambda: phase_pool(jnp.ones((4, 4, 4)), PoolSpec(), 1.0), r"z: shape \(4, 4, 4\)"),
    (lambda: phase_unpool(jnp.ones((1, 2, 2, 4)), jnp.ones((1, 2, 2, 4, 2)), PoolSpec((2, 2)),
                          (4, 4, 8)), r"m: shape \(1, 2, 2, 4\)"),
    (lambda: phase_unpool(jnp.ones((1, 2, 2, 4)), jnp.ones((1, 2, 2, 4, 3)), PoolSpec((2, 2)),
                          (4, 4, 4)), r"p: shape \(1, 2, 2, 4, 3\)"),
])
def test_bad_input_raises(make, pattern):
  with pytest.raises(ValueError, match=pattern):
    make()
