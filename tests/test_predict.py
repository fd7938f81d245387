"""Predicting any video with a trained chapter 4 run: `evaluation/predict.py` and
`experiments/predict.py`."""

import csv
import json
import os
import shutil
import subprocess
import sys

import chex
import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from tests.conftest import REPO
from tests.conftest import run_main
from uncertainty_jax.evaluation import predict
from uncertainty_jax.evaluation import visualize

M = 4  # num_input_frames of the tiny config
MULTIPLE = 8  # 2 ** (num_scales - 1) of the tiny config
BORDER, SEPARATOR = 1, 2  # side_by_side's defaults


def _moving_square(t, h, w):
  """`[t, h, w, 3]` uint8 RGB: a coloured square moving right on a grey background."""
  frames = np.full((t, h, w, 3), 40, np.uint8)
  for i in range(t):
    frames[i, 10:26, 3 + 2 * i:19 + 2 * i] = (255, 200, 0)
  return frames


def _write_video(path, frames, fourcc="mp4v"):
  h, w = frames.shape[1:3]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
  assert writer.isOpened()
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()


def _read_video(path):
  """All frames of a video file as RGB uint8 `[T, H, W, 3]`."""
  capture = cv2.VideoCapture(str(path))
  frames = []
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    frames.append(frame[..., ::-1])
  capture.release()
  return np.stack(frames)


def _numpy_psnr(a, b):
  """Eq. 4.7 for images in [-1, 1] (peak-to-peak 2): `10 log10(4 / mse)`."""
  mse = np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)),
                axis=(-3, -2, -1))
  return 10 * np.log10(4.0 / mse)


def _starts(t, n, stride=None):
  stride = stride or n
  return [s for s in range(0, t, stride) if s + M + n <= t]


def _cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "experiments.predict", *map(str, args)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vp_tiny")
  proc = run_main(["--config=experiments/video_pred.py:tiny", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """A 72x48 .mp4, a folder of 75x53 PNGs, and a 6-frame clip, all of moving squares."""
  root = tmp_path_factory.mktemp("inputs")
  _write_video(root / "clip72.mp4", _moving_square(16, 48, 72))
  folder = root / "frames75"
  folder.mkdir()
  for i, frame in enumerate(_moving_square(16, 53, 75)):
    cv2.imwrite(str(folder / f"{i:03d}.png"), frame[..., ::-1])
  _write_video(root / "short.mp4", _moving_square(6, 48, 72))
  (root / "not_a_video.mp4").write_text("hello")
  return root


# --- the command --------------------------------------------------------------------------------


def test_mp4_of_every_window_with_scores(workdir, inputs, tmp_path):
  out = tmp_path / "out" / "pred.mp4"
  proc = _cli(f"--workdir={workdir}", f"--input={inputs / 'clip72.mp4'}", "--num_frames=4",
              f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "loaded step 2" in proc.stdout and str(out) in proc.stdout
  n, starts = 4, _starts(16, 4)
  assert starts == [0, 4, 8]
  video = _read_video(out)
  assert video.shape == (len(starts) * (M + n), 48 + 2 * BORDER, 2 * (72 + 2 * BORDER) + SEPARATOR,
                         3)
  with open(f"{out}.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(starts) * n
  assert [(int(r["window_start"]), int(r["k"]), int(r["frame_index"])) for r in rows] == [
      (s, k, s + M + k - 1) for s in starts for k in range(1, n + 1)]
  # Copying the last input frame is scored on the decoded input alone, which this test decodes too.
  clip = _read_video(inputs / "clip72.mp4").astype(np.float32) / 127.5 - 1.0
  for r in rows:
    s, i = int(r["window_start"]), int(r["frame_index"])
    np.testing.assert_allclose(float(r["last_input_psnr"]), _numpy_psnr(clip[s + M - 1], clip[i]),
                               rtol=1e-4)
    assert np.isfinite(float(r["psnr"])) and -1 <= float(r["ssim"]) <= 1
  assert not [p for p in os.listdir(out.parent) if p.startswith(".")]  # no temporary files left


def test_avi_of_one_padded_window(workdir, inputs, tmp_path):
  out = tmp_path / "pred.avi"
  n = 3
  proc = _cli(f"--workdir={workdir}", f"--input={inputs / 'frames75'}", f"--num_frames={n}",
              "--start_frame=5", "--fit=pad", f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "padded 75x53 to 80x56" in proc.stdout
  video = _read_video(out)
  # Predictions are cropped back to 75x53; the codec keeps even sizes, so the writer adds a row.
  h, w = 53 + 2 * BORDER, 2 * (75 + 2 * BORDER) + SEPARATOR
  assert video.shape == (M + n, h + h % 2, w + w % 2, 3)
  with open(f"{out}.csv") as f:
    rows = list(csv.DictReader(f))
  assert [int(r["frame_index"]) for r in rows] == [5 + M + k for k in range(n)]


def test_gif_of_cropped_strided_windows(workdir, inputs, tmp_path):
  out = tmp_path / "pred.gif"
  n, stride, scale = 2, 3, 2
  proc = _cli(f"--workdir={workdir}", f"--input={inputs / 'frames75'}", f"--num_frames={n}",
              f"--window_stride={stride}", f"--scale={scale}", f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "cropped 75x53 to 72x48" in proc.stdout
  starts = _starts(16, n, stride)
  assert starts == [0, 3, 6, 9]
  with Image.open(out) as gif:
    assert gif.size == ((2 * (72 + 2 * BORDER) + SEPARATOR) * scale, (48 + 2 * BORDER) * scale)
    # The square moves every frame, so no two successive frames merge.
    assert gif.n_frames == len(starts) * (M + n)


def _assert_one_line_error(proc, out_dir, expect):
  assert proc.returncode == 1, proc.stdout + proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert expect in lines[0], lines[0]
  assert not os.path.exists(out_dir) or not os.listdir(out_dir)


def test_errors_are_one_line_and_write_nothing(workdir, inputs, tmp_path):
  clip = inputs / "clip72.mp4"
  out_dir = tmp_path / "out"
  out = out_dir / "pred.mp4"

  proc = _cli(f"--workdir={tmp_path / 'missing'}", f"--input={clip}", f"--output={out}")
  _assert_one_line_error(proc, out_dir, "has no config.json")

  other = tmp_path / "ebgan_run"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"task": "ebgan"}))
  proc = _cli(f"--workdir={other}", f"--input={clip}", f"--output={out}")
  _assert_one_line_error(proc, out_dir, "not a chapter 4 (video_pred) one")

  untrained = tmp_path / "untrained"
  untrained.mkdir()
  shutil.copy(workdir / "config.json", untrained / "config.json")
  proc = _cli(f"--workdir={untrained}", f"--input={clip}", f"--output={out}")
  _assert_one_line_error(proc, out_dir, "no checkpoint")

  proc = _cli(f"--workdir={workdir}", f"--input={inputs / 'not_a_video.mp4'}", f"--output={out}")
  _assert_one_line_error(proc, out_dir, "not_a_video.mp4")

  proc = _cli(f"--workdir={workdir}", f"--input={clip}", f"--output={out_dir / 'pred.webm'}")
  _assert_one_line_error(proc, out_dir, ".mp4, .avi, .mkv, .gif")

  proc = _cli(f"--workdir={workdir}", f"--input={inputs / 'short.mp4'}", "--num_frames=4",
              f"--output={out}")
  _assert_one_line_error(proc, out_dir, f"has 6 frames; predicting num_frames=4 from "
                                        f"num_input_frames={M} needs at least {M + 4}")


# --- the library --------------------------------------------------------------------------------


class TestFitFrames:

  def test_crop_takes_the_centre(self):
    frames = np.random.default_rng(0).uniform(-1, 1, (3, 53, 75, 3)).astype(np.float32)
    fitted, description = predict.fit_frames(frames, MULTIPLE, "crop")
    # 53 -> 48 rows, dropping 2 above and 3 below; 75 -> 72 columns, 1 left and 2 right.
    np.testing.assert_array_equal(fitted, frames[:, 2:50, 1:73])
    assert description.startswith("cropped 75x53 to 72x48")

  def test_pad_replicates_edges_and_crops_back(self):
    frames = np.random.default_rng(1).uniform(-1, 1, (3, 53, 75, 3)).astype(np.float32)
    fitted, description = predict.fit_frames(frames, MULTIPLE, "pad")
    chex.assert_shape(fitted, (3, 56, 80, 3))
    assert description.startswith("padded 75x53 to 80x56")
    # 3 rows above (1 + 2), 5 columns (2 left, 3 right).
    np.testing.assert_array_equal(fitted, np.pad(frames, [(0, 0), (1, 2), (2, 3), (0, 0)],
                                                 mode="edge"))
    np.testing.assert_array_equal(predict.crop_center(fitted, 53, 75), frames)

  def test_fitting_frames_are_unchanged(self):
    frames = np.zeros((2, 48, 72, 3), np.float32)
    fitted, description = predict.fit_frames(frames, MULTIPLE, "crop")
    assert fitted is frames and description is None

  def test_bad_input(self):
    with pytest.raises(ValueError, match="mode='stretch'"):
      predict.fit_frames(np.zeros((1, 9, 9, 3)), MULTIPLE, "stretch")
    with pytest.raises(ValueError, match="smaller than the generator's size multiple 8"):
      predict.fit_frames(np.zeros((1, 5, 9, 3)), MULTIPLE, "crop")


def _copy_last(calls):
  def fn(inputs):
    calls.append(inputs.shape)
    return np.repeat(inputs[:, -1:], 3, axis=1)
  return fn


class TestPredictClip:

  def test_copying_the_last_input_scores_as_the_reference(self):
    frames = _moving_square(16, 48, 72).astype(np.float32) / 127.5 - 1
    calls = []
    result = predict.predict_clip(_copy_last(calls), frames, num_input_frames=M, num_frames=3,
                                  batch_size=2)
    expected = _starts(16, 3)
    assert expected == [0, 3, 6, 9]
    np.testing.assert_array_equal(result.window_starts, expected)
    assert calls == [(2, M, 48, 72, 3)] * 2
    np.testing.assert_array_equal(result.psnr, result.last_input_psnr)
    np.testing.assert_array_equal(result.ssim, result.last_input_ssim)
    for i, s in enumerate(expected):
      np.testing.assert_array_equal(result.truths[i], frames[s + M:s + M + 3])
      np.testing.assert_array_equal(result.inputs[i], frames[s:s + M])

  def test_scores_match_numpy_and_skimage(self):
    rng = np.random.default_rng(2)
    frames = rng.uniform(-1, 1, (9, 16, 24, 3)).astype(np.float32)
    predicted = rng.uniform(-1, 1, (5, 2, 16, 24, 3)).astype(np.float32)
    calls = []

    def fn(inputs):
      calls.append(inputs.shape)
      return predicted[:inputs.shape[0]]

    result = predict.predict_clip(fn, frames, num_input_frames=M, num_frames=2,
                                  window_stride=1, batch_size=5)
    np.testing.assert_array_equal(result.window_starts, [0, 1, 2, 3])
    # Four windows in one batch of five: the last window is repeated to fill it.
    assert calls == [(4, M, 16, 24, 3)]
    np.testing.assert_allclose(result.psnr, _numpy_psnr(result.predictions, result.truths),
                               rtol=1e-4)
    last = np.repeat(result.inputs[:, -1:], 2, axis=1)
    np.testing.assert_allclose(result.last_input_psnr, _numpy_psnr(last, result.truths),
                               rtol=1e-4)
    for i in range(4):
      for k in range(2):
        reference = structural_similarity(
            result.predictions[i, k], result.truths[i, k], gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=2.0, channel_axis=-1)
        np.testing.assert_allclose(result.ssim[i, k], reference, atol=1e-4)

  def test_pad_feeds_multiples_and_crops_back(self):
    frames = np.random.default_rng(3).uniform(-1, 1, (8, 9, 21, 3)).astype(np.float32)
    calls = []
    result = predict.predict_clip(_copy_last(calls), frames, num_input_frames=M, num_frames=3,
                                  start_frame=1, size_multiple=MULTIPLE, fit="pad")
    assert calls == [(1, M, 16, 24, 3)]
    chex.assert_shape(result.predictions, (1, 3, 9, 21, 3))
    # The copied frame, padded then cropped back, is the last input frame itself.
    np.testing.assert_array_equal(result.predictions[0, 0], frames[1 + M - 1])
    assert np.isnan(result.ssim).all()  # 9 rows: too small for SSIM's 11x11 window
    np.testing.assert_array_equal(result.frame_indices, [[5, 6, 7]])

  def test_bad_arguments(self):
    frames = np.zeros((7, 16, 16, 3), np.float32)
    fn = _copy_last([])
    with pytest.raises(ValueError, match="the clip has 7 frames; .* needs at least 8"):
      predict.predict_clip(fn, frames, num_input_frames=M, num_frames=4)
    with pytest.raises(ValueError, match=r"start_frame=4: expected an integer in 0..1"):
      predict.predict_clip(fn, frames, num_input_frames=M, num_frames=2, start_frame=4)
    with pytest.raises(ValueError, match="num_frames=0"):
      predict.predict_clip(fn, frames, num_input_frames=M, num_frames=0)
    with pytest.raises(ValueError, match="predict_fn: returned shape"):
      predict.predict_clip(lambda x: x, frames, num_input_frames=M, num_frames=2)


def test_side_by_side_layout():
  rng = np.random.default_rng(4)
  frames = rng.uniform(-1, 1, (7, 12, 14, 3)).astype(np.float32)
  result = predict.predict_clip(lambda x: rng.uniform(-1, 1, (x.shape[0], 2, 12, 14, 3)), frames,
                                num_input_frames=M, num_frames=2, window_stride=1)
  video = predict.side_by_side(result)
  cell_h, cell_w = 12 + 2 * BORDER, 14 + 2 * BORDER
  chex.assert_shape(video, (2 * (M + 2), cell_h, 2 * cell_w + SEPARATOR, 3))
  assert video.dtype == np.uint8
  left, right = video[:, :, :cell_w], video[:, :, cell_w + SEPARATOR:]
  inner = (slice(None), slice(BORDER, -BORDER), slice(BORDER, -BORDER))
  uint8 = lambda x: np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
  for i in range(2):
    base = i * (M + 2)
    np.testing.assert_array_equal(left[base:base + M][inner], uint8(frames[i:i + M]))
    np.testing.assert_array_equal(right[base:base + M][inner], uint8(frames[i:i + M]))
    np.testing.assert_array_equal(left[base + M:base + M + 2][inner],
                                  uint8(frames[i + M:i + M + 2]))
    np.testing.assert_array_equal(right[base + M:base + M + 2][inner],
                                  uint8(result.predictions[i]))
    assert (left[base, 0, 0] == visualize.INPUT_COLOR).all()
    assert (left[base + M, 0, 0] == visualize.TARGET_COLOR).all()
    assert (right[base + M, 0, 0] == visualize.PREDICTION_COLOR).all()
  assert (video[:, :, cell_w:cell_w + SEPARATOR] == predict.SEPARATOR_COLOR).all()


class TestWriteVideo:

  def test_unknown_extension_writes_nothing(self, tmp_path):
    with pytest.raises(ValueError, match=r"'\.webm'; accepted: \.mp4, \.avi, \.mkv, \.gif"):
      predict.write_video(tmp_path / "x.webm", np.zeros((2, 8, 8, 3), np.uint8), 10)
    assert not os.listdir(tmp_path)

  @pytest.mark.parametrize("ext", [".mp4", ".avi", ".mkv"])
  def test_odd_sizes_gain_a_row_and_column(self, tmp_path, ext):
    frames = np.stack([np.full((21, 33, 3), 20 * i, np.uint8) for i in range(5)])
    path = tmp_path / f"odd{ext}"
    predict.write_video(path, frames, 10)
    back = _read_video(path)
    chex.assert_shape(back, (5, 22, 34, 3))
    # Flat grey frames survive the lossy codecs to within a few levels.
    np.testing.assert_allclose(back[:, 5:15, 5:25].mean(axis=(1, 2, 3)), 20 * np.arange(5),
                               atol=4)
    assert os.listdir(tmp_path) == [path.name]
