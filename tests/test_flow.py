"""Tests of uncertainty_jax.evaluation.flow: warping, Farneback flow, motion masks, extrapolation.

Expected values come from numpy (integer gathers with clipped indices for the replicated border,
bilinear averages of neighbours) and from synthetic translations of scikit-image's astronaut, whose
true flow is known by construction.
"""

import functools

import chex
import numpy as np
import pytest
from scipy import ndimage
from skimage import data, transform

from uncertainty_jax.evaluation import flow

SIZE = 64
# Interior margin for comparisons against Farneback: its flow is unreliable where the window
# overhangs the frame.
MARGIN = 8


@functools.lru_cache(maxsize=None)
def _big(name="astronaut"):
  """A 128x128 textured RGB image in [-1, 1], `[128, 128, 3]` float32."""
  image = getattr(data, name)()
  return (transform.resize(image, (128, 128), anti_aliasing=True) * 2 - 1).astype(np.float32)


def _translated(shift, num_frames, origin=(32, 32)):
  """Crops of the big image moving by an integral `shift` (dy, dx) per frame, `[T, 64, 64, 3]`.

  Frame t is the crop at `origin - t * shift`, so frame t at p shows frame t - 1 at p - shift.
  """
  big = _big()
  frames = []
  for t in range(num_frames):
    y, x = origin[0] - t * shift[0], origin[1] - t * shift[1]
    frames.append(big[y:y + SIZE, x:x + SIZE])
  return np.stack(frames)


def _translated_subpixel(shift, num_frames, origin=(32, 32)):
  """As `_translated` for a fractional shift: cubic-spline shifts of the big image, cropped."""
  big = _big()
  frames = []
  for t in range(num_frames):
    moved = ndimage.shift(big, (t * shift[0], t * shift[1], 0), order=3, mode="nearest")
    frames.append(moved[origin[0]:origin[0] + SIZE, origin[1]:origin[1] + SIZE])
  return np.clip(np.stack(frames), -1, 1).astype(np.float32)


def _shift_replicate(image, shift):
  """`out(p) = image(clip(p - shift))` with an integral `(dy, dx)`: numpy's replicated shift."""
  h, w = image.shape[:2]
  rows = np.clip(np.arange(h) - shift[0], 0, h - 1)
  cols = np.clip(np.arange(w) - shift[1], 0, w - 1)
  return image[rows][:, cols]


def _valid(shift, h=SIZE, w=SIZE):
  """Slices of the pixels p with p - shift inside an `[h, w]` frame."""
  dy, dx = shift
  return (slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))


def _uniform(shift, h=SIZE, w=SIZE):
  return np.broadcast_to(np.asarray(shift, np.float32), (h, w, 2)).copy()


def _psnr(pred, target):
  """PSNR in dB for images in [-1, 1] (peak-to-peak range 2)."""
  mse = np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)
  return 10 * np.log10(2.0 ** 2 / mse)


def _interior(image, margin=MARGIN):
  return image[..., margin:-margin, margin:-margin, :]


# ----------------------------------------------------------------------------------------------
# warp


@pytest.mark.parametrize("shift", [(0, 0), (1, 2), (-3, 1), (2, -2), (-1, -4), (0, 5)])
def test_warp_integral_uniform_flow_is_np_roll_in_interior(shift):
  image = np.random.default_rng(0).uniform(-1, 1, (20, 24, 3)).astype(np.float32)
  out = flow.warp(image, _uniform(shift, 20, 24))
  chex.assert_shape(out, image.shape)
  assert out.dtype == np.float32
  valid = _valid(shift, 20, 24)
  rolled = np.roll(image, shift, axis=(0, 1))
  np.testing.assert_array_equal(out[valid], rolled[valid])
  # Outside the valid region the border is replicated, which numpy's clipped gather reproduces.
  np.testing.assert_array_equal(out, _shift_replicate(image, shift))


def test_warp_zero_flow_is_identity():
  image = np.random.default_rng(1).uniform(-1, 1, (17, 13, 3)).astype(np.float32)
  np.testing.assert_array_equal(flow.warp(image, np.zeros((17, 13, 2), np.float32)), image)


def test_warp_single_channel_keeps_shape():
  image = np.random.default_rng(2).uniform(-1, 1, (16, 16, 1)).astype(np.float32)
  out = flow.warp(image, _uniform((1, -2), 16, 16))
  chex.assert_shape(out, (16, 16, 1))
  np.testing.assert_array_equal(out, _shift_replicate(image, (1, -2)))


def test_warp_non_uniform_integral_flow_samples_at_output_pixels():
  rng = np.random.default_rng(3)
  h, w = 15, 18
  image = rng.uniform(-1, 1, (h, w, 3)).astype(np.float32)
  flow_field = rng.integers(-4, 5, (h, w, 2)).astype(np.float32)
  yy, xx = np.mgrid[:h, :w]
  rows = np.clip(yy - flow_field[..., 0].astype(int), 0, h - 1)
  cols = np.clip(xx - flow_field[..., 1].astype(int), 0, w - 1)
  np.testing.assert_array_equal(flow.warp(image, flow_field), image[rows, cols])


def test_warp_half_pixel_flow_averages_neighbours():
  image = np.random.default_rng(4).uniform(-1, 1, (12, 14, 3)).astype(np.float32)
  inner = (slice(1, -1), slice(1, -1))
  up = np.roll(image, 1, axis=0)      # image(y - 1, x)
  left = np.roll(image, 1, axis=1)    # image(y, x - 1)
  down = np.roll(image, -1, axis=0)   # image(y + 1, x)
  diag = np.roll(image, (1, 1), axis=(0, 1))
  cases = {
      (0.5, 0.0): (image + up) / 2,
      (0.0, 0.5): (image + left) / 2,
      (-0.5, 0.0): (image + down) / 2,
      (0.5, 0.5): (image + up + left + diag) / 4,
  }
  for shift, expected in cases.items():
    out = flow.warp(image, _uniform(shift, 12, 14))
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-6, err_msg=str(shift))


def test_warp_bilinear_matches_numpy_on_a_1_32_pixel_grid():
  # Fractions k/32 are exactly representable by OpenCV's fixed-point remap coordinates.
  rng = np.random.default_rng(5)
  h, w = 16, 16
  image = rng.uniform(-1, 1, (h, w, 2)).astype(np.float32)
  flow_field = (rng.integers(-64, 65, (h, w, 2)) / 32).astype(np.float32)
  yy, xx = np.mgrid[:h, :w]
  sy = np.clip(yy - flow_field[..., 0].astype(np.float64), 0, h - 1)
  sx = np.clip(xx - flow_field[..., 1].astype(np.float64), 0, w - 1)
  y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
  img = image.astype(np.float64)
  expected = ((1 - fy) * (1 - fx) * img[y0, x0] + (1 - fy) * fx * img[y0, x1]
              + fy * (1 - fx) * img[y1, x0] + fy * fx * img[y1, x1])
  np.testing.assert_allclose(flow.warp(image, flow_field), expected, atol=1e-5)


@pytest.mark.parametrize("image_shape,flow_shape", [
    ((8, 8), (8, 8, 2)),            # image without a channel axis
    ((2, 8, 8, 3), (8, 8, 2)),      # a batch is not accepted
    ((8, 8, 3), (8, 8, 3)),         # three flow components
    ((8, 8, 3), (8, 9, 2)),         # flow size differs
    ((8, 8, 3), (8, 8)),            # flow without the component axis
])
def test_warp_shape_errors(image_shape, flow_shape):
  with pytest.raises(ValueError, match="warp"):
    flow.warp(np.zeros(image_shape, np.float32), np.zeros(flow_shape, np.float32))


# ----------------------------------------------------------------------------------------------
# extrapolate with exact flows


@pytest.mark.parametrize("shift", [(1, 2), (-2, 1), (0, -3), (2, 2)])
def test_extrapolate_exact_flow_reproduces_translation(shift):
  num_inputs, num_frames = 3, 3
  clip = _translated(shift, num_inputs + num_frames)
  preds = flow.extrapolate(clip[None, :num_inputs], num_frames, flows=_uniform(shift)[None])
  chex.assert_shape(preds, (1, num_frames, SIZE, SIZE, 3))
  assert preds.dtype == np.float32
  last = clip[num_inputs - 1]
  for k in range(1, num_frames + 1):
    total = (k * shift[0], k * shift[1])
    pred = preds[0, k - 1]
    valid = _valid(total)
    # Frame k after the inputs equals the true frame where it can be seen in the last input.
    np.testing.assert_array_equal(pred[valid], clip[num_inputs - 1 + k][valid])
    # Repeated replicated shifts equal one replicated shift by the total (same-sign steps).
    np.testing.assert_array_equal(pred, _shift_replicate(last, total))


def test_extrapolate_batch_uses_each_clips_flow():
  shifts = [(1, 2), (-2, -1)]
  clips = np.stack([_translated(s, 4) for s in shifts])
  flows = np.stack([_uniform(s) for s in shifts])
  preds = flow.extrapolate(clips[:, :2], 2, flows=flows)
  chex.assert_shape(preds, (2, 2, SIZE, SIZE, 3))
  for b, shift in enumerate(shifts):
    for k in (1, 2):
      valid = _valid((k * shift[0], k * shift[1]))
      np.testing.assert_array_equal(preds[b, k - 1][valid], clips[b, 1 + k][valid])


def test_extrapolate_output_is_clipped():
  shift = (1, -1)
  clip = 1.5 * _translated(shift, 2)
  assert np.abs(clip).max() > 1.2
  preds = flow.extrapolate(clip[None], 2, flows=_uniform(shift)[None])
  assert preds.min() >= -1.0 and preds.max() <= 1.0
  for k in (1, 2):
    expected = np.clip(_shift_replicate(clip[-1], (k * shift[0], k * shift[1])), -1, 1)
    np.testing.assert_allclose(preds[0, k - 1], expected, atol=1e-6)


def test_extrapolate_default_flow_is_farneback_of_last_two_inputs():
  # The first pair is still, the last pair moves: only the last pair's flow may be used.
  moving = _translated((2, 1), 2)
  clip = np.stack([moving[0], moving[0], moving[1]])[None]
  preds = flow.extrapolate(clip, 2)
  expected = flow.extrapolate(clip, 2, flows=flow.farneback_flow(clip[:, -2], clip[:, -1]))
  np.testing.assert_array_equal(preds, expected)
  assert np.abs(preds[0, 0] - clip[0, -1]).max() > 0.5


@pytest.mark.parametrize("shape", [(1, 1, 8, 8, 3), (2, 1, 8, 8, 1), (1, 8, 8, 3),
                                   (1, 2, 8, 8)])
def test_extrapolate_rejects_bad_inputs_shape(shape):
  with pytest.raises(ValueError, match="inputs"):
    flow.extrapolate(np.zeros(shape, np.float32), 1)


@pytest.mark.parametrize("num_frames", [0, -1])
def test_extrapolate_rejects_bad_num_frames(num_frames):
  with pytest.raises(ValueError, match="num_frames"):
    flow.extrapolate(np.zeros((1, 2, 8, 8, 3), np.float32), num_frames,
                     flows=np.zeros((1, 8, 8, 2), np.float32))


# ----------------------------------------------------------------------------------------------
# extrapolate with Farneback flow against copying the last frame


def _margins(clip, num_inputs, num_frames):
  """PSNR(extrapolation) - PSNR(copy last input) per predicted frame, dB, whole frames."""
  preds = flow.extrapolate(clip[None, :num_inputs], num_frames)[0]
  last = clip[num_inputs - 1]
  return np.array([_psnr(preds[k], clip[num_inputs + k]) - _psnr(last, clip[num_inputs + k])
                   for k in range(num_frames)])


@pytest.mark.parametrize("shift,origin", [((1, 2), (32, 32)), ((2, -1), (20, 44)),
                                          ((-1, -2), (40, 24)), ((1, 1), (32, 32))])
def test_extrapolate_farneback_beats_copy_last_on_integral_translation(shift, origin):
  # Measured margins: 11.5 dB or more averaged over three frames, 13 dB or more on the first
  # (whole frames, border included); the bounds below leave about half of that.
  margins = _margins(_translated(shift, 5, origin), 2, 3)
  assert margins.min() > 5.0, margins
  assert margins.mean() > 6.0, margins
  # Away from the border the flow is close to exact, so is the first prediction (measured > 65 dB).
  clip = _translated(shift, 3, origin)
  pred = flow.extrapolate(clip[None, :2], 1)[0, 0]
  assert _psnr(_interior(pred), _interior(clip[2])) > 40.0


@pytest.mark.parametrize("shift,origin", [((0.5, 0.5), (32, 32)), ((0.3, 0.7), (40, 24)),
                                          ((-0.5, 0.25), (20, 44)), ((0.75, -0.4), (32, 32))])
def test_extrapolate_farneback_beats_copy_last_on_subpixel_translation(shift, origin):
  # Measured margins: 8 dB or more averaged over three frames, 6 dB or more on the first.
  margins = _margins(_translated_subpixel(shift, 5, origin), 2, 3)
  assert margins.min() > 3.0, margins
  assert margins.mean() > 4.0, margins


# ----------------------------------------------------------------------------------------------
# farneback_flow


def _interior_median(flow_field):
  return np.median(_interior(flow_field).reshape(-1, 2), axis=0)


@pytest.mark.parametrize("shift", [(1, 2), (2, -1), (-2, 0), (0, 1), (-1, -1)])
def test_farneback_flow_recovers_integral_translation(shift):
  previous, current = _translated(shift, 2)
  estimate = flow.farneback_flow(previous, current)
  chex.assert_shape(estimate, (SIZE, SIZE, 2))
  assert estimate.dtype == np.float32
  # (dy, dx) order and sign: current at p shows previous at p - flow(p).
  np.testing.assert_allclose(_interior_median(estimate), shift, atol=0.25)
  # Consistent with warp's convention: previous moved along the flow is current.
  assert _psnr(_interior(flow.warp(previous, estimate)), _interior(current)) > 35.0


@pytest.mark.parametrize("shift", [(0.5, 0.5), (-0.3, 0.7)])
def test_farneback_flow_recovers_subpixel_translation(shift):
  previous, current = _translated_subpixel(shift, 2)
  np.testing.assert_allclose(_interior_median(flow.farneback_flow(previous, current)), shift,
                             atol=0.25)


def test_farneback_flow_single_channel():
  shift = (2, 1)
  frames = _translated(shift, 2)
  gray = (frames @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
  estimate = flow.farneback_flow(gray[0], gray[1])
  chex.assert_shape(estimate, (SIZE, SIZE, 2))
  np.testing.assert_allclose(_interior_median(estimate), shift, atol=0.25)


def test_farneback_flow_batched_preserves_leading_axes():
  shifts = [[(1, 2), (0, -1), (2, 0)], [(-1, 1), (1, 1), (-2, -2)]]
  pairs = np.array([[_translated(s, 2, origin=(30 + 4 * b, 34 - 3 * t))
                     for t, s in enumerate(row)] for b, row in enumerate(shifts)])
  previous, current = pairs[:, :, 0], pairs[:, :, 1]
  chex.assert_shape(previous, (2, 3, SIZE, SIZE, 3))
  estimate = flow.farneback_flow(previous, current)
  chex.assert_shape(estimate, (2, 3, SIZE, SIZE, 2))
  for b, row in enumerate(shifts):
    for t, s in enumerate(row):
      np.testing.assert_array_equal(estimate[b, t],
                                    flow.farneback_flow(previous[b, t], current[b, t]))
      np.testing.assert_allclose(_interior_median(estimate[b, t]), s, atol=0.25)
  chex.assert_shape(flow.farneback_flow(previous[0], current[0]), (3, SIZE, SIZE, 2))


@pytest.mark.parametrize("previous_shape,current_shape", [
    ((16, 16, 3), (16, 17, 3)),
    ((2, 16, 16, 3), (16, 16, 3)),
    ((16, 16, 3), (16, 16, 1)),
    ((16, 16, 2), (16, 16, 2)),
    ((16, 16, 4), (16, 16, 4)),
    ((16, 16), (16, 16)),
])
def test_farneback_flow_rejects_bad_shapes(previous_shape, current_shape):
  with pytest.raises(ValueError, match="frames"):
    flow.farneback_flow(np.zeros(previous_shape, np.float32), np.zeros(current_shape, np.float32))


# ----------------------------------------------------------------------------------------------
# flow_magnitude_mask / motion_mask


def test_flow_magnitude_mask_matches_numpy_norm():
  rng = np.random.default_rng(6)
  flow_field = rng.normal(0, 2, (2, 3, 9, 11, 2)).astype(np.float32)
  for threshold in (0.0, 0.5, 1.5, 4.0):
    mask = flow.flow_magnitude_mask(flow_field, threshold)
    chex.assert_shape(mask, (2, 3, 9, 11))
    assert mask.dtype == bool
    expected = np.hypot(flow_field[..., 0].astype(np.float64), flow_field[..., 1]) > threshold
    np.testing.assert_array_equal(mask, expected)


def test_flow_magnitude_mask_is_strict():
  flow_field = np.asarray([[[3.0, 4.0], [0.0, 0.0]]], np.float32)   # lengths 5 and 0
  np.testing.assert_array_equal(flow.flow_magnitude_mask(flow_field, 5.0), [[False, False]])
  np.testing.assert_array_equal(flow.flow_magnitude_mask(flow_field, 4.99), [[True, False]])
  np.testing.assert_array_equal(flow.flow_magnitude_mask(flow_field, 0.0), [[True, False]])


@pytest.mark.parametrize("threshold", [-0.5, float("nan")])
def test_masks_reject_bad_threshold(threshold):
  with pytest.raises(ValueError, match="threshold"):
    flow.flow_magnitude_mask(np.zeros((4, 4, 2), np.float32), threshold)
  frame = np.zeros((16, 16, 3), np.float32)
  with pytest.raises(ValueError, match="threshold"):
    flow.motion_mask(frame, frame, threshold)


SQUARE = 32
THRESHOLD = 1.0


def _moving_square(shift, corner=(16, 16)):
  """A still astronaut background with a 32x32 coffee square moved by `shift`.

  Returns previous and current `[64, 64, 3]` frames, the square's region in `current` and the union
  of its regions in both frames, `[64, 64]` bool each.
  """
  background = _big()[32:32 + SIZE, 32:32 + SIZE]
  patch = _big("coffee")[40:40 + SQUARE, 50:50 + SQUARE]
  y, x = corner
  ny, nx = y + shift[0], x + shift[1]
  previous, current = background.copy(), background.copy()
  previous[y:y + SQUARE, x:x + SQUARE] = patch
  current[ny:ny + SQUARE, nx:nx + SQUARE] = patch
  region = np.zeros((SIZE, SIZE), bool)
  region[ny:ny + SQUARE, nx:nx + SQUARE] = True
  union = region.copy()
  union[y:y + SQUARE, x:x + SQUARE] = True
  return previous, current, region, union


def _iou(a, b):
  return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("shift,corner", [((2, 1), (16, 16)), ((1, 2), (12, 20)),
                                          ((-2, -1), (20, 14)), ((1, 1), (16, 16)),
                                          ((2, -2), (12, 12))])
def test_motion_mask_finds_moving_square(shift, corner):
  previous, current, region, union = _moving_square(shift, corner)
  mask = flow.motion_mask(previous, current, THRESHOLD)
  chex.assert_shape(mask, (SIZE, SIZE))
  np.testing.assert_array_equal(
      mask, flow.flow_magnitude_mask(flow.farneback_flow(previous, current), THRESHOLD))
  # Measured over 18 placements: IoU with the union of the square's regions 0.62-0.71, recall of
  # the current square 0.84-1.0, at least 89% of the mask within 4 px of the union, none beyond
  # 8.1 px (Farneback's 9-pixel windows smear the flow over the still background nearby).
  distance = ndimage.distance_transform_edt(~union)
  assert _iou(mask, union) > 0.5
  assert (mask & region).sum() / region.sum() > 0.7
  assert (distance[mask] <= 4).mean() > 0.8
  assert distance[mask].max() <= 10
  # The still background far from the square is never flagged (the whole frame would be 4096).
  assert mask.sum() < 2 * union.sum()


def test_motion_mask_empty_for_identical_frames():
  previous, _, _, _ = _moving_square((0, 0))
  assert not flow.motion_mask(previous, previous, THRESHOLD).any()
  batch = np.stack([previous, _translated((1, 1), 1)[0]])
  mask = flow.motion_mask(batch, batch, THRESHOLD)
  chex.assert_shape(mask, (2, SIZE, SIZE))
  assert not mask.any()
