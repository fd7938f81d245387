"""Chapter 5's evaluation: the figure grids, retrieval, the Table 5.2 probes, MIG and DCI."""

import math

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import r2_score

from uncertainty_jax.evaluation import disentangle
from uncertainty_jax.evaluation import visualize

WHITE = np.array(disentangle.BACKGROUND, np.uint8)
GREEN = np.array(visualize.TARGET_COLOR, np.uint8)


def _cell_image(x, scale):
  """The [-1, 1] -> uint8 map of `visualize.to_uint8`, grey to RGB, upscaled by `np.kron`."""
  x = np.round((np.clip(np.asarray(x, np.float64), -1, 1) + 1) * 127.5).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.kron(x, np.ones((scale, scale, 1), np.uint8))


def _frame_pixels(cell, border):
  mask = np.ones(cell.shape[:2], bool)
  mask[border:-border, border:-border] = False
  return cell[mask]


class _Layout:
  """Cell positions of a grid: rows/columns of `H' x W'` cells with gaps before some of them."""

  def __init__(self, grid, h, w, scale, border, gap, row_gaps, col_gaps):
    self.grid, self.border = grid, border
    self.hh, self.ww = h * scale + 2 * border, w * scale + 2 * border
    self.gap, self.row_gaps, self.col_gaps = gap, row_gaps, col_gaps

  def cell(self, r, c):
    y = r * self.hh + self.gap * sum(g <= r for g in self.row_gaps)
    x = c * self.ww + self.gap * sum(g <= c for g in self.col_gaps)
    return self.grid[y:y + self.hh, x:x + self.ww]

  def check(self, r, c, image, frame, scale):
    cell = self.cell(r, c)
    b = self.border
    np.testing.assert_array_equal(cell[b:cell.shape[0] - b, b:cell.shape[1] - b],
                                  _cell_image(image, scale))
    assert (_frame_pixels(cell, b) == frame).all(), (r, c)

  def check_empty(self, r, c):
    assert (self.cell(r, c) == WHITE).all(), (r, c)


def _images(rng, shape):
  # Values beyond [-1, 1] check the clipping.
  return rng.uniform(-1.2, 1.2, shape).astype(np.float32)


class TestSwapGrid:

  @pytest.mark.parametrize('channels', [1, 3])
  def test_cells(self, channels):
    rng = np.random.default_rng(channels)
    rows, cols, h, w, scale, border, gap = 2, 3, 5, 6, 2, 1, 3
    z = _images(rng, (rows, h, w, channels))
    s = _images(rng, (cols, h, w, channels))
    gen = _images(rng, (rows, cols, h, w, channels))
    grid = disentangle.swap_grid(z, s, gen, scale=scale, border=border, gap=gap)
    hh, ww = h * scale + 2 * border, w * scale + 2 * border
    assert grid.dtype == np.uint8
    assert grid.shape == ((rows + 1) * hh + gap, (cols + 1) * ww + gap, 3)
    lay = _Layout(grid, h, w, scale, border, gap, [1], [1])
    lay.check_empty(0, 0)
    for c in range(cols):
      lay.check(0, c + 1, s[c], GREEN, scale)
    for r in range(rows):
      lay.check(r + 1, 0, z[r], GREEN, scale)
      for c in range(cols):
        lay.check(r + 1, c + 1, gen[r, c], WHITE, scale)
    # The separating gaps are background.
    assert (grid[hh:hh + gap] == WHITE).all()
    assert (grid[:, ww:ww + gap] == WHITE).all()

  def test_default_scale_makes_images_32_pixels_wide(self):
    rng = np.random.default_rng(0)
    h, w = 4, 6
    grid = disentangle.swap_grid(_images(rng, (1, h, w, 1)), _images(rng, (2, h, w, 1)),
                                 _images(rng, (1, 2, h, w, 1)), border=0, gap=0)
    scale = math.ceil(32 / w)
    assert scale * w >= 32 > (scale - 1) * w
    assert grid.shape == (2 * h * scale, 3 * w * scale, 3)
    big = disentangle.swap_grid(_images(rng, (1, 40, 40, 3)), _images(rng, (1, 40, 40, 3)),
                                _images(rng, (1, 1, 40, 40, 3)), border=0, gap=0)
    assert big.shape == (80, 80, 3)

  @pytest.mark.parametrize('change', ['rows', 'cols', 'size', 'channels'])
  def test_mismatched_shapes(self, change):
    rng = np.random.default_rng(0)
    z, s, gen = (1, 4, 4, 3), (2, 4, 4, 3), (1, 2, 4, 4, 3)
    if change == 'rows':
      gen = (2, 2, 4, 4, 3)
    elif change == 'cols':
      gen = (1, 3, 4, 4, 3)
    elif change == 'size':
      s = (2, 4, 5, 3)
    else:
      s = (2, 4, 4, 1)
    with pytest.raises(ValueError):
      disentangle.swap_grid(_images(rng, z), _images(rng, s), _images(rng, gen))

  @pytest.mark.parametrize('kwargs', [{'scale': 0}, {'scale': 1.5}, {'border': -1}, {'gap': -2}])
  def test_bad_options(self, kwargs):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
      disentangle.swap_grid(_images(rng, (1, 4, 4, 3)), _images(rng, (1, 4, 4, 3)),
                            _images(rng, (1, 1, 4, 4, 3)), **kwargs)

  def test_bad_images(self):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='c in'):
      disentangle.swap_grid(_images(rng, (1, 4, 4, 2)), _images(rng, (1, 4, 4, 2)),
                            _images(rng, (1, 1, 4, 4, 2)))
    with pytest.raises(ValueError, match='dtype'):
      disentangle.swap_grid(np.zeros((1, 4, 4, 3), np.uint8), _images(rng, (1, 4, 4, 3)),
                            _images(rng, (1, 1, 4, 4, 3)))


class TestInterpolationGrid:

  @pytest.mark.parametrize('channels', [1, 3])
  def test_cells(self, channels):
    rng = np.random.default_rng(10 + channels)
    rows, cols, h, w, scale, border, gap = 3, 4, 4, 5, 3, 2, 5
    gen = _images(rng, (rows, cols, h, w, channels))
    first = _images(rng, (h, w, channels))
    last = _images(rng, (h, w, channels))
    grid = disentangle.interpolation_grid(gen, first, last, scale=scale, border=border, gap=gap)
    hh, ww = h * scale + 2 * border, w * scale + 2 * border
    assert grid.shape == (rows * hh, (cols + 2) * ww + 2 * gap, 3)
    lay = _Layout(grid, h, w, scale, border, gap, [], [1, cols + 1])
    lay.check(0, 0, first, GREEN, scale)
    lay.check(rows - 1, cols + 1, last, GREEN, scale)
    for r in range(1, rows):
      lay.check_empty(r, 0)
    for r in range(rows - 1):
      lay.check_empty(r, cols + 1)
    for r in range(rows):
      for c in range(cols):
        lay.check(r, c + 1, gen[r, c], WHITE, scale)

  def test_mismatched_shapes(self):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='first'):
      disentangle.interpolation_grid(_images(rng, (2, 2, 4, 4, 3)), _images(rng, (4, 5, 3)),
                                     _images(rng, (4, 4, 3)))
    with pytest.raises(ValueError, match='generated'):
      disentangle.interpolation_grid(_images(rng, (2, 4, 4, 3)), _images(rng, (4, 4, 3)),
                                     _images(rng, (4, 4, 3)))


@pytest.mark.parametrize('which', ['retrieval', 'generation'])
@pytest.mark.parametrize('channels', [1, 3])
def test_row_grids(which, channels):
  rng = np.random.default_rng(channels)
  rows, k, h, w, scale, border, gap = 3, 4, 5, 4, 2, 1, 4
  lead = _images(rng, (rows, h, w, channels))
  rest = _images(rng, (rows, k, h, w, channels))
  fn = disentangle.retrieval_grid if which == 'retrieval' else disentangle.generation_grid
  grid = fn(lead, rest, scale=scale, border=border, gap=gap)
  hh, ww = h * scale + 2 * border, w * scale + 2 * border
  assert grid.shape == (rows * hh, (k + 1) * ww + gap, 3)
  lay = _Layout(grid, h, w, scale, border, gap, [], [1])
  # Retrieved neighbours are dataset images (green); samples are generated (white).
  rest_frame = GREEN if which == 'retrieval' else WHITE
  for r in range(rows):
    lay.check(r, 0, lead[r], GREEN, scale)
    for j in range(k):
      lay.check(r, j + 1, rest[r, j], rest_frame, scale)
  assert (grid[:, ww:ww + gap] == WHITE).all()
  with pytest.raises(ValueError):
    fn(lead[:2], rest)


class TestNearestNeighbours:

  @staticmethod
  def _brute(queries, codes, k, exclude=None):
    dist = np.array([[np.sum((q - c) ** 2) for c in codes] for q in queries])
    if exclude is not None:
      dist[np.arange(len(queries)), exclude] = np.inf
    return np.argsort(dist, axis=1, kind='stable')[:, :k]

  def test_matches_brute_force(self):
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(60, 7))
    queries = rng.normal(size=(9, 7))
    got = disentangle.nearest_neighbours(queries, codes, 5)
    assert got.shape == (9, 5)
    np.testing.assert_array_equal(got, self._brute(queries, codes, 5))

  def test_ties_go_to_the_smaller_index(self):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 16))
    codes = np.concatenate([base, base, base])  # Each code three times: indices i, i+50, i+100.
    got = disentangle.nearest_neighbours(base, codes, 3)
    np.testing.assert_array_equal(got, np.arange(50)[:, None] + np.array([0, 50, 100]))

  def test_exclude_leaves_out_the_query(self):
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(40, 5))
    idx = np.array([3, 17, 39, 0])
    got = disentangle.nearest_neighbours(codes[idx], codes, 4, exclude=idx)
    assert not (got == idx[:, None]).any()
    np.testing.assert_array_equal(got, self._brute(codes[idx], codes, 4, exclude=idx))
    # Without it, each query finds itself first.
    np.testing.assert_array_equal(disentangle.nearest_neighbours(codes[idx], codes, 1)[:, 0], idx)

  def test_bad_inputs(self):
    codes = np.zeros((5, 3))
    with pytest.raises(ValueError, match='k='):
      disentangle.nearest_neighbours(codes[:1], codes, 6)
    with pytest.raises(ValueError, match='k='):
      disentangle.nearest_neighbours(codes[:1], codes, 5, exclude=[0])
    with pytest.raises(ValueError, match='k='):
      disentangle.nearest_neighbours(codes[:1], codes, 0)
    with pytest.raises(ValueError, match='query_codes'):
      disentangle.nearest_neighbours(np.zeros((1, 4)), codes, 1)
    with pytest.raises(ValueError, match='exclude'):
      disentangle.nearest_neighbours(codes[:2], codes, 1, exclude=[0])
    with pytest.raises(ValueError, match='exclude'):
      disentangle.nearest_neighbours(codes[:1], codes, 1, exclude=[5])


class TestProbe:

  def test_separable_data_is_learned(self):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 10
    y = rng.integers(0, 3, 1200)
    x = centres[y] + rng.normal(size=(1200, 6))
    out = disentangle.probe_error(x[:900], y[:900], x[900:], y[900:])
    assert out['train_error'] < 0.02 and out['test_error'] < 0.02
    counts = np.bincount(y[:900], minlength=3)
    majority = np.argmax(counts)
    assert out['chance_train'] == pytest.approx(1 - counts.max() / 900)
    assert out['chance_test'] == pytest.approx(np.mean(y[900:] != majority))

  def test_label_independent_features_are_at_chance(self):
    rng = np.random.default_rng(1)
    y = rng.choice(3, size=2400, p=[0.6, 0.3, 0.1])
    x = rng.normal(size=(2400, 4))
    out = disentangle.probe_error(x[:1800], y[:1800], x[1800:], y[1800:])
    freq = np.bincount(y[:1800]) / 1800
    assert out['chance_train'] == pytest.approx(1 - freq.max())
    assert out['chance_test'] == pytest.approx(np.mean(y[1800:] != np.argmax(freq)))
    assert abs(out['test_error'] - out['chance_test']) < 0.06

  def test_string_labels_and_table(self):
    rng = np.random.default_rng(2)
    n, m = 400, 200
    identity = rng.integers(0, 2, n + m)
    s = identity[:, None] * 6.0 + rng.normal(size=(n + m, 3))
    z = rng.normal(size=(n + m, 5))
    names = np.array(['left', 'right'])[identity]
    codes = {'s': (s[:n], s[n:]), 'z': (z[:n], z[n:])}
    labels = {'identity': (names[:n], names[n:])}
    table = disentangle.probe_table(codes, labels, hidden=16)
    assert list(table) == ['identity'] and list(table['identity']) == ['s', 'z']
    assert table['identity']['s'] == disentangle.probe_error(s[:n], names[:n], s[n:], names[n:],
                                                             hidden=16)
    assert table['identity']['s']['test_error'] < 0.05
    assert table['identity']['z']['test_error'] > 0.3

  def test_bad_inputs(self):
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match='single class'):
      disentangle.probe_error(x, np.ones(10), x, np.ones(10))
    with pytest.raises(ValueError, match='at least 2'):
      disentangle.probe_error(x, np.r_[np.zeros(9), 1], x, np.ones(10))
    with pytest.raises(ValueError, match='train_y'):
      disentangle.probe_error(x, np.ones(9), x, np.ones(10))
    with pytest.raises(ValueError, match='test_x'):
      disentangle.probe_error(x, np.arange(10) % 2, np.zeros((10, 3)), np.ones(10))
    with pytest.raises(ValueError, match='hidden'):
      disentangle.probe_error(x, np.arange(10) % 2, x, np.ones(10), hidden=0)
    with pytest.raises(ValueError, match='codes'):
      disentangle.probe_table({}, {'a': (np.ones(10), np.ones(10))})


def _digitize(v, bins):
  return np.digitize(v, np.histogram(v, bins)[1][:-1])


def _mutual_information(a, b):
  """I(a; b) in nats from the discrete formula sum p(a, b) log(p(a, b) / (p(a) p(b)))."""
  _, a = np.unique(a, return_inverse=True)
  _, b = np.unique(b, return_inverse=True)
  joint = np.zeros((a.max() + 1, b.max() + 1))
  np.add.at(joint, (a, b), 1)
  joint /= joint.sum()
  pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
  nz = joint > 0
  return float(np.sum(joint[nz] * np.log(joint[nz] / (pa * pb)[nz])))


def _entropy(a):
  p = np.unique(a, return_counts=True)[1] / len(a)
  return float(-np.sum(p * np.log(p)))


def _expected_mig(codes, factors, discrete, bins):
  """MIG from numpy only: histogram bins, the discrete MI formula, the top-two gap."""
  binned = [_digitize(codes[:, j], bins) for j in range(codes.shape[1])]
  gaps = []
  for k in range(factors.shape[1]):
    v = factors[:, k] if discrete[k] else _digitize(factors[:, k], bins)
    mi = sorted((_mutual_information(c, v) for c in binned), reverse=True)
    gaps.append((mi[0] - mi[1]) / _entropy(v))
  return np.array(gaps)


class TestMIG:

  def test_histogram_discretize(self):
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=200), np.full(200, 3.0)]
    got = disentangle.histogram_discretize(x, 7)
    np.testing.assert_array_equal(got[:, 0], _digitize(x[:, 0], 7))
    assert got[:, 0].min() == 1 and got[np.argmax(x[:, 0]), 0] == 7
    assert len(np.unique(got[:, 1])) == 1

  def test_codes_copying_factors(self):
    rng = np.random.default_rng(0)
    n = 3000
    factors = np.c_[rng.integers(0, 5, n), rng.integers(0, 3, n), rng.uniform(-1, 1, n)]
    discrete = np.array([True, True, False])
    codes = np.c_[factors[:, 2], rng.normal(size=(n, 4)), factors[:, 0] * 0.7 - 2,
                  factors[:, 1]]
    out = disentangle.mutual_information_gap(codes, factors, discrete, bins=10)
    expected = _expected_mig(codes, factors, discrete, 10)
    np.testing.assert_allclose(out['per_factor'], expected, rtol=1e-9, atol=1e-12)
    assert out['mig'] == pytest.approx(expected.mean())
    assert out['mig'] > 0.95

  def test_information_matches_the_discrete_formula(self):
    rng = np.random.default_rng(1)
    n = 500
    factors = np.c_[rng.integers(0, 4, n), rng.normal(size=n)]
    codes = np.c_[factors[:, 0] + rng.normal(size=n), rng.normal(size=(n, 2)),
                  factors[:, 1] ** 2, np.zeros(n)]
    out = disentangle.mutual_information_gap(codes, factors, np.array([True, False]), bins=8)
    targets = [factors[:, 0], _digitize(factors[:, 1], 8)]
    for j in range(codes.shape[1]):
      for k in range(2):
        assert out['mutual_information'][j, k] == pytest.approx(
            _mutual_information(_digitize(codes[:, j], 8), targets[k]), abs=1e-12)
    np.testing.assert_allclose(out['entropy'], [_entropy(t) for t in targets], rtol=1e-12)
    # The constant last dimension carries no information and produces no NaN.
    np.testing.assert_allclose(out['mutual_information'][-1], 0, atol=1e-12)
    assert np.isfinite(out['per_factor']).all()

  def test_independent_codes(self):
    rng = np.random.default_rng(2)
    n = 5000
    factors = rng.integers(0, 5, (n, 3))
    codes = rng.normal(size=(n, 6))
    out = disentangle.mutual_information_gap(codes, factors, np.ones(3, bool), bins=10)
    assert 0 <= out['mig'] < 0.01

  def test_factor_split_over_two_dimensions(self):
    rng = np.random.default_rng(3)
    n = 2000
    factors = rng.integers(0, 6, (n, 2))
    codes = np.c_[factors[:, 0], 2 * factors[:, 0] + 1, factors[:, 1], rng.normal(size=n)]
    out = disentangle.mutual_information_gap(codes, factors, np.ones(2, bool))
    assert out['per_factor'][0] == pytest.approx(0, abs=1e-9)
    assert out['per_factor'][1] > 0.95

  def test_bad_inputs(self):
    codes, factors = np.zeros((10, 3)), np.arange(20).reshape(10, 2)
    with pytest.raises(ValueError, match='bins'):
      disentangle.mutual_information_gap(codes, factors, np.ones(2, bool), bins=1)
    with pytest.raises(ValueError, match='factors'):
      disentangle.mutual_information_gap(codes, factors[:9], np.ones(2, bool))
    with pytest.raises(ValueError, match='discrete'):
      disentangle.mutual_information_gap(codes, factors, np.ones(3, bool))
    with pytest.raises(ValueError, match='constant'):
      disentangle.mutual_information_gap(codes, np.c_[factors[:, 0], np.ones(10)],
                                         np.ones(2, bool))
    with pytest.raises(ValueError, match='codes'):
      disentangle.mutual_information_gap(codes[:, :1], factors, np.ones(2, bool))


def _factors(rng, n, f, levels=5):
  return rng.integers(0, levels, (n, f)).astype(np.float64)


class TestDCI:

  def test_diagonal_codes(self):
    rng = np.random.default_rng(0)
    f = 4
    train, test = _factors(rng, 1500, f), _factors(rng, 500, f)
    noise = lambda x: x + 0.05 * rng.normal(size=x.shape)  # pylint: disable=unnecessary-lambda-assignment
    out = disentangle.dci(noise(train), train, noise(test), test, np.ones(f, bool))
    assert out['disentanglement'] > 0.9
    assert out['completeness'] > 0.9
    assert out['informativeness'] > 0.95
    assert out['importance'].shape == (f, f)
    np.testing.assert_array_equal(np.argmax(out['importance'], axis=0), np.arange(f))

  def test_mixed_codes_score_low(self):
    rng = np.random.default_rng(1)
    f = 4
    # A Hadamard matrix: every code holds every factor with the same weight.
    mix = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], float)
    train, test = _factors(rng, 1500, f), _factors(rng, 500, f)
    out = disentangle.dci(train @ mix, train, test @ mix, test, np.ones(f, bool))
    diagonal = disentangle.dci(train, train, test, test, np.ones(f, bool))
    assert out['disentanglement'] < 0.2 and out['completeness'] < 0.2
    assert out['disentanglement'] < diagonal['disentanglement'] - 0.4
    assert out['completeness'] < diagonal['completeness'] - 0.4

  def test_scores_follow_the_formulas(self):
    rng = np.random.default_rng(2)
    n, f = 800, 3
    factors = np.c_[_factors(rng, n, 2), rng.normal(size=n)]
    codes = np.c_[factors[:, 0] + factors[:, 2], factors[:, 1] + 0.3 * rng.normal(size=n),
                  rng.normal(size=(n, 2)), factors[:, 2], np.zeros(n)]
    discrete = np.array([True, True, False])
    out = disentangle.dci(codes[:600], factors[:600], codes[600:], factors[600:], discrete)
    r = out['importance']
    assert r.shape == (6, f) and (r >= 0).all()
    np.testing.assert_allclose(r.sum(axis=0), 1, rtol=1e-9)
    # The constant dimension gets no importance, weight 0, and no NaN anywhere.
    np.testing.assert_array_equal(r[-1], 0)
    assert out['code_weight'][-1] == 0 and out['disentanglement_per_code'][-1] == 0
    live = r.sum(axis=1) > 0
    per_code = 1 - scipy.stats.entropy(r[live].T, base=f)
    weight = r[live].sum(axis=1) / r.sum()
    assert out['disentanglement'] == pytest.approx(np.sum(per_code * weight), rel=1e-9)
    per_factor = 1 - scipy.stats.entropy(r, base=r.shape[0])
    np.testing.assert_allclose(out['completeness_per_factor'], per_factor, rtol=1e-9)
    assert out['completeness'] == pytest.approx(per_factor.mean(), rel=1e-9)
    info = out['informativeness_per_factor']
    assert info[2] > 0.8 and info[1] > 0.9  # R^2 of the continuous factor, accuracy of the other
    assert out['informativeness'] == pytest.approx(info.mean())

  def test_regression_informativeness_is_r2(self):
    rng = np.random.default_rng(3)
    y = rng.normal(size=(600, 1))
    out = disentangle.dci(y[:400] * 3, y[:400], y[400:] * 3, y[400:], np.array([False]),
                          n_estimators=1, max_depth=2)
    # A depth-2 tree predicts 4 levels: far from perfect, and exactly what r2_score says of it.
    from sklearn.ensemble import ExtraTreesRegressor  # pylint: disable=g-import-not-at-top
    model = ExtraTreesRegressor(n_estimators=1, max_depth=2, max_features=None, n_jobs=1,
                                random_state=0).fit(y[:400] * 3, y[:400, 0])
    expected = r2_score(y[400:, 0], model.predict(y[400:] * 3))
    assert out['informativeness'] == pytest.approx(expected)
    assert 0.3 < expected < 0.99
    assert out['disentanglement'] == 1 and out['completeness'] == 1

  def test_bad_inputs(self):
    rng = np.random.default_rng(4)
    codes, factors = rng.normal(size=(20, 3)), _factors(rng, 20, 2)
    with pytest.raises(ValueError, match='test_codes'):
      disentangle.dci(codes, factors, codes[:, :2], factors, np.ones(2, bool))
    with pytest.raises(ValueError, match='test_factors'):
      disentangle.dci(codes, factors, codes, factors[:, :1], np.ones(2, bool))
    with pytest.raises(ValueError, match='train_factors'):
      disentangle.dci(codes, factors[:10], codes, factors, np.ones(2, bool))
    with pytest.raises(ValueError, match='constant'):
      disentangle.dci(codes, np.c_[factors[:, 0], np.ones(20)], codes, factors, np.ones(2, bool))
    with pytest.raises(ValueError, match='n_estimators'):
      disentangle.dci(codes, factors, codes, factors, np.ones(2, bool), n_estimators=0)


class TestBlockImportance:

  def test_constructed_matrix(self):
    rng = np.random.default_rng(0)
    importance = rng.uniform(0, 0.01, (10, 3))
    importance[1, 0] = importance[3, 0] = 1  # factor 0 (identity) lives in s = dims 0..3
    importance[7, 1] = importance[5, 2] = 1  # factors 1, 2 (pose) in z = dims 4..9
    importance /= importance.sum(axis=0)
    shares = disentangle.block_importance(importance, {'s': slice(0, 4), 'z': slice(4, 10)})
    assert list(shares) == ['s', 'z']
    np.testing.assert_allclose(shares['s'] + shares['z'], 1)
    np.testing.assert_allclose(shares['s'], importance[:4].sum(axis=0) / importance.sum(axis=0))
    assert np.argmax(np.stack([shares['s'], shares['z']]), axis=0).tolist() == [0, 1, 1]

  def test_from_dci(self):
    rng = np.random.default_rng(1)
    n = 1200
    factors = _factors(rng, n, 3)
    # s (4 dims) holds factor 0; z (6 dims) holds factors 1 and 2.
    codes = rng.normal(size=(n, 10)) * 0.1
    codes[:, 2] += factors[:, 0]
    codes[:, 5] += factors[:, 1]
    codes[:, 9] += factors[:, 2]
    out = disentangle.dci(codes[:900], factors[:900], codes[900:], factors[900:],
                          np.ones(3, bool))
    shares = disentangle.block_importance(out['importance'], {'s': slice(0, 4), 'z': slice(4, 10)})
    np.testing.assert_allclose(shares['s'] + shares['z'], 1, rtol=1e-9)
    assert shares['s'][0] > 0.9 and (shares['z'][1:] > 0.9).all()

  def test_zero_factor_and_bad_blocks(self):
    importance = np.zeros((4, 2))
    importance[0, 0] = 1
    shares = disentangle.block_importance(importance, {'a': slice(0, 2), 'b': slice(2, 4)})
    np.testing.assert_array_equal(shares['a'], [1, 0])
    np.testing.assert_array_equal(shares['b'], [0, 0])
    with pytest.raises(ValueError, match='overlaps'):
      disentangle.block_importance(importance, {'a': slice(0, 3), 'b': slice(2, 4)})
    with pytest.raises(ValueError, match='selects none'):
      disentangle.block_importance(importance, {'a': slice(5, 9)})
    with pytest.raises(ValueError, match='slice'):
      disentangle.block_importance(importance, {'a': [0, 1]})
    with pytest.raises(ValueError, match='negative'):
      disentangle.block_importance(-importance, {'a': slice(0, 4)})
