"""Tests for uncertainty_jax.evaluation.visualize: uint8 conversion, grids, animations, PNG/GIF."""

import os

import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from uncertainty_jax.evaluation import visualize


def _smooth_video(rng, b, t, h, w, c):
  """Moving sums of random sinusoids in [-1, 1], `[b, t, h, w, c]`: smooth, distinct per frame."""
  y, x = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  video = np.zeros((b, t, h, w, c), np.float32)
  for i in range(b):
    for ch in range(c):
      for _ in range(3):
        fy, fx = rng.uniform(0.5, 2.5, size=2) * 2 * np.pi / np.array([h, w])
        phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.8)
        for k in range(t):
          video[i, k, :, :, ch] += np.sin(fy * y + fx * x + phase + speed * k) / 3
  return video


def _cell(grid, row, col, h, w, border):
  """The frame inside cell (row, col) of a grid of `(h + 2 border) x (w + 2 border)` cells."""
  ch, cw = h + 2 * border, w + 2 * border
  return grid[row * ch + border:row * ch + border + h, col * cw + border:col * cw + border + w]


def _ring(grid, row, col, h, w, border):
  """The border pixels of cell (row, col), `[P, 3]`."""
  ch, cw = h + 2 * border, w + 2 * border
  cell = grid[row * ch:(row + 1) * ch, col * cw:(col + 1) * cw]
  mask = np.ones((ch, cw), bool)
  mask[border:border + h, border:border + w] = False
  return cell[mask]


class TestToUint8:

  def test_matches_numpy(self):
    x = np.random.default_rng(0).uniform(-1.5, 1.5, size=(4, 5, 6, 3)).astype(np.float32)
    expected = np.round((np.clip(x, -1, 1) + 1) / 2 * 255).astype(np.uint8)
    out = visualize.to_uint8(x)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)

  def test_endpoints_and_jax_input(self):
    x = jnp.array([-2.0, -1.0, 0.0, 1.0, 3.0, jnp.nan])
    np.testing.assert_array_equal(visualize.to_uint8(x), [0, 0, 128, 255, 255, 0])

  def test_integer_input_raises(self):
    with pytest.raises(ValueError, match='dtype'):
      visualize.to_uint8(np.zeros((2, 2), np.uint8))


class TestPredictionGrid:

  @pytest.mark.parametrize('b, max_rows, border, c', [(3, 8, 2, 3), (5, 2, 1, 1), (2, 8, 0, 3)])
  def test_shape_and_cells(self, b, max_rows, border, c):
    m, n, h, w = 2, 3, 8, 6
    rng = np.random.default_rng(1)
    inputs = _smooth_video(rng, b, m, h, w, c)
    predictions = _smooth_video(rng, b, n, h, w, c)
    targets = _smooth_video(rng, b, n, h, w, c)
    grid = visualize.prediction_grid(inputs, predictions, targets, max_rows=max_rows,
                                     border=border)
    rows = min(b, max_rows)
    assert grid.dtype == np.uint8
    assert grid.shape == (rows * (h + 2 * border), (m + 2 * n) * (w + 2 * border), 3)
    columns = np.concatenate([inputs, predictions, targets], axis=1)
    for row in range(rows):
      for col in range(m + 2 * n):
        expected = np.broadcast_to(visualize.to_uint8(columns[row, col]), (h, w, 3))
        np.testing.assert_array_equal(_cell(grid, row, col, h, w, border), expected)

  def test_borders_mark_predictions_red_and_targets_green(self):
    b, m, n, h, w, border = 2, 2, 3, 8, 6, 2
    rng = np.random.default_rng(2)
    grid = visualize.prediction_grid(_smooth_video(rng, b, m, h, w, 3),
                                     _smooth_video(rng, b, n, h, w, 3),
                                     _smooth_video(rng, b, n, h, w, 3), border=border)
    kinds = ([visualize.INPUT_COLOR] * m + [visualize.PREDICTION_COLOR] * n
             + [visualize.TARGET_COLOR] * n)
    for row in range(b):
      for col, color in enumerate(kinds):
        ring = _ring(grid, row, col, h, w, border)
        assert ring.shape == (2 * border * (h + w + 2 * border), 3)
        np.testing.assert_array_equal(ring, np.broadcast_to(np.uint8(color), ring.shape))
    red = np.all(grid == np.uint8(visualize.PREDICTION_COLOR), axis=-1)
    # Every prediction cell's ring is red: b * n rings of that many pixels (no frame is pure red).
    assert red.sum() >= b * n * 2 * border * (h + w + 2 * border)

  @pytest.mark.parametrize('shapes, match', [
      (((2, 2, 8, 8, 3), (2, 3, 8, 8, 3), (2, 2, 8, 8, 3)), 'targets'),
      (((2, 2, 8, 8, 3), (2, 3, 8, 4, 3), (2, 3, 8, 4, 3)), 'inputs'),
      (((2, 2, 8, 8, 3), (1, 3, 8, 8, 3), (1, 3, 8, 8, 3)), 'inputs'),
      (((2, 8, 8, 3), (2, 3, 8, 8, 3), (2, 3, 8, 8, 3)), 'inputs'),
      (((2, 2, 8, 8, 2), (2, 3, 8, 8, 2), (2, 3, 8, 8, 2)), 'C in'),
  ])
  def test_mismatched_shapes_raise(self, shapes, match):
    arrays = [np.zeros(s, np.float32) for s in shapes]
    with pytest.raises(ValueError, match=match):
      visualize.prediction_grid(*arrays)

  def test_bad_options_raise(self):
    video = np.zeros((1, 1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match='max_rows=0'):
      visualize.prediction_grid(video, video, video, max_rows=0)
    with pytest.raises(ValueError, match='border=-1'):
      visualize.prediction_grid(video, video, video, border=-1)


class TestPredictionAnimation:

  def test_frames(self):
    b, m, n, h, w, scale, border = 3, 2, 3, 8, 6, 2, 1
    rng = np.random.default_rng(3)
    inputs = _smooth_video(rng, b, m, h, w, 1)
    predictions = _smooth_video(rng, b, n, h, w, 1)
    targets = _smooth_video(rng, b, n, h, w, 1)
    frames = visualize.prediction_animation(inputs, predictions, targets, max_rows=2,
                                            scale=scale, border=border)
    rows = 2
    assert len(frames) == m + n
    for frame in frames:
      assert frame.dtype == np.uint8
      assert frame.shape == (rows * (h + 2 * border) * scale, 2 * (w + 2 * border) * scale, 3)
    for t, frame in enumerate(frames):
      # Nearest-neighbour upscaling: every scale x scale block is one pixel.
      small = frame[::scale, ::scale]
      np.testing.assert_array_equal(np.repeat(np.repeat(small, scale, 0), scale, 1), frame)
      for row in range(rows):
        if t < m:
          truth = guess = inputs[row, t]
          colors = (visualize.INPUT_COLOR, visualize.INPUT_COLOR)
        else:
          truth, guess = targets[row, t - m], predictions[row, t - m]
          colors = (visualize.TARGET_COLOR, visualize.PREDICTION_COLOR)
        for col, (image, color) in enumerate(zip((truth, guess), colors)):
          np.testing.assert_array_equal(_cell(small, row, col, h, w, border),
                                        np.broadcast_to(visualize.to_uint8(image), (h, w, 3)))
          ring = _ring(small, row, col, h, w, border)
          np.testing.assert_array_equal(ring, np.broadcast_to(np.uint8(color), ring.shape))

  def test_bad_scale_raises(self):
    video = np.zeros((1, 1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match='scale=0'):
      visualize.prediction_animation(video, video, video, scale=0)


class TestSaving:

  def test_png_round_trip(self, tmp_path):
    image = np.random.default_rng(4).integers(0, 256, size=(10, 14, 3), dtype=np.uint8)
    path = tmp_path / 'a' / 'b' / 'grid.png'
    visualize.save_png(path, image)
    visualize.save_png(path, image[::-1])  # replaces the existing file
    with PIL.Image.open(path) as im:
      assert im.format == 'PNG'
      np.testing.assert_array_equal(np.asarray(im.convert('RGB')), image[::-1])
    assert os.listdir(path.parent) == ['grid.png']

  def test_gif_round_trip(self, tmp_path):
    rng = np.random.default_rng(5)
    video = _smooth_video(rng, 2, 6, 12, 10, 3)
    frames = visualize.prediction_animation(video[:, :3], video[:, 3:], video[:, 3:] * 0.5,
                                            scale=2)
    path = tmp_path / 'samples' / 'step_10.gif'
    visualize.save_gif(path, frames, fps=4, loop=0)
    assert os.listdir(path.parent) == ['step_10.gif']
    with PIL.Image.open(path) as im:
      assert im.format == 'GIF'
      assert im.n_frames == len(frames)
      assert im.size == (frames[0].shape[1], frames[0].shape[0])
      assert im.info['duration'] == 1000 / 4
      assert im.info['loop'] == 0
      for k, frame in enumerate(frames):
        im.seek(k)
        decoded = np.asarray(im.convert('RGB'), np.float32)
        # A 256-colour palette per frame: close to, not equal to, the smooth frame.
        assert np.abs(decoded - frame).mean() < 4.0

  @pytest.mark.parametrize('frames, match', [
      ([], 'empty'),
      ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)], r'frames\[1\]'),
      ([np.zeros((4, 4, 3), np.float32)], 'uint8'),
  ])
  def test_bad_frames_raise(self, tmp_path, frames, match):
    with pytest.raises(ValueError, match=match):
      visualize.save_gif(tmp_path / 'x.gif', frames)
    assert not os.path.exists(tmp_path / 'x.gif')

  def test_bad_fps_raises(self, tmp_path):
    with pytest.raises(ValueError, match='fps=0'):
      visualize.save_gif(tmp_path / 'x.gif', [np.zeros((4, 4, 3), np.uint8)], fps=0)


def _expected_cell(frame, color, border, scale):
  """Frame `[H, W, C]` -> to_uint8, grey to RGB, `border` pixels of `color`, upscaled `scale`x."""
  h, w, _ = frame.shape
  cell = np.empty((h + 2 * border, w + 2 * border, 3), np.uint8)
  cell[...] = np.uint8(color)
  cell[border:border + h, border:border + w] = visualize.to_uint8(frame)  # broadcasts C = 1
  return np.repeat(np.repeat(cell, scale, axis=0), scale, axis=1)


def _body_cell(image, top, row, col, cell_h, cell_w):
  """Cell (row, col) of the grid of `cell_h x cell_w` cells below a header of `top` rows."""
  return image[top + row * cell_h:top + (row + 1) * cell_h, col * cell_w:(col + 1) * cell_w]


def _dark(pixels):
  """Which pixels are text: dark in every channel."""
  return np.all(pixels < 64, axis=-1)


def _comparison_data(seed, b, m, n, h, w, c, labels):
  rng = np.random.default_rng(seed)
  inputs = _smooth_video(rng, b, m, h, w, c)
  targets = _smooth_video(rng, b, n, h, w, c)
  predictions = {label: _smooth_video(rng, b, n, h, w, c) for label in labels}
  return inputs, targets, predictions


class TestComparisonGrid:

  @pytest.mark.parametrize('b, max_rows, n, scale, border, c', [
      (3, 4, 2, 1, 1, 3), (5, 2, 2, 2, 2, 1), (2, 4, 1, 3, 0, 3), (2, 4, 3, 1, 1, 3)])
  def test_cells_and_borders(self, b, max_rows, n, scale, border, c):
    m, h, w = 3, 12, 16
    labels = ('L2', 'Model 1')
    inputs, targets, predictions = _comparison_data(6, b, m, n, h, w, c, labels)
    grid = visualize.comparison_grid(inputs, targets, predictions, scale=scale, border=border,
                                     max_rows=max_rows)
    rows = min(b, max_rows)
    cell_h, cell_w = (h + 2 * border) * scale, (w + 2 * border) * scale
    top = grid.shape[0] - rows * cell_h
    assert grid.dtype == np.uint8
    assert grid.shape[1:] == ((1 + n * (1 + len(labels))) * cell_w, 3)
    assert top > 0
    for row in range(rows):
      expected = [(inputs[row, -1], visualize.INPUT_COLOR)]
      expected += [(targets[row, k], visualize.TARGET_COLOR) for k in range(n)]
      for label in labels:
        expected += [(predictions[label][row, k], visualize.PREDICTION_COLOR) for k in range(n)]
      for col, (frame, color) in enumerate(expected):
        np.testing.assert_array_equal(_body_cell(grid, top, row, col, cell_h, cell_w),
                                      _expected_cell(frame, color, border, scale))

  def test_predictor_cell_formula(self):
    # The docstring's index: predictor j, frame k is column 1 + n (j + 1) + k.
    b, m, n, h, w, scale, border = 2, 2, 2, 10, 10, 2, 1
    labels = ('a', 'b', 'c')
    inputs, targets, predictions = _comparison_data(7, b, m, n, h, w, 3, labels)
    grid = visualize.comparison_grid(inputs, targets, predictions, scale=scale, border=border)
    cell_h, cell_w = (h + 2 * border) * scale, (w + 2 * border) * scale
    top = grid.shape[0] - b * cell_h
    for i in range(b):
      for j, label in enumerate(labels):
        for k in range(n):
          cell = _body_cell(grid, top, i, 1 + n * (j + 1) + k, cell_h, cell_w)
          inside = cell[border * scale:-border * scale, border * scale:-border * scale]
          upscaled = np.repeat(np.repeat(visualize.to_uint8(predictions[label][i, k]), scale, 0),
                               scale, 1)
          np.testing.assert_array_equal(inside, upscaled)

  def test_header_has_text_over_every_group(self):
    b, m, n, h, w = 2, 2, 2, 16, 16
    labels = ('L2', 'Model 1')
    inputs, targets, predictions = _comparison_data(8, b, m, n, h, w, 3, labels)
    grid = visualize.comparison_grid(inputs, targets, predictions, scale=2)
    cell_w = (w + 2) * 2
    header = grid[:grid.shape[0] - b * (h + 2) * 2]
    # Black text on white: the built-in bitmap font draws no other colour.
    colours = np.unique(header.reshape(-1, 3), axis=0)
    np.testing.assert_array_equal(colours, [[0, 0, 0], [255, 255, 255]])
    np.testing.assert_array_equal(header[0], 255)  # padding above the text
    np.testing.assert_array_equal(header[-1], 255)  # and below it, before the cells
    for c0, c1 in [(0, 1), (1, 1 + n)] + [(1 + n * (j + 1), 1 + n * (j + 2))
                                          for j in range(len(labels))]:
      assert _dark(header[:, c0 * cell_w:c1 * cell_w]).sum() > 10
    # Frame numbers: every truth and prediction column has its own text.
    for col in range(1, 1 + n * (1 + len(labels))):
      assert _dark(header[:, col * cell_w:(col + 1) * cell_w]).any()

  def test_labels_only_change_their_own_header_span(self):
    b, m, n, h, w = 2, 2, 2, 12, 12
    inputs, targets, predictions = _comparison_data(9, b, m, n, h, w, 3, ('x', 'y'))
    first, second = predictions.values()
    # Labels far wider than their span are shortened, never drawn over a neighbour's.
    one = visualize.comparison_grid(
        inputs, targets, {'a very long label indeed': first, 'y': second})
    other = visualize.comparison_grid(
        inputs, targets, {'another long label here': first, 'y': second})
    assert one.shape == other.shape
    cell_w = w + 2
    changed = np.any(one != other, axis=-1)
    span = slice((1 + n) * cell_w, (1 + 2 * n) * cell_w)
    assert changed[:, span].any()
    changed[:, span] = False
    assert not changed.any()
    top = one.shape[0] - b * (h + 2)
    assert _dark(one[:top, span]).any() and _dark(one[:top, (1 + 2 * n) * cell_w:]).any()

  def test_width_grows_with_the_number_of_predictors(self):
    b, m, n, h, w, scale, border = 2, 2, 2, 8, 8, 2, 1
    labels = ('L2', 'GDL', 'Adv')
    inputs, targets, predictions = _comparison_data(10, b, m, n, h, w, 3, labels)
    cell_h, cell_w = (h + 2 * border) * scale, (w + 2 * border) * scale
    grids = [visualize.comparison_grid(inputs, targets,
                                       {label: predictions[label] for label in labels[:p]},
                                       scale=scale, border=border)
             for p in (1, 2, 3)]
    widths = [g.shape[1] for g in grids]
    np.testing.assert_array_equal(np.diff(widths), [n * cell_w, n * cell_w])
    assert len({g.shape[0] for g in grids}) == 1
    # More predictors append columns; the cells already there do not move.
    bodies = [g[-b * cell_h:] for g in grids]
    np.testing.assert_array_equal(bodies[2][:, :widths[1]], bodies[1])
    np.testing.assert_array_equal(bodies[1][:, :widths[0]], bodies[0])

  def test_second_header_line_only_for_several_frames(self):
    b, m, h, w = 1, 2, 8, 8
    inputs, targets, predictions = _comparison_data(11, b, m, 2, h, w, 3, ('L2',))
    two = visualize.comparison_grid(inputs, targets, predictions)
    one = visualize.comparison_grid(inputs, targets[:, :1],
                                    {'L2': predictions['L2'][:, :1]})
    top_two, top_one = two.shape[0] - (h + 2), one.shape[0] - (h + 2)
    assert top_two > top_one > 0

  def test_jax_arrays_and_max_rows(self):
    inputs, targets, predictions = _comparison_data(12, 6, 2, 2, 8, 8, 3, ('L2',))
    expected = visualize.comparison_grid(inputs[:3], targets[:3], {'L2': predictions['L2'][:3]},
                                         max_rows=4)
    out = visualize.comparison_grid(jnp.asarray(inputs), jnp.asarray(targets),
                                    {'L2': jnp.asarray(predictions['L2'])}, max_rows=3)
    np.testing.assert_array_equal(out, expected)

  @pytest.mark.parametrize('change, match', [
      (lambda i, t, p: (i[:1], t, p), 'targets'),
      (lambda i, t, p: (i, t[:, :, :4], p), 'targets'),
      (lambda i, t, p: (i, t[:, :0], {'L2': p['L2'][:, :0]}), 'targets'),
      (lambda i, t, p: (i[:, :0], t, p), 'inputs'),
      (lambda i, t, p: (i[..., :2], t[..., :2], {'L2': p['L2'][..., :2]}), 'C in'),
      (lambda i, t, p: (i, t, {'L2': p['L2'][:, :1]}), r"predictions\['L2'\]"),
      (lambda i, t, p: (i, t, {'L2': p['L2'][:1]}), r"predictions\['L2'\]"),
      (lambda i, t, p: (i, t, {'L2': p['L2'][0]}), r"predictions\['L2'\]"),
      (lambda i, t, p: (i, t, {}), 'predictions: an empty dict'),
      (lambda i, t, p: (i, t, p['L2']), 'predictions: a ndarray'),
      (lambda i, t, p: (i, t, {'': p['L2']}), "label ''"),
      (lambda i, t, p: (i, t, {'  ': p['L2']}), "label '  '"),
      (lambda i, t, p: (i, t, {3: p['L2']}), 'label 3'),
      (lambda i, t, p: (i, t, {'\u6a21\u578b': p['L2']}), 'Latin-1'),
  ])
  def test_bad_inputs_raise(self, change, match):
    inputs, targets, predictions = _comparison_data(13, 2, 2, 2, 8, 8, 3, ('L2',))
    args = change(inputs, targets, predictions)
    with pytest.raises(ValueError, match=match):
      visualize.comparison_grid(*args)
    with pytest.raises(ValueError, match=match):
      visualize.comparison_animation(*args)

  def test_bad_options_raise(self):
    video = np.zeros((1, 1, 4, 4, 3), np.float32)
    for option, value in [('scale', 0), ('border', -1), ('max_rows', 0), ('scale', 1.5)]:
      with pytest.raises(ValueError, match=f'{option}={value}'):
        visualize.comparison_grid(video, video, {'L2': video}, **{option: value})


class TestComparisonAnimation:

  @pytest.mark.parametrize('c, scale, border, max_rows', [(3, 2, 1, 2), (1, 1, 2, 4)])
  def test_frames(self, c, scale, border, max_rows):
    b, m, n, h, w = 3, 3, 2, 12, 14
    labels = ('L2', 'Model 1', 'Model 2')
    inputs, targets, predictions = _comparison_data(14, b, m, n, h, w, c, labels)
    frames = visualize.comparison_animation(inputs, targets, predictions, scale=scale,
                                            max_rows=max_rows, border=border)
    rows = min(b, max_rows)
    cell_h, cell_w = (h + 2 * border) * scale, (w + 2 * border) * scale
    assert len(frames) == m + n
    top = frames[0].shape[0] - rows * cell_h
    assert top > 0
    for t, frame in enumerate(frames):
      assert frame.dtype == np.uint8
      assert frame.shape == (top + rows * cell_h, (1 + len(labels)) * cell_w, 3)
      # The header is the same in every frame, and names every column.
      np.testing.assert_array_equal(frame[:top], frames[0][:top])
      for col in range(1 + len(labels)):
        assert _dark(frame[:top, col * cell_w:(col + 1) * cell_w]).any()
      for row in range(rows):
        if t < m:
          expected = [(inputs[row, t], visualize.INPUT_COLOR)] * (1 + len(labels))
        else:
          expected = [(targets[row, t - m], visualize.TARGET_COLOR)]
          expected += [(predictions[label][row, t - m], visualize.PREDICTION_COLOR)
                       for label in labels]
        for col, (image, color) in enumerate(expected):
          np.testing.assert_array_equal(_body_cell(frame, top, row, col, cell_h, cell_w),
                                        _expected_cell(image, color, border, scale))

  def test_labels_change_only_the_header(self):
    inputs, targets, predictions = _comparison_data(15, 2, 2, 2, 10, 10, 3, ('a', 'b'))
    first, second = predictions.values()
    one = visualize.comparison_animation(inputs, targets, {'L2': first, 'GDL': second})
    other = visualize.comparison_animation(inputs, targets, {'Adv': first, 'GDL': second})
    cell_w = (10 + 2) * 2
    top = one[0].shape[0] - 2 * (10 + 2) * 2
    for a, b in zip(one, other):
      changed = np.any(a != b, axis=-1)
      assert changed[:top, cell_w:2 * cell_w].any()
      changed[:top, cell_w:2 * cell_w] = False
      assert not changed.any()


class TestComparisonSaving:

  def test_png_round_trip(self, tmp_path):
    inputs, targets, predictions = _comparison_data(16, 2, 2, 2, 10, 10, 3, ('L2', 'Model 1'))
    grid = visualize.comparison_grid(inputs, targets, predictions, scale=2)
    path = tmp_path / 'figures' / 'comparison.png'
    visualize.save_png(path, grid)
    with PIL.Image.open(path) as im:
      assert im.format == 'PNG'
      np.testing.assert_array_equal(np.asarray(im.convert('RGB')), grid)

  def test_gif_round_trip(self, tmp_path):
    # One 8 x 8 clip, three columns: at most 3 * 64 frame colours plus black, white, red and
    # green, so each frame fits a 256-colour palette and the GIF is lossless.
    inputs, targets, predictions = _comparison_data(17, 1, 3, 2, 8, 8, 3, ('L2', 'Model 1'))
    frames = visualize.comparison_animation(inputs, targets, predictions)
    assert max(len(np.unique(f.reshape(-1, 3), axis=0)) for f in frames) <= 256
    path = tmp_path / 'figures' / 'comparison.gif'
    visualize.save_gif(path, frames, fps=2)
    with PIL.Image.open(path) as im:
      assert im.format == 'GIF'
      assert im.n_frames == len(frames)
      assert im.size == (frames[0].shape[1], frames[0].shape[0])
      for k, frame in enumerate(frames):
        im.seek(k)
        np.testing.assert_array_equal(np.asarray(im.convert('RGB')), frame)


def test_saved_images_have_the_usual_permissions(tmp_path):
  umask = os.umask(0o022)
  try:
    path = tmp_path / 'x.png'
    visualize.save_png(path, np.zeros((4, 4, 3), np.uint8))
    assert (os.stat(path).st_mode & 0o777) == 0o644
  finally:
    os.umask(umask)
