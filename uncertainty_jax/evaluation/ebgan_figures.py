"""Figures and tables of chapter 6 (EBGAN): the MNIST grid search of section 6.3.1 and samples.

The grid search writes one record per configuration, a JSON object per line of
`<grid workdir>/results.jsonl` (`read_grid_records`), with the keys `id`, `framework` ('ebgan',
'gan' or 'ebgan_pt'), `num_layers_g`, `num_layers_d`, `optimizer_d`, `optimizer_g`,
`learning_rate`, `inception_score` (the tweaked inception score I' of eq. 6.62, null when the run
diverged), and others that are not read here. A configuration is *diverged* when its
`inception_score` is null (or not finite); diverged configurations are counted, never plotted.

* `inception_histograms`: Figure 6.2, histograms of I' for EBGAN (green) and GAN (blue) over all
  configurations (a), those with both nLayerG and nLayerD <= 4 (b), and <= 3 (c).
* `optimizer_histograms`: Figure 6.3, the GAN histogram of each (optimD, optimG, lr) sub-grid
  with the EBGAN histogram as reference.
* `best_records`: the configuration of highest I' per framework, whose samples make Figure 6.4.
* `sample_panels`: side-by-side captioned grids of samples (Figures 6.4 to 6.7).
* `toy2d_scatter`: samples of a 2-D mixture with its modes marked (see `mode_coverage`).
* `summary_table`: a Markdown table of I' per framework.

Histograms are normalised per framework: a bar is the fraction of that framework's
configurations, diverged ones included, whose I' falls in the bin, so frameworks with different
numbers of configurations compare, and a framework's bars sum to its fraction of configurations
that did not diverge. All the histograms of one figure share their bins.

PNGs are written atomically (a reader never sees half a file), creating directories, with the
permissions of `visualize.save_png`. matplotlib is imported inside the drawing functions, and
draws with its Agg canvas without touching pyplot's global state.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Mapping

import numpy as np

from uncertainty_jax.evaluation import mode_coverage as mode_coverage_lib
from uncertainty_jax.evaluation import visualize

FRAMEWORK_LABELS = {'ebgan': 'EBGAN', 'gan': 'GAN', 'ebgan_pt': 'EBGAN-PT'}
# The thesis' colours: EBGAN green, GAN blue.
FRAMEWORK_COLORS = {'ebgan': '#2ca02c', 'gan': '#1f77b4', 'ebgan_pt': '#ff7f0e'}
# Figure 6.2's panels: (name, caption, the largest num_layers_g and num_layers_d, None for all).
HISTOGRAM_PANELS = (
    ('all', '(a) all configurations', None),
    ('layers<=4', '(b) nLayerG, nLayerD <= 4', 4),
    ('layers<=3', '(c) nLayerG, nLayerD <= 3', 3),
)
# The frameworks compared in Figures 6.2 and 6.3; EBGAN-PT has its own experiments.
HISTOGRAM_FRAMEWORKS = ('ebgan', 'gan')
DEFAULT_BINS = 20
# `sample_panels` upscales images until their smaller side has at least this many pixels.
_READABLE_SIDE = 32
# White pixels between the panels of `sample_panels`.
_PANEL_GAP = 8
_WHITE = 255
_DPI = 100
# The score's name in figures and tables: I with a prime, as in eq. 6.62.
_SCORE_NAME = 'I\u2032'


# ------------------------------------------------------------------------------------------------
# Records.


def read_grid_records(path: str | os.PathLike) -> list[dict]:
  """Reads a grid's `results.jsonl`: one JSON object per line, in file order.

  A grid appends a line per finished configuration, so a run killed mid-write can leave an
  incomplete last line, without its newline: that line is ignored with a `RuntimeWarning`.
  Any other line that is not a JSON object, an empty line included, is an error: skipping it
  would silently drop a configuration from the figures.

  Args:
    path: the `.jsonl` file.

  Returns:
    The records, a list of dicts (empty for an empty file).

  Raises:
    ValueError: a line other than an unterminated last one is not a JSON object; the message
      names the file and the 1-based line number.
    OSError: the file cannot be read.
  """
  path = os.fspath(path)
  with open(path, 'rb') as f:
    data = f.read()
  lines = data.split(b'\n')
  terminated = lines[-1] == b''
  if terminated:
    lines = lines[:-1]
  records = []
  for number, raw in enumerate(lines, start=1):
    # JSONDecodeError and UnicodeDecodeError are both ValueErrors.
    try:
      record = json.loads(raw.decode('utf-8'))
      problem = None if isinstance(record, dict) else f'a JSON {type(record).__name__}'
    except ValueError as error:
      problem = str(error)
    if problem is None:
      records.append(record)
    elif number == len(lines) and not terminated:
      warnings.warn(f'{path}: line {number} is incomplete ({problem}), probably cut short by an '
                    'interrupted write; ignored', RuntimeWarning, stacklevel=2)
    else:
      raise ValueError(f'{path}: line {number} is not a JSON object ({problem}); expected one '
                       'grid record per line')
  return records


def _record_name(record: Mapping, position: int) -> str:
  return repr(record['id']) if 'id' in record else f'#{position}'


def _check_records(records) -> list[dict]:
  """`records` as a non-empty list of dicts with a string `framework`, and unique ids."""
  if isinstance(records, (str, bytes, Mapping)):
    raise ValueError(f'records: a {type(records).__name__}; expected a list of grid records '
                     '(see read_grid_records)')
  try:
    records = list(records)
  except TypeError:
    raise ValueError(f'records: a {type(records).__name__}; expected a list of grid records '
                     '(see read_grid_records)') from None
  if not records:
    raise ValueError('records: empty; expected at least one grid record')
  seen = set()
  for position, record in enumerate(records):
    if not isinstance(record, Mapping):
      raise ValueError(f'records[{position}]: a {type(record).__name__}; expected a dict')
    if not isinstance(record.get('framework'), str):
      raise ValueError(f'records[{position}] ({_record_name(record, position)}): framework='
                       f'{record.get("framework")!r}; expected a string such as '
                       f'{sorted(FRAMEWORK_LABELS)}')
    if 'inception_score' not in record:
      raise ValueError(f'records[{position}] ({_record_name(record, position)}): no '
                       "'inception_score'; expected a number, or null when diverged")
    _score(record, position)
    if 'id' in record:
      if record['id'] in seen:
        raise ValueError(f'records: id {record["id"]!r} appears twice; a configuration would '
                         'be counted twice')
      seen.add(record['id'])
  return records


def _score(record: Mapping, position: int = 0) -> float | None:
  """The record's I', or None when the configuration diverged (null or non-finite score)."""
  value = record['inception_score']
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f'records[{position}] ({_record_name(record, position)}): inception_score='
                     f'{value!r}; expected a number, or null when diverged')
  value = float(value)
  return value if math.isfinite(value) else None


def _field(record: Mapping, key: str, position: int):
  if key not in record:
    raise ValueError(f'records[{position}] ({_record_name(record, position)}): no {key!r}; '
                     'expected a grid record with the fields of Table 6.1')
  return record[key]


def _num_layers(record: Mapping, key: str, position: int) -> int:
  value = _field(record, key, position)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f'records[{position}] ({_record_name(record, position)}): {key}={value!r}; '
                     'expected an int')
  return int(value)


def _scores(records) -> np.ndarray:
  """The finite I' of `records`, float64 `[M]`, diverged configurations left out."""
  values = [_score(r) for r in records]
  return np.asarray([v for v in values if v is not None], np.float64)


def histogram_groups(records) -> dict[str, dict[str, list[dict]]]:
  """The records of each panel of Figure 6.2, per framework.

  Panel 'all' holds every EBGAN and GAN record; 'layers<=4' those with `num_layers_g <= 4` and
  `num_layers_d <= 4`; 'layers<=3' likewise with 3 (`HISTOGRAM_PANELS`). Diverged configurations
  are kept (they are counted in the legends); records of other frameworks (EBGAN-PT) are left
  out.

  Args:
    records: grid records (see `read_grid_records`).

  Returns:
    `{panel: {'ebgan': [...], 'gan': [...]}}` for the panels in `HISTOGRAM_PANELS` order, each
    list in the order of `records`; a list may be empty.

  Raises:
    ValueError: no records, a record without a string `framework` or an `inception_score`, an
      EBGAN or GAN record without integer `num_layers_g` / `num_layers_d`, or a repeated id.
  """
  records = _check_records(records)
  groups = {}
  for panel, _, max_layers in HISTOGRAM_PANELS:
    groups[panel] = {framework: [] for framework in HISTOGRAM_FRAMEWORKS}
    for position, record in enumerate(records):
      framework = record['framework']
      if framework not in HISTOGRAM_FRAMEWORKS:
        continue
      if max_layers is not None and (
          _num_layers(record, 'num_layers_g', position) > max_layers
          or _num_layers(record, 'num_layers_d', position) > max_layers):
        continue
      groups[panel][framework].append(record)
  return groups


def _require_frameworks(records: list[dict], frameworks, figure: str) -> None:
  present = {r['framework'] for r in records}
  for framework in frameworks:
    if framework not in present:
      raise ValueError(f'records: no {framework!r} record among frameworks {sorted(present)}; '
                       f'{figure} needs both {" and ".join(map(repr, frameworks))} records')


def best_records(records) -> dict[str, dict]:
  """The configuration of highest I' of each framework (Figure 6.4 shows their samples).

  Diverged configurations (null I') are ignored; a framework whose configurations all diverged
  has no entry. Among equal scores, the first record wins.

  Args:
    records: grid records (see `read_grid_records`).

  Returns:
    `{framework: record}`, frameworks in order of first appearance.

  Raises:
    ValueError: no records, or a record without a string `framework` or an `inception_score`.
  """
  records = _check_records(records)
  best, best_score = {}, {}
  for record in records:
    score = _score(record)
    if score is None:
      continue
    framework = record['framework']
    if framework not in best or score > best_score[framework]:
      best[framework], best_score[framework] = record, score
  order = list(dict.fromkeys(r['framework'] for r in records))
  return {framework: best[framework] for framework in order if framework in best}


# ------------------------------------------------------------------------------------------------
# Histograms.


def _check_bins(bins) -> int:
  if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
    raise ValueError(f'bins={bins!r}: expected an int >= 1')
  return int(bins)


def _shared_edges(records, bins: int) -> np.ndarray:
  """Bin edges `[bins + 1]` covering every finite I' of `records` ([0, 1] when there is none)."""
  scores = _scores(records)
  if scores.size == 0:
    return np.linspace(0.0, 1.0, bins + 1)
  return np.histogram_bin_edges(scores, bins=bins)


def _fractions(records, edges: np.ndarray) -> np.ndarray:
  """Per bin, the fraction of `records` (diverged included) whose I' falls in it, `[bins]`."""
  if not records:
    return np.zeros(len(edges) - 1)
  counts, _ = np.histogram(_scores(records), bins=edges)
  return counts / len(records)


def _legend_label(framework: str, records) -> str:
  diverged = len(records) - _scores(records).size
  name = FRAMEWORK_LABELS.get(framework, framework)
  return f'{name}: {len(records)} configs, {diverged} diverged'


def _draw_histograms(ax, by_framework: Mapping[str, list], edges: np.ndarray) -> dict:
  """Overlaid normalised histograms, one per framework; returns `{framework: fractions}`."""
  fractions = {}
  for framework, records in by_framework.items():
    fractions[framework] = _fractions(records, edges)
    color = FRAMEWORK_COLORS.get(framework, 'grey')
    # Bars from precomputed heights: `ax.hist` would need one weight per score.
    ax.stairs(fractions[framework], edges, fill=True, alpha=0.45, color=color,
              label=_legend_label(framework, records))
    ax.stairs(fractions[framework], edges, color=color, linewidth=1.0)
  ax.set_xlim(edges[0], edges[-1])
  # Headroom above the tallest bar keeps the legend off the bars.
  tallest = max((float(f.max()) for f in fractions.values() if f.size), default=0.0)
  ax.set_ylim(0.0, 1.4 * tallest if tallest > 0 else 1.0)
  ax.set_xlabel(_SCORE_NAME)
  ax.set_ylabel('fraction of configurations')
  ax.legend(fontsize='small', loc='upper left')
  return fractions


def _new_figure(nrows: int, ncols: int, panel_size: tuple[float, float]):
  """A constrained-layout figure on an Agg canvas, and its `[nrows, ncols]` axes."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(ncols * panel_size[0], nrows * panel_size[1]), dpi=_DPI,
                  layout='constrained')
  FigureCanvasAgg(figure)
  return figure, figure.subplots(nrows, ncols, squeeze=False)


def _save_figure(figure, path: str | os.PathLike) -> None:
  # pylint: disable-next=protected-access
  visualize._write_atomically(path, lambda f: figure.savefig(f, format='png', dpi=_DPI))


def inception_histograms(records, path: str | os.PathLike, *, bins: int = DEFAULT_BINS) -> dict:
  """Figure 6.2: histograms of I' of EBGAN (green) versus GAN (blue), in three panels.

  Panels (a) all configurations, (b) nLayerG and nLayerD <= 4, (c) <= 3 (`histogram_groups`).
  x is I', y the fraction of a framework's configurations in the panel (see the module
  docstring); the legend gives each framework's number of configurations and how many diverged.
  The three panels share `bins` equal bins spanning every finite I' of the EBGAN and GAN records.
  EBGAN-PT records are not drawn.

  Args:
    records: grid records (see `read_grid_records`).
    path: the PNG to write.
    bins: the number of bins, >= 1.

  Returns:
    `{'edges': [bins + 1], 'fractions': {panel: {'ebgan': [bins], 'gan': [bins]}}}`, the bars
    drawn.

  Raises:
    ValueError: no records, no EBGAN or no GAN record, a malformed record (see
      `histogram_groups`), or a bad `bins`.
  """
  bins = _check_bins(bins)
  records = _check_records(records)
  groups = histogram_groups(records)
  _require_frameworks(records, HISTOGRAM_FRAMEWORKS, 'Figure 6.2')
  every = groups['all']['ebgan'] + groups['all']['gan']
  edges = _shared_edges(every, bins)
  figure, axes = _new_figure(1, len(HISTOGRAM_PANELS), (5.0, 3.8))
  fractions = {}
  for ax, (panel, caption, _) in zip(axes[0], HISTOGRAM_PANELS):
    fractions[panel] = _draw_histograms(ax, groups[panel], edges)
    ax.set_title(caption)
  _save_figure(figure, path)
  return {'edges': edges, 'fractions': fractions}


def optimizer_histograms(records, path: str | os.PathLike, *, bins: int = DEFAULT_BINS,
                         max_columns: int = 4) -> dict:
  """Figure 6.3: the GAN histogram of I' of each (optimD, optimG, lr) sub-grid, EBGAN as reference.

  One panel per `(optimizer_d, optimizer_g, learning_rate)` present among the GAN records, in
  sorted order, titled with it; each panel overlays that sub-grid's GAN histogram (blue) and the
  histogram of every EBGAN record (green). Panels fill rows of `max_columns`; all share the bins,
  spanning every finite I' of the EBGAN and GAN records. Normalisation and legends as in
  `inception_histograms`.

  Args:
    records: grid records (see `read_grid_records`).
    path: the PNG to write.
    bins: the number of bins, >= 1.
    max_columns: the most panels in a row, >= 1.

  Returns:
    `{'edges': [bins + 1], 'subgrids': [(optimizer_d, optimizer_g, learning_rate), ...],
    'fractions': {subgrid: {'gan': [bins], 'ebgan': [bins]}}}`, the bars drawn.

  Raises:
    ValueError: no records, no EBGAN or no GAN record, a record without a string `framework` or
      an `inception_score`, a GAN record without `optimizer_d` / `optimizer_g` /
      `learning_rate`, or a bad `bins` / `max_columns`.
  """
  bins = _check_bins(bins)
  if (isinstance(max_columns, bool) or not isinstance(max_columns, (int, np.integer))
      or max_columns < 1):
    raise ValueError(f'max_columns={max_columns!r}: expected an int >= 1')
  records = _check_records(records)
  _require_frameworks(records, ('gan', 'ebgan'), 'Figure 6.3')
  subgrids = {}
  for position, record in enumerate(records):
    if record['framework'] != 'gan':
      continue
    learning_rate = _field(record, 'learning_rate', position)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.integer,
                                                                         np.floating)):
      raise ValueError(f'records[{position}] ({_record_name(record, position)}): learning_rate='
                       f'{learning_rate!r}; expected a number')
    key = (str(_field(record, 'optimizer_d', position)),
           str(_field(record, 'optimizer_g', position)), float(learning_rate))
    subgrids.setdefault(key, []).append(record)
  ebgan = [r for r in records if r['framework'] == 'ebgan']
  edges = _shared_edges(ebgan + [r for r in records if r['framework'] == 'gan'], bins)
  keys = sorted(subgrids)
  ncols = min(len(keys), int(max_columns))
  nrows = math.ceil(len(keys) / ncols)
  figure, axes = _new_figure(nrows, ncols, (4.2, 3.2))
  fractions = {}
  for i, key in enumerate(keys):
    ax = axes[i // ncols, i % ncols]
    fractions[key] = _draw_histograms(ax, {'gan': subgrids[key], 'ebgan': ebgan}, edges)
    optimizer_d, optimizer_g, learning_rate = key
    ax.set_title(f'GAN: optimD {optimizer_d}, optimG {optimizer_g}, lr {learning_rate:g}',
                 fontsize='medium')
  for i in range(len(keys), nrows * ncols):
    axes[i // ncols, i % ncols].set_visible(False)
  _save_figure(figure, path)
  return {'edges': edges, 'subgrids': keys, 'fractions': fractions}


# ------------------------------------------------------------------------------------------------
# Samples.


def _check_label(name: str, label) -> str:
  return visualize.check_label(f'{name}:', label)


def _check_scale(scale) -> int:
  if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
    raise ValueError(f'scale={scale!r}: expected an int >= 1, or None to choose one')
  return int(scale)


def _check_images(name: str, images) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape:
    raise ValueError(f'{name}: shape {images.shape}; expected non-empty [N, H, W, C] with C in '
                     '(1, 3)')
  return images


def grid_shape(num_images: int) -> tuple[int, int]:
  """`(rows, columns)` of the square-ish grid of `sample_grid`: `columns = ceil(sqrt(N))`."""
  if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) \
      or num_images < 1:
    raise ValueError(f'num_images={num_images!r}: expected an int >= 1')
  columns = math.isqrt(int(num_images) - 1) + 1
  return math.ceil(num_images / columns), columns


def sample_grid(images, *, scale: int = 1) -> np.ndarray:
  """Tiles samples into one image, row by row, upscaled by nearest-neighbour.

  With `(rows, cols) = grid_shape(N)`, image `i` is the cell at row `i // cols`, column
  `i % cols`; cells after the last image are white.

  Args:
    images: `[N, H, W, C]` floats in [-1, 1], C in (1, 3); C = 1 is shown as grey.
    scale: integer upscaling factor, >= 1 (pixel repetition).

  Returns:
    uint8 `[rows * H * scale, cols * W * scale, 3]`.

  Raises:
    ValueError: a bad shape, integer images (see `visualize.to_uint8`) or a bad `scale`.
  """
  images = _check_images('images', images)
  scale = _check_scale(scale)
  n, h, w, _ = images.shape
  rows, cols = grid_shape(n)
  cells = np.full((rows * cols, h, w, 3), _WHITE, np.uint8)
  # pylint: disable-next=protected-access
  cells[:n] = visualize._rgb(visualize.to_uint8(images))
  # pylint: disable-next=protected-access
  grid = visualize._tile(cells.reshape(rows, cols, h, w, 3))
  return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)


def sample_panels(panels: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                  title: str | None = None, scale: int | None = None) -> np.ndarray:
  """Side-by-side captioned grids of samples, as in Figures 6.4 to 6.7, written as a PNG.

  Each entry becomes a panel, `sample_grid(images, scale=scale)`, in the dict's order, separated
  by 8 white pixels and aligned at the top (white below a shorter panel). Above the panels, a
  white band holds the title line (when given) and a line with each caption centred over its
  panel (shortened with '..' when wider than the panel). Panel `j` then starts at column
  `sum_{i<j} (W_i' + 8)` and row `top`, where `W_i'` is panel i's width and `top` the band's
  height (`image.shape[0] - max_i H_i'`).

  Args:
    panels: an ordered dict caption -> `[N, H, W, C]` floats in [-1, 1], C in (1, 3); captions are
      non-empty Latin-1 strings. Panels may differ in N, H, W and C.
    path: the PNG to write.
    title: a line above the captions, or None.
    scale: integer upscaling factor, >= 1, the same for every panel; None picks the smallest
      one that makes the smaller side of the smallest images at least 32 pixels (4 for 8x8
      digits, 2 for 28x28 MNIST, 1 from 32 pixels up).

  Returns:
    The uint8 `[top + max_i H_i', sum_i W_i' + 8 (P - 1), 3]` image written.

  Raises:
    ValueError: no panels, a bad caption or title, a bad array (see `sample_grid`), or a bad
      `scale`.
  """
  if not isinstance(panels, Mapping):
    raise ValueError(f'panels: a {type(panels).__name__}; expected a dict caption -> '
                     '[N, H, W, C]')
  if not panels:
    raise ValueError('panels: an empty dict; expected at least one caption -> [N, H, W, C]')
  checked = [(_check_label('panels caption', label),
              _check_images(f'panels[{label!r}]', images)) for label, images in panels.items()]
  if title is not None:
    title = _check_label('title', title)
  if scale is None:
    smallest = min(min(images.shape[1:3]) for _, images in checked)
    scale = max(1, math.ceil(_READABLE_SIDE / smallest))
  scale = _check_scale(scale)
  grids = [sample_grid(images, scale=scale) for _, images in checked]
  height = max(g.shape[0] for g in grids)
  width = sum(g.shape[1] for g in grids) + _PANEL_GAP * (len(grids) - 1)
  body = np.full((height, width, 3), _WHITE, np.uint8)
  spans, x = [], 0
  for (label, _), grid in zip(checked, grids):
    body[:grid.shape[0], x:x + grid.shape[1]] = grid
    spans.append((label, x, x + grid.shape[1]))
    x += grid.shape[1] + _PANEL_GAP
  lines = ([[(title, 0, width)]] if title is not None else []) + [spans]
  # pylint: disable-next=protected-access
  image = np.concatenate([visualize._header(width, lines), body], axis=0)
  visualize.save_png(path, image)
  return image


def toy2d_scatter(panels: Mapping[str, np.ndarray], modes, path: str | os.PathLike, *,
                  std: float | None = None, radius_stds: float = 3.0,
                  max_columns: int = 4) -> dict:
  """Scatter plots of 2-D samples with the mixture's modes marked (red crosses), one per entry.

  All panels share their axes limits: the box around the modes and every finite sample, padded
  by 5% of its size, with equal scales on x and y. With `std`, each mode is circled at the
  high-quality radius `radius_stds * std` and each title gives `mode_coverage` (modes covered,
  with VEEGAN's rule, and the fraction of high-quality samples). Samples with a non-finite
  coordinate are not drawn; titles count them.

  Args:
    panels: an ordered dict title -> `[N, 2]` samples, N >= 1.
    modes: `[K, 2]` the mixture's means (`Toy2D.modes`), finite.
    path: the PNG to write.
    std: the mixture components' standard deviation (`Toy2D.mode_std`), > 0, or None.
    radius_stds: the high-quality radius in standard deviations, > 0 (used with `std`).
    max_columns: the most panels in a row, >= 1.

  Returns:
    `{title: mode_coverage(...) dict}` when `std` is given, else `{}`.

  Raises:
    ValueError: no panels, a bad title, samples not `[N, 2]`, modes not finite `[K, 2]`, or a bad
      `std` / `radius_stds` / `max_columns`.
  """
  if not isinstance(panels, Mapping):
    raise ValueError(f'panels: a {type(panels).__name__}; expected a dict title -> [N, 2]')
  if not panels:
    raise ValueError('panels: an empty dict; expected at least one title -> [N, 2]')
  # pylint: disable-next=protected-access
  modes = mode_coverage_lib._check_points('modes', modes, allow_nonfinite=False)
  if modes.shape[1] != 2:
    raise ValueError(f'modes.shape={modes.shape}: expected [K, 2]')
  checked = []
  for label, points in panels.items():
    label = _check_label('panels title', label)
    # pylint: disable-next=protected-access
    points = mode_coverage_lib._check_points(f'panels[{label!r}]', points, allow_nonfinite=True)
    if points.shape[1] != 2:
      raise ValueError(f'panels[{label!r}]: shape {points.shape}; expected [N, 2]')
    checked.append((label, points))
  if (isinstance(max_columns, bool) or not isinstance(max_columns, (int, np.integer))
      or max_columns < 1):
    raise ValueError(f'max_columns={max_columns!r}: expected an int >= 1')
  coverage = {}
  if std is not None:
    coverage = {label: mode_coverage_lib.mode_coverage(points, modes, std,
                                                       radius_stds=radius_stds)
                for label, points in checked}
  finite = [points[np.all(np.isfinite(points), axis=1)] for _, points in checked]
  everything = np.concatenate([modes] + finite, axis=0)
  low, high = everything.min(axis=0), everything.max(axis=0)
  center, half = (low + high) / 2, max(float(np.max(high - low)), 1e-6) * 0.55
  ncols = min(len(checked), int(max_columns))
  nrows = math.ceil(len(checked) / ncols)
  figure, axes = _new_figure(nrows, ncols, (3.6, 3.8))
  from matplotlib.patches import Circle  # pylint: disable=g-import-not-at-top
  for i, ((label, points), shown) in enumerate(zip(checked, finite)):
    ax = axes[i // ncols, i % ncols]
    ax.scatter(shown[:, 0], shown[:, 1], s=3, alpha=0.4, color=FRAMEWORK_COLORS['gan'],
               linewidths=0)
    ax.scatter(modes[:, 0], modes[:, 1], s=30, marker='x', color='red', linewidths=1.2)
    text = label
    if std is not None:
      for mode in modes:
        ax.add_patch(Circle(tuple(mode), coverage[label]['radius'], fill=False, color='red',
                            linewidth=0.6))
      c = coverage[label]
      text += (f"\n{c['modes_covered']}/{c['num_modes']} modes, "
               f"{c['high_quality_fraction']:.0%} high quality")
    dropped = points.shape[0] - shown.shape[0]
    if dropped:
      text += f'\n{dropped} non-finite samples not shown'
    ax.set_title(text, fontsize='medium')
    ax.set_xlim(center[0] - half, center[0] + half)
    ax.set_ylim(center[1] - half, center[1] + half)
    ax.set_aspect('equal')
  for i in range(len(checked), nrows * ncols):
    axes[i // ncols, i % ncols].set_visible(False)
  _save_figure(figure, path)
  return coverage


# ------------------------------------------------------------------------------------------------
# Table.


def _format(value: float) -> str:
  return f'{value:.3f}'


def summary_table(records, *, threshold: float | None = None) -> str:
  """A Markdown table of I' with a row per framework.

  Columns: configurations, diverged (null I'), then over the finite I' the mean, median, 90th
  percentile (numpy's linear interpolation) and max ('-' when all diverged), and the fraction of
  configurations, diverged ones included, with I' strictly above `threshold`. The default
  threshold is the median of the finite I' of every record, all frameworks pooled, so the column
  reads as which framework beats the typical configuration; it is given in the column header.
  Rows are EBGAN, GAN, EBGAN-PT (those present), then other frameworks in sorted order.

  Args:
    records: grid records (see `read_grid_records`).
    threshold: a finite number, or None for the pooled median.

  Returns:
    The table, lines joined by newlines, ending with a newline.

  Raises:
    ValueError: no records, a record without a string `framework` or an `inception_score`, or a
      non-finite `threshold`.
  """
  records = _check_records(records)
  if threshold is not None:
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer,
                                                                  np.floating))
        or not math.isfinite(threshold)):
      raise ValueError(f'threshold={threshold!r}: expected a finite number, or None for the '
                       'pooled median')
    threshold = float(threshold)
  else:
    pooled = _scores(records)
    threshold = float(np.median(pooled)) if pooled.size else None
  present = {r['framework'] for r in records}
  order = [f for f in FRAMEWORK_LABELS if f in present] + sorted(present - set(FRAMEWORK_LABELS))
  above = f'> {_format(threshold)}' if threshold is not None else f'> (no finite {_SCORE_NAME})'
  lines = [
      f'| framework | configurations | diverged | {_SCORE_NAME} mean | {_SCORE_NAME} median | '
      f'{_SCORE_NAME} 90th pct. | {_SCORE_NAME} max | fraction {_SCORE_NAME} {above} |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for framework in order:
    group = [r for r in records if r['framework'] == framework]
    scores = _scores(group)
    if scores.size:
      stats = [np.mean(scores), np.median(scores), np.percentile(scores, 90), np.max(scores)]
      stats = [_format(float(s)) for s in stats]
    else:
      stats = ['-'] * 4
    fraction = (_format(float(np.sum(scores > threshold)) / len(group))
                if threshold is not None else '-')
    lines.append(f'| {FRAMEWORK_LABELS.get(framework, framework)} | {len(group)} | '
                 f'{len(group) - scores.size} | ' + ' | '.join(stats) + f' | {fraction} |')
  return '\n'.join(lines) + '\n'
