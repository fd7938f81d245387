"""Chapter 3's figures: the interpolation grid (Figures 3.5-3.7) and the decoder filters (3.3)."""

import numpy as np
import pytest

from uncertainty_jax.evaluation import linearize_figures
from uncertainty_jax.evaluation import visualize

_TIMES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def _uint8(x):
  """The [-1, 1] -> [0, 255] map of `visualize.to_uint8`'s docstring, in float64 numpy."""
  return np.round((np.clip(np.asarray(x, np.float64), -1, 1) + 1) * 127.5).astype(np.uint8)


def _rgb(x):
  return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _border_pixels(cell, border):
  """The pixels of `[H', W', 3]` outside its inner `border`-framed region, `[N, 3]`."""
  mask = np.ones(cell.shape[:2], bool)
  mask[border:-border, border:-border] = False
  return cell[mask]


def test_frame_colours_are_what_the_docstring_names():
  r, g, b = visualize.TARGET_COLOR
  assert g > 0 and r == 0 and b == 0  # green
  assert tuple(visualize.PREDICTION_COLOR) == (255, 0, 0)  # red
  assert tuple(visualize.INPUT_COLOR) == (255, 255, 255)  # white


@pytest.mark.parametrize("channels", [1, 3])
def test_interpolation_grid_cells_and_borders(channels):
  rng = np.random.default_rng(channels)
  b, t, h, w, border = 2, len(_TIMES), 5, 6, 2
  # Values beyond [-1, 1] check the clipping.
  truth = rng.uniform(-1.2, 1.2, (b, t, h, w, channels)).astype(np.float32)
  decoded = rng.uniform(-1.2, 1.2, (b, t, h, w, channels)).astype(np.float32)
  grid = linearize_figures.interpolation_grid(truth, decoded, _TIMES, border=border)
  hh, ww = h + 2 * border, w + 2 * border
  assert grid.shape == (2 * b * hh, t * ww, 3)
  assert grid.dtype == np.uint8
  for i in range(b):
    for j, time in enumerate(_TIMES):
      true_cell = grid[2 * i * hh:(2 * i + 1) * hh, j * ww:(j + 1) * ww]
      model_cell = grid[(2 * i + 1) * hh:(2 * i + 2) * hh, j * ww:(j + 1) * ww]
      np.testing.assert_array_equal(true_cell[border:-border, border:-border],
                                    _rgb(_uint8(truth[i, j])))
      np.testing.assert_array_equal(model_cell[border:-border, border:-border],
                                    _rgb(_uint8(decoded[i, j])))
      assert (_border_pixels(true_cell, border) == visualize.TARGET_COLOR).all()
      # Frames 1 and 2 are the inputs (t = 1, 2): between them is interpolation, the rest
      # extrapolation, t = 3 being the prediction.
      expected = visualize.INPUT_COLOR if 1.0 <= time <= 2.0 else visualize.PREDICTION_COLOR
      assert (_border_pixels(model_cell, border) == expected).all(), time
  # The white-framed columns are exactly t = 1, 1.5, 2.
  white = [j for j in range(t)
           if (grid[hh, j * ww + ww // 2] == visualize.INPUT_COLOR).all()]
  assert [_TIMES[j] for j in white] == [1.0, 1.5, 2.0]


def test_interpolation_grid_without_border_is_the_frames():
  rng = np.random.default_rng(0)
  truth = rng.uniform(-1, 1, (1, 3, 4, 4, 1)).astype(np.float32)
  decoded = rng.uniform(-1, 1, (1, 3, 4, 4, 1)).astype(np.float32)
  grid = linearize_figures.interpolation_grid(truth, decoded, (0.0, 1.0, 3.0), border=0)
  expected = np.concatenate([np.concatenate(list(_rgb(_uint8(x[0]))), axis=1)
                             for x in (truth, decoded)], axis=0)
  np.testing.assert_array_equal(grid, expected)


@pytest.mark.parametrize("truth_shape, decoded_shape, times", [
    ((2, 7, 4, 4, 1), (2, 7, 4, 5, 1), _TIMES),  # different frame sizes
    ((2, 7, 4, 4, 1), (3, 7, 4, 4, 1), _TIMES),  # different batch sizes
    ((2, 7, 4, 4, 1), (2, 7, 4, 4, 1), _TIMES[:5]),  # one time per frame
    ((7, 4, 4, 1), (7, 4, 4, 1), _TIMES),  # no batch axis
    ((2, 7, 4, 4, 2), (2, 7, 4, 4, 2), _TIMES),  # neither grey nor RGB
])
def test_interpolation_grid_rejects_mismatched_shapes(truth_shape, decoded_shape, times):
  with pytest.raises(ValueError, match=r"truth .*decoded"):
    linearize_figures.interpolation_grid(np.zeros(truth_shape, np.float32),
                                         np.zeros(decoded_shape, np.float32), times)


def _expected_filter(kernel, index, scale):
  """Filter `index` of `[k, k, F, C]` scaled to [0, 255] over its own range, upscaled, RGB."""
  f = kernel[:, :, index, :].astype(np.float64)
  f = (f - f.min()) / (f.max() - f.min())
  f = np.round(f * 255).astype(np.uint8)
  return _rgb(np.kron(f, np.ones((scale, scale, 1), np.uint8)))


@pytest.mark.parametrize("maps, group, channels, scale, gap", [
    (16, 4, 3, 3, 2),  # Shallow 1's 4 groups of 4 on one line
    (40, 4, 1, 2, 1),  # 10 groups: a full line of 8 and a line of 2
    (6, 3, 3, 1, 3),
])
def test_decoder_filters_layout_and_normalisation(maps, group, channels, scale, gap):
  k = 5
  kernel = np.random.default_rng(maps).normal(size=(k, k, maps, channels)).astype(np.float32)
  image = linearize_figures.decoder_filters(kernel, group, scale=scale, gap=gap)
  side = k * scale
  num_groups = maps // group
  per_line = min(8, num_groups)
  lines = -(-num_groups // per_line)
  # As documented: `gap` between the filters of a group and around the figure, twice that
  # between groups and between lines.
  group_width = group * side + (group - 1) * gap
  width = 2 * gap + per_line * group_width + (per_line - 1) * 2 * gap
  height = 2 * gap + lines * side + (lines - 1) * 2 * gap
  assert image.shape == (height, width, 3)
  assert image.dtype == np.uint8
  covered = np.zeros(image.shape[:2], bool)
  for index in range(maps):
    g, j = divmod(index, group)
    line, col = divmod(g, per_line)
    y = gap + line * (side + 2 * gap)
    x = gap + col * (group_width + 2 * gap) + j * (side + gap)
    cell = image[y:y + side, x:x + side]
    assert not covered[y:y + side, x:x + side].any(), f"filter {index} overlaps another"
    covered[y:y + side, x:x + side] = True
    # Each filter spans the whole range; rounding may differ by one from float32 arithmetic.
    assert cell.min() == 0 and cell.max() == 255
    np.testing.assert_allclose(cell.astype(int), _expected_filter(kernel, index, scale).astype(int),
                               atol=1)
  # Everything else is the white background.
  assert (image[~covered] == 255).all()


def test_decoder_filters_of_a_grey_kernel_are_grey():
  kernel = np.random.default_rng(1).normal(size=(3, 3, 4, 1)).astype(np.float32)
  image = linearize_figures.decoder_filters(kernel, 2, scale=1, gap=1)
  np.testing.assert_array_equal(image[..., 0], image[..., 1])
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("maps, group", [(6, 4), (8, 3), (4, 0)])
def test_decoder_filters_rejects_a_group_that_does_not_divide_the_maps(maps, group):
  with pytest.raises(ValueError, match=rf"group: {group} does not divide the {maps} maps"):
    linearize_figures.decoder_filters(np.zeros((3, 3, maps, 3), np.float32), group)


@pytest.mark.parametrize("shape", [(3, 3, 4), (3, 3, 4, 2)])
def test_decoder_filters_rejects_a_kernel_that_is_not_k_k_f_c(shape):
  with pytest.raises(ValueError, match="kernel: shape"):
    linearize_figures.decoder_filters(np.zeros(shape, np.float32), 2)


def test_comparison_grid_refuses_labels_the_caption_font_cannot_draw():
  truth = np.zeros((1, 7, 8, 8, 1), np.float32)
  with pytest.raises(ValueError, match="Latin-1"):
    linearize_figures.comparison_grid(truth, {"with δ": truth}, (0, 0.5, 1, 1.5, 2, 2.5, 3))
