"""Tests for uncertainty_jax.evaluation.ebgan_figures: grid records, histograms, samples, tables."""

import itertools
import json
import math
import os
import re
import stat

import numpy as np
import PIL.Image
import pytest

from uncertainty_jax.evaluation import ebgan_figures as ef
from uncertainty_jax.evaluation import mode_coverage as mc

_LAYERS = (2, 3, 4, 5)
_OPTIMIZERS = ('adam', 'sgd')
_LEARNING_RATES = (0.01, 0.001)


def _grid_records(seed=0, diverged=0.15):
  """A small Table 6.1-like grid: EBGAN with adam/adam/0.001, GAN over every optimizer setting."""
  rng = np.random.default_rng(seed)
  records = []
  for framework in ('ebgan', 'gan', 'ebgan_pt'):
    for lg, ld, od, og, lr in itertools.product(_LAYERS, _LAYERS, _OPTIMIZERS, _OPTIMIZERS,
                                                _LEARNING_RATES):
      if framework != 'gan' and (od, og, lr) != ('adam', 'adam', 0.001):
        continue
      score = None if rng.random() < diverged else float(rng.gamma(2.0, 1.0))
      records.append({
          'id': f'{framework}-g{lg}-d{ld}-{od}-{og}-lr{lr}', 'framework': framework,
          'num_layers_g': lg, 'size_g': 800, 'num_layers_d': ld, 'size_d': 256,
          'dropout_d': True, 'optimizer_d': od, 'optimizer_g': og, 'learning_rate': lr,
          'seed': 0, 'steps': 10, 'inception_score': score, 'diverged': score is None,
          'final': {}, 'seconds': 1.0})
  return records


def _read_png(path):
  with PIL.Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def _assert_readable_png(path):
  assert os.path.getsize(path) > 0
  pixels = _read_png(path)
  assert pixels.shape[0] > 0 and pixels.shape[1] > 0
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1, 'a single colour'
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
  leftovers = [f for f in os.listdir(os.path.dirname(path)) if f.endswith('.tmp')]
  assert not leftovers
  return pixels


def _has_hue(pixels, channel, margin):
  """Whether some pixel's `channel` exceeds both other channels by more than `margin`."""
  pixels = pixels.reshape(-1, 3).astype(int)
  others = np.delete(pixels, channel, axis=1).max(axis=1)
  return bool(np.any(pixels[:, channel] - others > margin))


def _finite(records):
  return np.array([r['inception_score'] for r in records if r['inception_score'] is not None])


def _expected_fractions(records, edges):
  counts, _ = np.histogram(_finite(records), bins=edges)
  return counts / len(records)


@pytest.fixture(scope='module')
def records():
  return _grid_records()


class TestReadGridRecords:

  def test_round_trip(self, tmp_path, records):
    path = tmp_path / 'results.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in records[:5]))
    assert ef.read_grid_records(path) == records[:5]

  def test_empty_file(self, tmp_path):
    path = tmp_path / 'results.jsonl'
    path.write_text('')
    assert ef.read_grid_records(path) == []

  def test_malformed_middle_line(self, tmp_path, records):
    path = tmp_path / 'results.jsonl'
    lines = [json.dumps(r) for r in records[:3]]
    lines[1] = lines[1][:20]
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=r'line 2 '):
      ef.read_grid_records(path)

  @pytest.mark.parametrize('bad_line', ['', '[1, 2]', '42'])
  def test_empty_or_non_object_line(self, tmp_path, records, bad_line):
    path = tmp_path / 'results.jsonl'
    path.write_text(json.dumps(records[0]) + '\n' + bad_line + '\n' + json.dumps(records[1]))
    with pytest.raises(ValueError, match=r'line 2 '):
      ef.read_grid_records(path)

  def test_torn_last_line_is_ignored_with_a_warning(self, tmp_path, records):
    path = tmp_path / 'results.jsonl'
    complete = ''.join(json.dumps(r) + '\n' for r in records[:3])
    path.write_text(complete + json.dumps(records[3])[:25])
    with pytest.warns(RuntimeWarning, match='line 4'):
      assert ef.read_grid_records(path) == records[:3]

  def test_torn_multibyte_character(self, tmp_path, records):
    path = tmp_path / 'results.jsonl'
    # Cut inside the two bytes of the e-acute.
    torn = json.dumps({'id': 'caf\u00e9'}, ensure_ascii=False).encode('utf-8')[:-3]
    path.write_bytes((json.dumps(records[0]) + '\n').encode() + torn)
    with pytest.warns(RuntimeWarning, match='line 2'):
      assert ef.read_grid_records(path) == records[:1]

  def test_last_line_without_newline_but_complete(self, tmp_path, records):
    path = tmp_path / 'results.jsonl'
    path.write_text(json.dumps(records[0]) + '\n' + json.dumps(records[1]))
    assert ef.read_grid_records(path) == records[:2]

  def test_malformed_terminated_last_line_is_an_error(self, tmp_path, records):
    path = tmp_path / 'results.jsonl'
    path.write_text(json.dumps(records[0]) + '\n' + '{"id": \n')
    with pytest.raises(ValueError, match=r'line 2 '):
      ef.read_grid_records(path)


class TestHistogramGroups:

  def test_filters_match_numpy(self, records):
    groups = ef.histogram_groups(records)
    assert list(groups) == ['all', 'layers<=4', 'layers<=3']
    framework = np.array([r['framework'] for r in records])
    lg = np.array([r['num_layers_g'] for r in records])
    ld = np.array([r['num_layers_d'] for r in records])
    ids = np.array([r['id'] for r in records])
    for panel, limit in [('all', 99), ('layers<=4', 4), ('layers<=3', 3)]:
      assert set(groups[panel]) == {'ebgan', 'gan'}
      for name in ('ebgan', 'gan'):
        mask = (framework == name) & (lg <= limit) & (ld <= limit)
        assert [r['id'] for r in groups[panel][name]] == list(ids[mask])
    # The grid is a full product over (2, 3, 4, 5) layers: 3 / 4 and 2 / 4 per side survive.
    assert len(groups['layers<=4']['ebgan']) == 9 and len(groups['layers<=3']['ebgan']) == 4

  def test_diverged_kept_and_pt_left_out(self, records):
    groups = ef.histogram_groups(records)
    everything = groups['all']['ebgan'] + groups['all']['gan']
    assert not any(r['framework'] == 'ebgan_pt' for r in everything)
    assert sum(r['inception_score'] is None for r in everything) == sum(
        r['inception_score'] is None for r in records if r['framework'] != 'ebgan_pt')

  def test_empty(self):
    with pytest.raises(ValueError, match='records: empty'):
      ef.histogram_groups([])

  def test_duplicate_ids(self, records):
    with pytest.raises(ValueError, match='twice'):
      ef.histogram_groups([records[0], dict(records[0])])

  def test_missing_field(self, records):
    record = dict(records[0])
    del record['num_layers_d']
    with pytest.raises(ValueError, match='num_layers_d'):
      ef.histogram_groups([record])

  def test_bad_score(self, records):
    with pytest.raises(ValueError, match='inception_score'):
      ef.histogram_groups([dict(records[0], inception_score='high')])


class TestInceptionHistograms:

  def test_writes_figure_and_bars(self, tmp_path, records):
    path = str(tmp_path / 'new' / 'dir' / 'figure_6_2.png')
    drawn = ef.inception_histograms(records, path, bins=12)
    pixels = _assert_readable_png(path)
    assert _has_hue(pixels, 1, 30), 'no green (EBGAN) bars'
    assert _has_hue(pixels, 2, 15), 'no blue (GAN) bars'
    shared = _finite([r for r in records if r['framework'] != 'ebgan_pt'])
    edges = drawn['edges']
    assert len(edges) == 13
    assert edges[0] == pytest.approx(shared.min()) and edges[-1] == pytest.approx(shared.max())
    groups = ef.histogram_groups(records)
    for panel in groups:
      for name, group in groups[panel].items():
        np.testing.assert_allclose(drawn['fractions'][panel][name],
                                   _expected_fractions(group, edges))
        # Normalised per framework: the bars sum to the fraction that did not diverge.
        assert drawn['fractions'][panel][name].sum() == pytest.approx(
            len(_finite(group)) / len(group))

  def test_errors(self, tmp_path, records):
    path = tmp_path / 'figure.png'
    with pytest.raises(ValueError, match='records: empty'):
      ef.inception_histograms([], path)
    with pytest.raises(ValueError, match="no 'ebgan' record"):
      ef.inception_histograms([r for r in records if r['framework'] == 'gan'], path)
    with pytest.raises(ValueError, match="no 'gan' record"):
      ef.inception_histograms([r for r in records if r['framework'] != 'gan'], path)
    with pytest.raises(ValueError, match='bins'):
      ef.inception_histograms(records, path, bins=0)
    assert not path.exists()


class TestOptimizerHistograms:

  def test_writes_figure_and_bars(self, tmp_path, records):
    path = str(tmp_path / 'figure_6_3.png')
    drawn = ef.optimizer_histograms(records, path)
    _assert_readable_png(path)
    gan = [r for r in records if r['framework'] == 'gan']
    ebgan = [r for r in records if r['framework'] == 'ebgan']
    expected = sorted({(r['optimizer_d'], r['optimizer_g'], r['learning_rate']) for r in gan})
    assert drawn['subgrids'] == expected and len(expected) == 8
    edges = drawn['edges']
    shared = _finite(gan + ebgan)
    assert edges[0] == pytest.approx(shared.min()) and edges[-1] == pytest.approx(shared.max())
    for key in expected:
      subgrid = [r for r in gan if (r['optimizer_d'], r['optimizer_g'], r['learning_rate']) == key]
      np.testing.assert_allclose(drawn['fractions'][key]['gan'],
                                 _expected_fractions(subgrid, edges))
      np.testing.assert_allclose(drawn['fractions'][key]['ebgan'],
                                 _expected_fractions(ebgan, edges))

  def test_errors(self, tmp_path, records):
    path = tmp_path / 'figure.png'
    with pytest.raises(ValueError, match='records: empty'):
      ef.optimizer_histograms([], path)
    with pytest.raises(ValueError, match="no 'gan' record"):
      ef.optimizer_histograms([r for r in records if r['framework'] != 'gan'], path)
    with pytest.raises(ValueError, match="no 'ebgan' record"):
      ef.optimizer_histograms([r for r in records if r['framework'] == 'gan'], path)
    record = dict(next(r for r in records if r['framework'] == 'gan'))
    del record['learning_rate']
    with pytest.raises(ValueError, match='learning_rate'):
      ef.optimizer_histograms([record, records[0]], path)
    with pytest.raises(ValueError, match='learning_rate'):
      ef.optimizer_histograms([dict(record, learning_rate='fast'), records[0]], path)
    assert not path.exists()


class TestBestRecords:

  def test_max_ignoring_nulls(self, records):
    best = ef.best_records(records)
    assert list(best) == ['ebgan', 'gan', 'ebgan_pt']
    for name, record in best.items():
      scores = [r['inception_score'] for r in records
                if r['framework'] == name and r['inception_score'] is not None]
      assert record['framework'] == name and record['inception_score'] == max(scores)

  def test_all_diverged_framework_is_absent(self):
    records = [{'id': 'a', 'framework': 'gan', 'inception_score': None},
               {'id': 'b', 'framework': 'ebgan', 'inception_score': 1.0},
               {'id': 'c', 'framework': 'ebgan', 'inception_score': 3.0},
               {'id': 'd', 'framework': 'ebgan', 'inception_score': None}]
    assert {k: v['id'] for k, v in ef.best_records(records).items()} == {'ebgan': 'c'}

  def test_non_finite_counts_as_diverged(self):
    records = [{'id': 'a', 'framework': 'gan', 'inception_score': float('nan')},
               {'id': 'b', 'framework': 'gan', 'inception_score': 0.5}]
    assert ef.best_records(records)['gan']['id'] == 'b'

  def test_empty(self):
    with pytest.raises(ValueError, match='records: empty'):
      ef.best_records([])


def _expected_grid(images, scale):
  """Tiling built independently: `ceil(sqrt(N))` columns, white empty cells, uint8 RGB."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
  values = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = values[i] if c == 3 else values[i].repeat(3, -1)
  return np.kron(grid, np.ones((scale, scale, 1), np.uint8))


class TestSamplePanels:

  def test_layout_and_pixels(self, tmp_path):
    rng = np.random.default_rng(0)
    panels = {'GAN': rng.uniform(-1, 1, (10, 8, 8, 1)).astype(np.float32),
              'EBGAN': rng.uniform(-1, 1, (64, 8, 8, 1)).astype(np.float32),
              'EBGAN-PT': rng.uniform(-1, 1, (5, 12, 8, 3)).astype(np.float32)}
    path = str(tmp_path / 'samples' / 'figure_6_4.png')
    image = ef.sample_panels(panels, path, title='Figure 6.4')
    pixels = _assert_readable_png(path)
    np.testing.assert_array_equal(pixels, image)
    # Default scale: the smallest side is 8 pixels, upscaled to at least 32.
    grids = [_expected_grid(images, 4) for images in panels.values()]
    assert [g.shape[:2] for g in grids] == [(3 * 32, 4 * 32), (8 * 32, 8 * 32),
                                            (2 * 48, 3 * 32)]
    width = sum(g.shape[1] for g in grids) + 8 * (len(grids) - 1)
    height = max(g.shape[0] for g in grids)
    top = image.shape[0] - height
    assert image.shape[1] == width and top > 0
    x = 0
    for grid in grids:
      np.testing.assert_array_equal(image[top:top + grid.shape[0], x:x + grid.shape[1]], grid)
      x += grid.shape[1] + 8
    # Caption text is drawn in the band above the panels.
    assert np.any(image[:top] < 128)

  def test_explicit_scale_and_no_title(self, tmp_path):
    images = np.linspace(-1, 1, 7 * 28 * 28).reshape(7, 28, 28, 1).astype(np.float32)
    plain = ef.sample_panels({'samples': images}, tmp_path / 'a.png', scale=1)
    titled = ef.sample_panels({'samples': images}, tmp_path / 'b.png', scale=1, title='t')
    grid = _expected_grid(images, 1)
    assert plain.shape[1] == grid.shape[1] == 3 * 28
    np.testing.assert_array_equal(plain[plain.shape[0] - grid.shape[0]:], grid)
    assert titled.shape[0] > plain.shape[0]
    assert ef.sample_panels({'s': images}, tmp_path / 'c.png').shape[1] == 2 * 3 * 28

  @pytest.mark.parametrize('n', [1, 2, 4, 5, 9, 10, 64, 65])
  def test_grid_shape(self, n):
    cols = math.ceil(math.sqrt(n))
    assert ef.grid_shape(n) == (math.ceil(n / cols), cols)

  @pytest.mark.parametrize('panels, kwargs, match', [
      ({}, {}, 'empty'),
      ({'a': np.zeros((4, 8, 8, 2), np.float32)}, {}, 'panels'),
      ({'a': np.zeros((8, 8, 1), np.float32)}, {}, 'panels'),
      ({'a': np.zeros((4, 8, 8), np.float32)}, {}, 'panels'),
      ({'a': np.zeros((4, 8, 8, 1), np.uint8)}, {}, 'dtype'),
      ({'': np.zeros((4, 8, 8, 1), np.float32)}, {}, 'caption'),
      ({'a': np.zeros((4, 8, 8, 1), np.float32)}, {'scale': 0}, 'scale'),
      ({'a': np.zeros((4, 8, 8, 1), np.float32)}, {'title': ''}, 'title'),
  ])
  def test_errors(self, tmp_path, panels, kwargs, match):
    with pytest.raises(ValueError, match=match):
      ef.sample_panels(panels, tmp_path / 'x.png', **kwargs)
    assert not (tmp_path / 'x.png').exists()


class TestToy2dScatter:

  def test_writes_figure_and_coverage(self, tmp_path):
    rng = np.random.default_rng(0)
    ring = np.stack([2 * np.cos(np.arange(8) * np.pi / 4), 2 * np.sin(np.arange(8) * np.pi / 4)],
                    1)
    data = ring[rng.integers(0, 8, 500)] + 0.02 * rng.normal(size=(500, 2))
    collapsed = ring[rng.integers(0, 2, 500)] + 0.02 * rng.normal(size=(500, 2))
    collapsed[0] = np.nan
    path = str(tmp_path / 'toy.png')
    coverage = ef.toy2d_scatter({'data': data, 'GAN': collapsed}, ring, path, std=0.02)
    pixels = _assert_readable_png(path)
    assert _has_hue(pixels, 0, 60), 'no red mode markers'
    for label, points in (('data', data), ('GAN', collapsed)):
      expected = mc.mode_coverage(points, ring, 0.02)
      assert coverage[label]['modes_covered'] == expected['modes_covered']
      np.testing.assert_array_equal(coverage[label]['counts'], expected['counts'])
    assert coverage['GAN']['modes_covered'] == 2
    assert ef.toy2d_scatter({'data': data}, ring, tmp_path / 'plain.png') == {}

  @pytest.mark.parametrize('panels, modes, kwargs, match', [
      ({}, np.zeros((2, 2)), {}, 'empty'),
      ({'a': np.zeros((5, 3))}, np.zeros((2, 2)), {}, r"panels\['a'\]"),
      ({'a': np.zeros((5, 2))}, np.zeros((2, 3)), {}, 'modes'),
      ({'a': np.zeros((5, 2))}, np.zeros((2, 2)), {'std': 0.0}, 'std'),
  ])
  def test_errors(self, tmp_path, panels, modes, kwargs, match):
    with pytest.raises(ValueError, match=match):
      ef.toy2d_scatter(panels, modes, tmp_path / 'x.png', **kwargs)


def _parse_table(table):
  """`{framework label: [cells]}` and the header cells of a Markdown table."""
  lines = table.strip().split('\n')
  cells = [[c.strip() for c in line.strip('|').split('|')] for line in lines]
  assert re.fullmatch(r'[|\-:]+', lines[1])
  return cells[0], {row[0]: row[1:] for row in cells[2:]}


class TestSummaryTable:

  def test_values_match_numpy(self, records):
    header, rows = _parse_table(ef.summary_table(records))
    pooled = _finite(records)
    threshold = np.median(pooled)
    assert f'{threshold:.3f}' in header[-1]
    assert list(rows) == ['EBGAN', 'GAN', 'EBGAN-PT']
    for name, label in ef.FRAMEWORK_LABELS.items():
      group = [r for r in records if r['framework'] == name]
      scores = _finite(group)
      expected = [len(group), len(group) - len(scores), scores.mean(), np.median(scores),
                  np.percentile(scores, 90), scores.max(), np.mean(
                      [s is not None and s > threshold for s in
                       (r['inception_score'] for r in group)])]
      np.testing.assert_allclose([float(c) for c in rows[label]], expected, atol=5e-4)

  def test_given_threshold_and_all_diverged(self):
    records = [{'id': 'a', 'framework': 'gan', 'inception_score': None},
               {'id': 'b', 'framework': 'ebgan', 'inception_score': 1.0},
               {'id': 'c', 'framework': 'ebgan', 'inception_score': 3.0},
               {'id': 'd', 'framework': 'ebgan', 'inception_score': None},
               {'id': 'e', 'framework': 'other', 'inception_score': 2.0}]
    header, rows = _parse_table(ef.summary_table(records, threshold=0.5))
    assert '0.500' in header[-1]
    assert rows['EBGAN'] == ['3', '1', '2.000', '2.000', '2.800', '3.000', '0.667']
    assert rows['GAN'] == ['1', '1', '-', '-', '-', '-', '0.000']
    assert list(rows) == ['EBGAN', 'GAN', 'other']

  def test_errors(self, records):
    with pytest.raises(ValueError, match='records: empty'):
      ef.summary_table([])
    with pytest.raises(ValueError, match='threshold'):
      ef.summary_table(records, threshold=float('nan'))
    with pytest.raises(ValueError, match='framework'):
      ef.summary_table([{'inception_score': 1.0}])
