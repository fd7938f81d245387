"""Chapter 5's evaluation: swap / interpolation / retrieval / generation grids and s-z probes.

The figures (thesis Figures 5.2-5.5) are uint8 RGB grids built from float images in [-1, 1] that
the caller has already encoded and decoded; `visualize.save_png` writes them. Real images (taken
from the dataset) are framed in green (`visualize.TARGET_COLOR`); generated images get a white
frame, the colour of the background, so they read as unframed; blocks of real images are set apart
from the generated ones by a wider white gap.

The numbers are:

* `probe_error`, `probe_table`: Table 5.2, the error of a two-layer network predicting a label from
  the specified code s or the unspecified code z, next to the no-input ("chance") error.
* `mutual_information_gap`: MIG (Chen et al., 2018), as computed by disentanglement_lib
  (Locatello et al., 2019).
* `dci`: disentanglement, completeness and informativeness (Eastwood & Williams, 2018) from a tree
  ensemble's importance matrix; `block_importance` sums that matrix over the s and z dimensions.
* `nearest_neighbours`: the retrieval of Figures 5.2c-d.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from uncertainty_jax.evaluation import visualize

# Real (dataset) images are framed in the colour of true frames elsewhere in the library.
REAL_COLOR = visualize.TARGET_COLOR
# Background, gaps and the frame of generated images.
BACKGROUND = (255, 255, 255)

_MIN_WIDTH = 32


# ------------------------------------------------------------------------------------------------
# Figures.


def _check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f'{name}={value!r}: expected an int >= {minimum}')
  return int(value)


def _check_images(name: str, images, lead: int, like=None) -> np.ndarray:
  """Validates `[*lead dims, h, w, c]` float images, c in (1, 3), matching `like`'s `(h, w, c)`."""
  images = np.asarray(images)
  if images.dtype.kind not in 'f':
    raise ValueError(f'{name}: dtype {images.dtype}; expected floats in [-1, 1]')
  if images.ndim != lead + 3 or images.shape[-1] not in (1, 3):
    dims = ', '.join(['N'] * lead + ['h', 'w', 'c'])
    raise ValueError(f'{name}: shape {images.shape}; expected [{dims}] with c in (1, 3)')
  if like is not None and images.shape[-3:] != like.shape[-3:]:
    raise ValueError(f'{name}: images of shape {images.shape[-3:]}; expected {like.shape[-3:]} '
                     'like the other images')
  if any(d == 0 for d in images.shape):
    raise ValueError(f'{name}: shape {images.shape}; expected no empty dimension')
  return images


def _scale_for(width: int, scale) -> int:
  if scale is None:
    return max(1, math.ceil(_MIN_WIDTH / width))
  return _check_int('scale', scale, 1)


def _cells(images: np.ndarray, scale: int, border: int, color) -> np.ndarray:
  """Float images `[..., h, w, c]` -> framed uint8 cells `[..., h s + 2 b, w s + 2 b, 3]`."""
  pixels = visualize._rgb(visualize.to_uint8(images))  # pylint: disable=protected-access
  pixels = np.repeat(np.repeat(pixels, scale, axis=-3), scale, axis=-2)
  return visualize._framed(pixels, border, color)  # pylint: disable=protected-access


def _compose(cells: dict[tuple[int, int], np.ndarray], rows: int, cols: int, cell_shape,
             row_gaps: set[int], col_gaps: set[int], gap: int) -> np.ndarray:
  """Places equal-sized cells on a white canvas.

  Args:
    cells: `{(row, col): uint8 [H', W', 3]}`; missing positions stay background.
    rows: number of grid rows.
    cols: number of grid columns.
    cell_shape: `(H', W')`.
    row_gaps: `gap` extra pixels go before each of these rows.
    col_gaps: the same for columns.
    gap: width of a gap in pixels.

  Returns:
    uint8 `[rows H' + len(row_gaps) gap, cols W' + len(col_gaps) gap, 3]`.
  """
  hh, ww = cell_shape
  ys = [r * hh + gap * sum(1 for g in row_gaps if g <= r) for r in range(rows)]
  xs = [c * ww + gap * sum(1 for g in col_gaps if g <= c) for c in range(cols)]
  out = np.empty((rows * hh + gap * len(row_gaps), cols * ww + gap * len(col_gaps), 3), np.uint8)
  out[...] = np.asarray(BACKGROUND, np.uint8)
  for (r, c), cell in cells.items():
    out[ys[r]:ys[r] + hh, xs[c]:xs[c] + ww] = cell
  return out


def swap_grid(z_images, s_images, generated, *, scale: int | None = None, border: int = 1,
              gap: int = 4) -> np.ndarray:
  """The swapping grid of Figures 5.2a / 5.3a / 5.4a: z from each row, s from each column.

  The grid has `R + 1` rows and `C + 1` columns of cells. Row 0 holds the column sources
  `s_images` in columns 1..C, column 0 holds the row sources `z_images` in rows 1..R, both framed
  in `REAL_COLOR`; the top-left cell is empty (background). Cell `(r + 1, c + 1)` is
  `generated[r, c]`, decoded from z of `z_images[r]` and s of `s_images[c]`, with a background
  frame (so when the two sources are the same images, the diagonal shows reconstructions).
  A gap of `gap` pixels separates row 0 from row 1 and column 0 from column 1.

  Every cell is an image upscaled `scale` times by pixel repetition and framed by `border`
  pixels: `H' = h scale + 2 border`, `W' = w scale + 2 border`. Grid row `i` starts at
  `y = i H' + gap [i >= 1]`, column `j` at `x = j W' + gap [j >= 1]`.

  Args:
    z_images: `[R, h, w, c]` floats in [-1, 1], c in (1, 3); c = 1 is shown as grey.
    s_images: `[C, h, w, c]`.
    generated: `[R, C, h, w, c]`.
    scale: integer upscaling; None picks the smallest making the image at least 32 pixels wide.
    border: frame width in output pixels, >= 0.
    gap: separation between real and generated cells in output pixels, >= 0.

  Returns:
    uint8 `[(R + 1) H' + gap, (C + 1) W' + gap, 3]`.

  Raises:
    ValueError: shapes that do not match as above, non-float images, or a bad
      `scale` / `border` / `gap`.
  """
  z_images = _check_images('z_images', z_images, 1)
  s_images = _check_images('s_images', s_images, 1, like=z_images)
  generated = _check_images('generated', generated, 2, like=z_images)
  rows, cols = z_images.shape[0], s_images.shape[0]
  if generated.shape[:2] != (rows, cols):
    raise ValueError(f'generated: shape {generated.shape}; expected [{rows}, {cols}, h, w, c] '
                     '(one image per z_images row and s_images column)')
  scale = _scale_for(z_images.shape[2], scale)
  border = _check_int('border', border, 0)
  gap = _check_int('gap', gap, 0)
  real_z = _cells(z_images, scale, border, REAL_COLOR)
  real_s = _cells(s_images, scale, border, REAL_COLOR)
  fake = _cells(generated, scale, border, BACKGROUND)
  cells = {(0, c + 1): real_s[c] for c in range(cols)}
  cells.update({(r + 1, 0): real_z[r] for r in range(rows)})
  cells.update({(r + 1, c + 1): fake[r, c] for r in range(rows) for c in range(cols)})
  return _compose(cells, rows + 1, cols + 1, real_z.shape[1:3], {1}, {1}, gap)


def interpolation_grid(generated, first, last, *, scale: int | None = None, border: int = 1,
                       gap: int = 4) -> np.ndarray:
  """The interpolation grid of Figures 5.2b / 5.3b / 5.4b: s varies along columns, z along rows.

  `generated[r, c]` is decoded from the r-th interpolated z and the c-th interpolated s between the
  codes of the real images `first` and `last`. The grid has `R` rows and `C + 2` columns: column 0
  holds `first` in row 0 (beside the top-left generated image), column `C + 1` holds `last` in row
  `R - 1` (beside the bottom-right one), both framed in `REAL_COLOR`; the other cells of these two
  columns are empty. Columns 1..C hold `generated` with background frames, set apart from the
  side columns by `gap` pixels.

  With `H' = h scale + 2 border` and `W' = w scale + 2 border`, row `i` starts at `y = i H'` and
  column `j` at `x = j W' + gap [j >= 1] + gap [j >= C + 1]`.

  Args:
    generated: `[R, C, h, w, c]` floats in [-1, 1], c in (1, 3).
    first: `[h, w, c]`, the real image whose codes start both interpolations.
    last: `[h, w, c]`, the real image whose codes end them.
    scale: integer upscaling; None picks the smallest making the image at least 32 pixels wide.
    border: frame width in output pixels, >= 0.
    gap: separation between real and generated cells in output pixels, >= 0.

  Returns:
    uint8 `[R H', (C + 2) W' + 2 gap, 3]`.

  Raises:
    ValueError: shapes that do not match as above, non-float images, or a bad
      `scale` / `border` / `gap`.
  """
  generated = _check_images('generated', generated, 2)
  first = _check_images('first', first, 0, like=generated)
  last = _check_images('last', last, 0, like=generated)
  rows, cols = generated.shape[:2]
  scale = _scale_for(generated.shape[3], scale)
  border = _check_int('border', border, 0)
  gap = _check_int('gap', gap, 0)
  fake = _cells(generated, scale, border, BACKGROUND)
  cells = {(r, c + 1): fake[r, c] for r in range(rows) for c in range(cols)}
  cells[(0, 0)] = _cells(first, scale, border, REAL_COLOR)
  cells[(rows - 1, cols + 1)] = _cells(last, scale, border, REAL_COLOR)
  return _compose(cells, rows, cols + 2, fake.shape[2:4], set(), {1, cols + 1}, gap)


def _row_grid(lead, rest, lead_color, rest_color, scale, border, gap) -> np.ndarray:
  """`[R]` lead images, a gap, then `[R, K]` images per row."""
  rows, k = rest.shape[:2]
  scale = _scale_for(lead.shape[2], scale)
  border = _check_int('border', border, 0)
  gap = _check_int('gap', gap, 0)
  first = _cells(lead, scale, border, lead_color)
  others = _cells(rest, scale, border, rest_color)
  cells = {(r, 0): first[r] for r in range(rows)}
  cells.update({(r, j + 1): others[r, j] for r in range(rows) for j in range(k)})
  return _compose(cells, rows, k + 1, first.shape[1:3], set(), {1}, gap)


def retrieval_grid(queries, neighbours, *, scale: int | None = None, border: int = 1,
                   gap: int = 4) -> np.ndarray:
  """Nearest-neighbour retrieval (Figures 5.2c-d): a query, a gap, then its K neighbours.

  Row `i` holds `queries[i]` in column 0 and `neighbours[i, j]` in column `j + 1`; all are real
  images, framed in `REAL_COLOR`. With `H' = h scale + 2 border` and `W' = w scale + 2 border`,
  row `i` starts at `y = i H'` and column `j` at `x = j W' + gap [j >= 1]`.

  Args:
    queries: `[Q, h, w, c]` floats in [-1, 1], c in (1, 3).
    neighbours: `[Q, K, h, w, c]`, e.g. `images[nearest_neighbours(...)]`.
    scale: integer upscaling; None picks the smallest making the image at least 32 pixels wide.
    border: frame width in output pixels, >= 0.
    gap: separation between the query column and the neighbours in output pixels, >= 0.

  Returns:
    uint8 `[Q H', (K + 1) W' + gap, 3]`.

  Raises:
    ValueError: shapes that do not match as above, non-float images, or a bad
      `scale` / `border` / `gap`.
  """
  queries = _check_images('queries', queries, 1)
  neighbours = _check_images('neighbours', neighbours, 2, like=queries)
  if neighbours.shape[0] != queries.shape[0]:
    raise ValueError(f'neighbours: shape {neighbours.shape}; expected [{queries.shape[0]}, K, h, '
                     'w, c], one row per query')
  return _row_grid(queries, neighbours, REAL_COLOR, REAL_COLOR, scale, border, gap)


def generation_grid(conditions, samples, *, scale: int | None = None, border: int = 1,
                    gap: int = 4) -> np.ndarray:
  """Conditional generation (Figure 5.2e): the image giving s, a gap, then K samples with z ~ p(z).

  Row `i` holds `conditions[i]` (real, framed in `REAL_COLOR`) in column 0 and `samples[i, j]`
  (generated, background frame) in column `j + 1`. The geometry is that of `retrieval_grid`.

  Args:
    conditions: `[R, h, w, c]` floats in [-1, 1], c in (1, 3).
    samples: `[R, K, h, w, c]`.
    scale: integer upscaling; None picks the smallest making the image at least 32 pixels wide.
    border: frame width in output pixels, >= 0.
    gap: separation between the condition column and the samples in output pixels, >= 0.

  Returns:
    uint8 `[R H', (K + 1) W' + gap, 3]`.

  Raises:
    ValueError: shapes that do not match as above, non-float images, or a bad
      `scale` / `border` / `gap`.
  """
  conditions = _check_images('conditions', conditions, 1)
  samples = _check_images('samples', samples, 2, like=conditions)
  if samples.shape[0] != conditions.shape[0]:
    raise ValueError(f'samples: shape {samples.shape}; expected [{conditions.shape[0]}, K, h, w, '
                     'c], one row per condition')
  return _row_grid(conditions, samples, REAL_COLOR, BACKGROUND, scale, border, gap)


# ------------------------------------------------------------------------------------------------
# Retrieval.


def _check_matrix(name: str, x, rows: int | None = None, cols: int | None = None) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or x.dtype.kind not in 'biuf':
    raise ValueError(f'{name}: shape {x.shape}, dtype {x.dtype}; expected a real matrix [N, D]')
  if rows is not None and x.shape[0] != rows:
    raise ValueError(f'{name}: shape {x.shape}; expected {rows} rows')
  if cols is not None and x.shape[1] != cols:
    raise ValueError(f'{name}: shape {x.shape}; expected {cols} columns')
  if not np.isfinite(x).all():
    raise ValueError(f'{name}: has NaN or infinite values; expected finite numbers')
  return x


def nearest_neighbours(query_codes, codes, k: int, *, exclude=None) -> np.ndarray:
  """The `k` codes closest to each query in Euclidean distance, nearest first.

  Distances are `sum((q - x)^2)` in float64; the final order comes from this exact form, so equal
  codes have equal distances and ties go to the smaller index.

  Args:
    query_codes: `[Q, D]`.
    codes: `[N, D]`, the pool searched.
    k: neighbours per query, 1 <= k <= N (N - 1 with `exclude`).
    exclude: optional `[Q]` indices into `codes`; query `i` never returns `exclude[i]` (its own
      entry when the queries are taken from the pool).

  Returns:
    int64 `[Q, k]` indices into `codes`.

  Raises:
    ValueError: mismatched dimensions, non-finite codes, a bad `k` or `exclude`.
  """
  codes = _check_matrix('codes', codes).astype(np.float64)
  query_codes = _check_matrix('query_codes', query_codes, cols=codes.shape[1]).astype(np.float64)
  n = codes.shape[0]
  q = query_codes.shape[0]
  if exclude is not None:
    exclude = np.asarray(exclude)
    if exclude.shape != (q,) or exclude.dtype.kind not in 'iu':
      raise ValueError(f'exclude: shape {exclude.shape}, dtype {exclude.dtype}; expected [{q}] '
                       'integer indices, one per query')
    if q and (exclude.min() < 0 or exclude.max() >= n):
      raise ValueError(f'exclude: indices in [{exclude.min()}, {exclude.max()}]; expected indices '
                       f'in [0, {n})')
  pool = n - (exclude is not None)
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= pool:
    raise ValueError(f'k={k!r}: expected an int in [1, {pool}] (the pool has {n} codes'
                     f'{", one excluded per query" if exclude is not None else ""})')
  out = np.empty((q, k), np.int64)
  code_norms = np.einsum('nd,nd->n', codes, codes)
  # |q - x|^2 = |q|^2 + |x|^2 - 2 q.x is fast (one matrix product) but rounds differently for
  # equal codes; it only picks the candidates within its rounding error of the k-th distance,
  # whose exact distances then decide the order.
  chunk = max(1, (4 << 20) // max(1, n))
  for start in range(0, q, chunk):
    queries = query_codes[start:start + chunk]
    query_norms = np.einsum('qd,qd->q', queries, queries)
    approx = query_norms[:, None] + code_norms[None] - 2.0 * queries @ codes.T
    if exclude is not None:
      approx[np.arange(len(queries)), exclude[start:start + chunk]] = np.inf
    kth = np.partition(approx, k - 1, axis=1)[:, k - 1]
    slack = 1e-9 * (query_norms + code_norms.max()) + 1e-300
    for i, query in enumerate(queries):
      candidates = np.flatnonzero(approx[i] <= kth[i] + slack[i])
      diff = codes[candidates] - query
      exact = np.einsum('nd,nd->n', diff, diff)
      out[start + i] = candidates[np.lexsort((candidates, exact))[:k]]
  return out


# ------------------------------------------------------------------------------------------------
# Table 5.2: classification probes.


def _check_labelled(prefix: str, x, y, cols: int | None = None):
  x = _check_matrix(f'{prefix}_x', x, cols=cols)
  y = np.asarray(y)
  if y.shape != (x.shape[0],):
    raise ValueError(f'{prefix}_y: shape {y.shape}; expected [{x.shape[0]}], one label per row of '
                     f'{prefix}_x')
  if x.shape[0] == 0:
    raise ValueError(f'{prefix}_x: shape {x.shape}; expected at least one example')
  return x, y


def probe_error(train_x, train_y, test_x, test_y, *, hidden: int = 256, seed: int = 0,
                max_iter: int = 200) -> dict[str, float]:
  """Errors of a two-layer network predicting labels from codes (thesis Table 5.2).

  As in Section 5.4.6: a network with one hidden layer of `hidden` units, early-stopped on a
  validation split (scikit-learn `MLPClassifier(hidden_layer_sizes=(hidden,),
  early_stopping=True, validation_fraction=0.1)`, which holds out a stratified 10% of the
  training set), on inputs standardized with a `StandardScaler` fit on the training set. The
  "no input (chance)" baseline predicts the most frequent training label (the smallest one on a
  tie) for every example.

  Args:
    train_x: `[N, D]` codes.
    train_y: `[N]` labels (any hashable values numpy can sort).
    test_x: `[M, D]` codes.
    test_y: `[M]` labels; labels unseen in training count as errors.
    hidden: hidden units, >= 1.
    seed: seeds the initialization, the validation split and the batch order.
    max_iter: at most this many epochs, >= 1.

  Returns:
    `{'train_error', 'test_error', 'chance_train', 'chance_test'}`, fractions in [0, 1].

  Raises:
    ValueError: mismatched shapes, non-finite codes, fewer than two classes in `train_y`, a class
      too rare for the stratified validation split, or a bad `hidden` / `max_iter`.
  """
  from sklearn.neural_network import MLPClassifier  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  train_x, train_y = _check_labelled('train', train_x, train_y)
  test_x, test_y = _check_labelled('test', test_x, test_y, cols=train_x.shape[1])
  hidden = _check_int('hidden', hidden, 1)
  max_iter = _check_int('max_iter', max_iter, 1)
  classes, counts = np.unique(train_y, return_counts=True)
  if len(classes) < 2:
    raise ValueError(f'train_y: a single class {classes.tolist()}; expected at least two (the '
                     'probe has nothing to learn and its chance error is 0)')
  if counts.min() < 2:
    raise ValueError(f'train_y: class {classes[np.argmin(counts)]!r} has {counts.min()} example; '
                     'expected at least 2 per class for the stratified validation split')
  scaler = StandardScaler().fit(train_x)
  model = MLPClassifier(hidden_layer_sizes=(hidden,), early_stopping=True,
                        validation_fraction=0.1, random_state=seed, max_iter=max_iter)
  model.fit(scaler.transform(train_x), train_y)
  majority = classes[np.argmax(counts)]  # argmax returns the first, i.e. smallest, on a tie
  return {
      'train_error': float(np.mean(model.predict(scaler.transform(train_x)) != train_y)),
      'test_error': float(np.mean(model.predict(scaler.transform(test_x)) != test_y)),
      'chance_train': float(np.mean(train_y != majority)),
      'chance_test': float(np.mean(test_y != majority)),
  }


def probe_table(codes: Mapping[str, tuple], labels: Mapping[str, tuple],
                **kwargs) -> dict[str, dict[str, dict[str, float]]]:
  """`probe_error` for every (label, code) pair: Table 5.2 with codes 's' and 'z'.

  Args:
    codes: `{name: (train_x [N, D], test_x [M, D])}`, e.g. `{'s': ..., 'z': ...}`.
    labels: `{name: (train_y [N], test_y [M])}`, e.g. the 7 sprite attributes.
    **kwargs: passed to `probe_error` (`hidden`, `seed`, `max_iter`).

  Returns:
    `{label name: {code name: probe_error(...)}}`, in the mappings' orders.

  Raises:
    ValueError: an empty mapping, an entry that is not a `(train, test)` pair, or whatever
      `probe_error` raises.
  """
  for name, mapping in (('codes', codes), ('labels', labels)):
    if not isinstance(mapping, Mapping) or not mapping:
      raise ValueError(f'{name}: {type(mapping).__name__}; expected a non-empty dict name -> '
                       '(train, test)')
    for key, pair in mapping.items():
      if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f'{name}[{key!r}]: expected a (train, test) pair')
  return {label: {code: probe_error(cx[0], ly[0], cx[1], ly[1], **kwargs)
                  for code, cx in codes.items()}
          for label, ly in labels.items()}


# ------------------------------------------------------------------------------------------------
# Mutual information gap.


def _check_factors(codes, factors, discrete, name: str = 'factors'):
  n = codes.shape[0]
  factors = _check_matrix(name, factors, rows=n)
  discrete = np.asarray(discrete)
  if discrete.shape != (factors.shape[1],) or discrete.dtype != bool:
    raise ValueError(f'discrete: shape {discrete.shape}, dtype {discrete.dtype}; expected '
                     f'[{factors.shape[1]}] bools, one per factor')
  if factors.shape[1] == 0:
    raise ValueError(f'{name}: shape {factors.shape}; expected at least one factor')
  for f in range(factors.shape[1]):
    if np.all(factors[:, f] == factors[0, f]):
      raise ValueError(f'{name}[:, {f}]: constant; expected a factor that varies (it has no '
                       'entropy to explain)')
  return factors, discrete


def histogram_discretize(x, bins: int = 20) -> np.ndarray:
  """Bins each column into `bins` equal-width bins over its own range.

  As disentanglement_lib's `_histogram_discretize`: `np.digitize(v, np.histogram(v, bins)[1][:-1])`,
  so the values are 1..bins and a column's maximum lands in the last bin; a constant column
  (`np.histogram` then spans `[v - 0.5, v + 0.5]`) lands in a single bin.

  Args:
    x: `[N, D]` finite values.
    bins: number of bins, >= 2.

  Returns:
    int64 `[N, D]` bin numbers in 1..bins.

  Raises:
    ValueError: `x` not a finite matrix, or `bins` < 2.
  """
  x = _check_matrix('x', x)
  bins = _check_int('bins', bins, 2)
  out = np.empty(x.shape, np.int64)
  for j in range(x.shape[1]):
    out[:, j] = np.digitize(x[:, j], np.histogram(x[:, j], bins)[1][:-1])
  return out


def mutual_information_gap(codes, factors, discrete, *, bins: int = 20) -> dict:
  """Mutual information gap (Chen et al., 2018, "Isolating sources of disentanglement in VAEs").

  The estimator of disentanglement_lib (Locatello et al., 2019, "Challenging common assumptions in
  the unsupervised learning of disentangled representations"): every code dimension is discretized
  into `bins` equal-width bins (`histogram_discretize`), continuous factors the same way, discrete
  factors taken as their values; `I(c_j; v_k)` is `sklearn.metrics.mutual_info_score` of the
  discrete variables (nats) and `H(v_k) = I(v_k; v_k)`. Per factor,
  `MIG_k = (I(c_(1); v_k) - I(c_(2); v_k)) / H(v_k)`, the gap between the two code dimensions with
  the largest mutual information; MIG is the mean over factors. A constant code dimension has
  zero mutual information with everything.

  Args:
    codes: `[N, D]` codes, D >= 2.
    factors: `[N, F]` ground-truth factors; none may be constant.
    discrete: `[F]` bools, True where factor k is categorical.
    bins: bins per code dimension and per continuous factor, >= 2.

  Returns:
    `{'mig': float, 'per_factor': [F], 'mutual_information': [D, F], 'entropy': [F]}`, the last
    two in nats.

  Raises:
    ValueError: mismatched shapes, non-finite values, D < 2, a constant factor, or `bins` < 2.
  """
  from sklearn.metrics import mutual_info_score  # pylint: disable=g-import-not-at-top
  codes = _check_matrix('codes', codes)
  if codes.shape[1] < 2:
    raise ValueError(f'codes: shape {codes.shape}; expected at least 2 dimensions (the gap '
                     'compares the best two)')
  factors, discrete = _check_factors(codes, factors, discrete)
  bins = _check_int('bins', bins, 2)
  binned = histogram_discretize(codes, bins)
  targets = np.empty(factors.shape, np.int64)
  for k in range(factors.shape[1]):
    if discrete[k]:
      targets[:, k] = np.unique(factors[:, k], return_inverse=True)[1].reshape(-1)
    else:
      targets[:, k] = histogram_discretize(factors[:, k:k + 1], bins)[:, 0]
  d, f = codes.shape[1], factors.shape[1]
  info = np.empty((d, f))
  for k in range(f):
    # The contingency table by bincount is much faster than letting sklearn build it per pair.
    levels = targets[:, k].max() + 1
    for j in range(d):
      table = np.bincount(binned[:, j] * levels + targets[:, k],
                          minlength=(bins + 1) * levels).reshape(bins + 1, levels)
      info[j, k] = mutual_info_score(None, None, contingency=table)
  entropy = np.array([mutual_info_score(targets[:, k], targets[:, k]) for k in range(f)])
  top = np.sort(info, axis=0)[::-1]
  per_factor = (top[0] - top[1]) / entropy
  return {'mig': float(per_factor.mean()), 'per_factor': per_factor,
          'mutual_information': info, 'entropy': entropy}


# ------------------------------------------------------------------------------------------------
# DCI.


def _normalized_entropy(p: np.ndarray, base: int) -> np.ndarray:
  """Entropy (base `base`) of each row of non-negative `p`, normalized per row; 0 for zero rows."""
  total = p.sum(axis=1, keepdims=True)
  q = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
  logs = np.log(q, out=np.zeros_like(q), where=q > 0)
  return -(q * logs).sum(axis=1) / np.log(base)


def dci(train_codes, train_factors, test_codes, test_factors, discrete, *, seed: int = 0,
        n_estimators: int = 10, max_depth: int | None = 6) -> dict:
  """Disentanglement, completeness and informativeness (Eastwood & Williams, 2018).

  For each factor k a tree ensemble predicts `v_k` from all codes; its impurity-based
  `feature_importances_` (non-negative, summing to 1) form column k of the importance matrix
  `R [D, F]`. Then, with `P_jk = R_jk / sum_k R_jk`:

  * disentanglement: `sum_j rho_j (1 - H_F(P_j.))`, `rho_j = sum_k R_jk / sum_jk R_jk`; a code
    dimension with no importance gets weight 0;
  * completeness: the mean over factors of `1 - H_D(R_.k / sum_j R_jk)`;
  * informativeness: the ensemble's test accuracy (discrete factors) or test R^2 (continuous),
    averaged over factors.

  `H_F` is the entropy in base F (disentanglement is 1 when F = 1) and `H_D` in base D
  (completeness is 1 when D = 1). This is disentanglement_lib's `dci` with another regressor and
  no 1e-11 smoothing.

  The ensembles are scikit-learn's extremely randomized trees (`ExtraTreesClassifier` /
  `ExtraTreesRegressor`, `max_features=None`, `n_jobs=1`) rather than the gradient-boosted trees
  of the paper: drawing one random threshold per feature instead of sorting each one makes a split
  cost linear in N, so every split can still weigh all D dimensions (the informative one is always
  a candidate and the importance stays concentrated on it); a random forest with all features is
  about ten times slower at D = 576, and with `max_features='sqrt'` the informative dimension is
  rarely among the candidates, which spreads importance over noise dimensions and understates
  completeness. With the defaults, D = 576, N = 4000, F = 12 takes about 13 s on one busy core.

  Args:
    train_codes: `[N, D]`.
    train_factors: `[N, F]`; no factor may be constant.
    test_codes: `[M, D]`.
    test_factors: `[M, F]`.
    discrete: `[F]` bools, True where factor k is categorical (classifier), else continuous
      (regressor).
    seed: the ensembles' random state.
    n_estimators: trees per factor, >= 1.
    max_depth: depth limit of each tree (None: unlimited); shallow trees keep importance on the
      dimensions that explain most of a factor.

  Returns:
    `{'disentanglement': float, 'completeness': float, 'informativeness': float,
    'importance': [D, F], 'disentanglement_per_code': [D], 'code_weight': [D],
    'completeness_per_factor': [F], 'informativeness_per_factor': [F]}`.

  Raises:
    ValueError: mismatched shapes, non-finite values, a constant training factor, or a bad
      `n_estimators` / `max_depth`.
  """
  from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor  # pylint: disable=g-import-not-at-top,g-multiple-import
  from sklearn.metrics import r2_score  # pylint: disable=g-import-not-at-top
  train_codes = _check_matrix('train_codes', train_codes)
  test_codes = _check_matrix('test_codes', test_codes, cols=train_codes.shape[1])
  train_factors, discrete = _check_factors(train_codes, train_factors, discrete, 'train_factors')
  test_factors = _check_matrix('test_factors', test_factors, rows=test_codes.shape[0],
                               cols=train_factors.shape[1])
  if train_codes.shape[0] == 0 or test_codes.shape[0] == 0 or train_codes.shape[1] == 0:
    raise ValueError(f'train_codes {train_codes.shape}, test_codes {test_codes.shape}: expected '
                     'at least one example and one code dimension each')
  n_estimators = _check_int('n_estimators', n_estimators, 1)
  if max_depth is not None:
    max_depth = _check_int('max_depth', max_depth, 1)
  d, f = train_codes.shape[1], train_factors.shape[1]
  importance = np.zeros((d, f))
  informativeness = np.zeros(f)
  for k in range(f):
    kind = ExtraTreesClassifier if discrete[k] else ExtraTreesRegressor
    model = kind(n_estimators=n_estimators, max_depth=max_depth, max_features=None, n_jobs=1,
                 random_state=seed)
    model.fit(train_codes, train_factors[:, k])
    importance[:, k] = np.abs(model.feature_importances_)
    predicted = model.predict(test_codes)
    if discrete[k]:
      informativeness[k] = np.mean(predicted == test_factors[:, k])
    else:
      informativeness[k] = r2_score(test_factors[:, k], predicted)
  per_code = 1.0 - _normalized_entropy(importance, f) if f > 1 else np.ones(d)
  code_total = importance.sum(axis=1)
  per_code = np.where(code_total > 0, per_code, 0.0)
  weight = code_total / code_total.sum() if code_total.sum() > 0 else np.zeros(d)
  per_factor = 1.0 - _normalized_entropy(importance.T, d) if d > 1 else np.ones(f)
  per_factor = np.where(importance.sum(axis=0) > 0, per_factor, 0.0)
  return {
      'disentanglement': float(np.sum(weight * per_code)),
      'completeness': float(per_factor.mean()),
      'informativeness': float(informativeness.mean()),
      'importance': importance,
      'disentanglement_per_code': per_code,
      'code_weight': weight,
      'completeness_per_factor': per_factor,
      'informativeness_per_factor': informativeness,
  }


def block_importance(importance, blocks: Mapping[str, slice]) -> dict[str, np.ndarray]:
  """The share of each factor's total importance held by each block of code dimensions.

  With `blocks = {'s': slice(0, 64), 'z': slice(64, 576)}` this says whether the identity factors
  live in s and the pose factors in z. Blocks that cover every dimension give shares summing to 1
  per factor; a factor with no importance at all gets share 0 everywhere.

  Args:
    importance: `[D, F]` non-negative, e.g. `dci(...)['importance']`.
    blocks: `{name: slice}` of non-overlapping, non-empty ranges of code dimensions.

  Returns:
    `{name: [F]}` shares in [0, 1], in the mapping's order.

  Raises:
    ValueError: a bad importance matrix, an empty mapping, a block that is not a slice, is empty
      or overlaps another.
  """
  importance = _check_matrix('importance', importance).astype(np.float64)
  if (importance < 0).any():
    raise ValueError('importance: has negative entries; expected non-negative importances')
  if not isinstance(blocks, Mapping) or not blocks:
    raise ValueError(f'blocks: {type(blocks).__name__}; expected a non-empty dict name -> slice')
  d = importance.shape[0]
  total = importance.sum(axis=0)
  used = np.zeros(d, bool)
  shares = {}
  for name, block in blocks.items():
    if not isinstance(block, slice):
      raise ValueError(f'blocks[{name!r}]: {block!r}; expected a slice of code dimensions')
    dims = np.arange(d)[block]
    if dims.size == 0:
      raise ValueError(f'blocks[{name!r}]: {block!r} selects none of the {d} dimensions')
    if used[dims].any():
      raise ValueError(f'blocks[{name!r}]: {block!r} overlaps another block')
    used[dims] = True
    held = importance[dims].sum(axis=0)
    shares[name] = np.divide(held, total, out=np.zeros_like(held), where=total > 0)
  return shares
