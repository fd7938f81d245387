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
