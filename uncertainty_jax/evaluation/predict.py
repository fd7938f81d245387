"""A trained chapter 4 generator on any video: recursive predictions, scores, side-by-side videos.

A clip of `T` frames is cut into windows: window `s` gives the model frames `s .. s + m - 1` and
the model predicts the next `n` frames recursively, each from the last `m` real or predicted ones
(`predict_frames`). Each predicted frame is scored against the true frame with PSNR (eq. 4.7) and
SSIM, as is the reference predictor that copies the last input frame (Table 4.4). `side_by_side`
renders the windows as an animation in the look of `visualize.prediction_animation`: the inputs in
both panels framed in white, then `[truth (green) | prediction (red)]`; `write_video` writes it as
MP4, AVI, MKV (OpenCV) or GIF, and `write_scores_csv` the per-frame scores.

The generator is fully convolutional but halves the frames `num_scales - 1` times, so frame sides
must be multiples of `2 ** (num_scales - 1)`: `fit_frames` centre-crops the frames to such sizes,
or pads them (replicating the edges) for the model only, the predictions being cropped back to the
input size before they are scored or shown.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import numbers
import os
import tempfile
from typing import Callable, Sequence

import jax
import numpy as np

from uncertainty_jax import metrics as metrics_lib
from uncertainty_jax.evaluation import visualize
from uncertainty_jax.evaluation.video_pred import MAX_VAL
from uncertainty_jax.training import writers

# Output file types: extension -> OpenCV fourcc ('' for GIF, written by Pillow).
VIDEO_FORMATS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "XVID", ".gif": ""}
FIT_MODES = ("crop", "pad")
SEPARATOR_COLOR = (0, 0, 0)
CSV_COLUMNS = ("window_start", "k", "frame_index", "psnr", "ssim", "last_input_psnr",
               "last_input_ssim")
# SSIM's Gaussian window is 11 x 11 pixels (see metrics.ssim); smaller frames get NaN.
_SSIM_MIN_SIZE = 11


def _check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
  return int(value)


def _size(height: int, width: int) -> str:
  return f"{width}x{height}"


def check_output_path(path: str | os.PathLike) -> str:
  """The lower-case extension of an output video path, one of `VIDEO_FORMATS`.

  Raises:
    ValueError: another extension, listing the accepted ones.
  """
  ext = os.path.splitext(os.fspath(path))[1].lower()
  if ext not in VIDEO_FORMATS:
    raise ValueError(f"output: {os.fspath(path)!r} has extension {ext or '(none)'!r}; accepted: "
                     f"{', '.join(VIDEO_FORMATS)}")
  return ext


# --- frame sizes ----------------------------------------------------------------------------------


def crop_center(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """The central `height x width` pixels of `[..., H, W, C]` frames (top/left offsets rounded
  down, the offsets `fit_frames` pads with, so a padded frame crops back to the original)."""
  h, w = frames.shape[-3:-1]
  if not (0 < height <= h and 0 < width <= w):
    raise ValueError(f"height, width: {height}x{width} does not fit in frames of {h}x{w} "
                     f"(height x width)")
  top, left = (h - height) // 2, (w - width) // 2
  return frames[..., top:top + height, left:left + width, :]


def fit_frames(frames: np.ndarray, multiple: int, mode: str = "crop"
               ) -> tuple[np.ndarray, str | None]:
  """Frames whose height and width are multiples of `multiple`.

  Args:
    frames: `[..., H, W, C]`.
    multiple: the generator's size multiple, `2 ** (num_scales - 1)`.
    mode: 'crop' keeps the central `floor(H / multiple) * multiple` rows (likewise columns);
      'pad' adds rows and columns around the frames up to `ceil(H / multiple) * multiple`,
      replicating the edge pixels, `(pad // 2)` of them above (left) and the rest below (right),
      so that `crop_center(fitted, H, W)` gives the frames back.

  Returns:
    `(fitted [..., H', W', C], description)`: `description` says what was done, e.g.
    "cropped 75x53 to 72x48 (width x height; the generator needs multiples of 8)", or is None
    when the frames already fit.

  Raises:
    ValueError: a bad `mode` or `multiple`, frames that are not `[..., H, W, C]`, or, with
      'crop', frames smaller than `multiple`.
  """
  multiple = _check_int("multiple", multiple, 1)
  if mode not in FIT_MODES:
    raise ValueError(f"mode={mode!r}: expected one of {FIT_MODES}")
  frames = np.asarray(frames)
  if frames.ndim < 3:
    raise ValueError(f"frames: shape {frames.shape}; expected [..., H, W, C]")
  h, w = frames.shape[-3:-1]
  if h % multiple == 0 and w % multiple == 0:
    return frames, None
  why = f"(width x height; the generator needs multiples of {multiple})"
  if mode == "crop":
    fh, fw = (h // multiple) * multiple, (w // multiple) * multiple
    if fh == 0 or fw == 0:
      raise ValueError(f"frames: {_size(h, w)} (width x height) is smaller than the generator's "
                       f"size multiple {multiple}; pad them instead (mode='pad') or enlarge them")
    return crop_center(frames, fh, fw), f"cropped {_size(h, w)} to {_size(fh, fw)} {why}"
  fh, fw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
  pad = [(0, 0)] * (frames.ndim - 3)
  pad += [((fh - h) // 2, fh - h - (fh - h) // 2), ((fw - w) // 2, fw - w - (fw - w) // 2), (0, 0)]
  return (np.pad(frames, pad, mode="edge"),
          f"padded {_size(h, w)} to {_size(fh, fw)} for the model, predictions cropped back {why}")


# --- prediction -----------------------------------------------------------------------------------


def window_starts(clip_length: int, *, num_input_frames: int, num_frames: int,
                  start_frame: int | None = None, window_stride: int | None = None) -> list[int]:
  """The first frames of the windows `predict_clip` predicts from.

  Args:
    clip_length: `T`, frames in the clip.
    num_input_frames: `m`, frames the model sees.
    num_frames: `n`, frames predicted per window.
    start_frame: one window starting here; None for every window below.
    window_stride: with `start_frame=None`, windows start at `0, stride, 2 stride, ...` as long as
      all `n` predicted frames have a true frame (`s + m + n <= T`); None means `n`, so that the
      predicted frames of successive windows tile the clip after its first `m` frames.

  Returns:
    The window starts, in increasing order (at least one).

  Raises:
    ValueError: `n < 1` or `m < 1`, a clip shorter than `m + n` frames, a `start_frame` whose
      window does not fit in the clip, or a bad `window_stride`.
  """
  clip_length = _check_int("clip_length", clip_length, 0)
  m = _check_int("num_input_frames", num_input_frames, 1)
  n = _check_int("num_frames", num_frames, 1)
  need = m + n
  if clip_length < need:
    raise ValueError(f"frames: the clip has {clip_length} frames; predicting num_frames={n} from "
                     f"num_input_frames={m} needs at least {need}")
  last = clip_length - need
  if start_frame is not None:
    if isinstance(start_frame, bool) or not isinstance(start_frame, numbers.Integral) or not (
        0 <= start_frame <= last):
      raise ValueError(f"start_frame={start_frame!r}: expected an integer in 0..{last} (the clip "
                       f"has {clip_length} frames and a window needs {m} + {n})")
    return [int(start_frame)]
  stride = n if window_stride is None else _check_int("window_stride", window_stride, 1)
  return list(range(0, last + 1, stride))


@dataclasses.dataclass(frozen=True)
class ClipPrediction:
  """The windows of one clip, their predictions and per-frame scores.

  Attributes:
    window_starts: `[W]` int, the first input frame of each window (clip frame indices).
    inputs: `[W, m, H, W, C]`, each window's input frames.
    predictions: `[W, n, H, W, C]` in [-1, 1], the model's recursive predictions.
    truths: `[W, n, H, W, C]`, the true frames `s + m .. s + m + n - 1`.
    psnr: `[W, n]` dB, the model's PSNR (eq. 4.7, peak-to-peak 2); `+inf` for an exact frame.
    ssim: `[W, n]`, the model's SSIM; NaN when frames are smaller than 11 pixels.
    last_input_psnr: `[W, n]`, PSNR of copying the last input frame.
    last_input_ssim: `[W, n]`, SSIM of copying the last input frame.
    fit_description: what `fit_frames` did to the frames, or None.
  """
  window_starts: np.ndarray
  inputs: np.ndarray
  predictions: np.ndarray
  truths: np.ndarray
  psnr: np.ndarray
  ssim: np.ndarray
  last_input_psnr: np.ndarray
  last_input_ssim: np.ndarray
  fit_description: str | None = None

  @property
  def num_input_frames(self) -> int:
    return self.inputs.shape[1]

  @property
  def num_frames(self) -> int:
    return self.predictions.shape[1]

  @property
  def frame_indices(self) -> np.ndarray:
    """`[W, n]` the clip frame index of each predicted frame."""
    return (self.window_starts[:, None] + self.num_input_frames
            + np.arange(self.num_frames)[None, :])


@jax.jit
def _psnr(pred, target):
  return metrics_lib.psnr(pred, target, MAX_VAL)


@jax.jit
def _ssim(pred, target):
  return metrics_lib.ssim(pred, target, MAX_VAL)


def _scores(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """PSNR and SSIM `[...]` of `[..., H, W, C]` frames."""
  psnr = np.asarray(_psnr(pred, target), np.float64)
  if min(pred.shape[-3:-1]) < _SSIM_MIN_SIZE:
    return psnr, np.full(psnr.shape, np.nan)
  return psnr, np.asarray(_ssim(pred, target), np.float64)


def predict_clip(predict_fn: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, *,
                 num_input_frames: int, num_frames: int, start_frame: int | None = None,
                 window_stride: int | None = None, batch_size: int = 8, size_multiple: int = 1,
                 fit: str = "crop") -> ClipPrediction:
  """Predicts the windows of a clip (see `window_starts`) and scores every predicted frame.

  Args:
    predict_fn: `inputs [b, m, H', W', C] float32 -> [b, n, H', W', C]`, e.g. a task's
      `predictor(mesh, n)` with its variables bound; always called with the same `b` (the last
      batch is filled up by repeating its last window), so it compiles once.
    frames: `[T, H, W, C]` float in [-1, 1].
    num_input_frames: `m`, the model's input frames.
    num_frames: `n`, frames predicted per window.
    start_frame: one window starting at this frame; None for every window.
    window_stride: distance between window starts; None for `n`.
    batch_size: windows per call of `predict_fn`.
    size_multiple: the model's size multiple; frames are fitted with `fit_frames(frames,
      size_multiple, fit)`.
    fit: 'crop' scores and shows the centre-cropped frames; 'pad' gives the model padded frames
      and crops its predictions back to `H x W`.

  Returns:
    A `ClipPrediction`.

  Raises:
    ValueError: frames that are not `[T, H, W, C]` with C in (1, 3), a clip too short for
      `m + n` frames, a bad `start_frame`, `window_stride`, `batch_size`, `size_multiple` or
      `fit`, or a `predict_fn` that returns the wrong shape.
  """
  frames = np.asarray(frames, np.float32)
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"frames: shape {frames.shape}; expected [T, H, W, C] with C in (1, 3)")
  batch_size = _check_int("batch_size", batch_size, 1)
  m = _check_int("num_input_frames", num_input_frames, 1)
  n = _check_int("num_frames", num_frames, 1)
  starts = window_starts(frames.shape[0], num_input_frames=m, num_frames=n,
                         start_frame=start_frame, window_stride=window_stride)
  fitted, description = fit_frames(frames, size_multiple, fit)
  if fit == "crop":
    frames = fitted  # the truth is what the model sees
  h, w, c = frames.shape[1:]
  batch = min(batch_size, len(starts))
  preds = []
  for i in range(0, len(starts), batch):
    chunk = starts[i:i + batch]
    chunk = chunk + [chunk[-1]] * (batch - len(chunk))
    inputs = np.stack([fitted[s:s + m] for s in chunk])
    out = np.asarray(predict_fn(inputs), np.float32)
    expected = (batch, n) + fitted.shape[1:]
    if out.shape != expected:
      raise ValueError(f"predict_fn: returned shape {out.shape} for inputs {inputs.shape}; "
                       f"expected {expected}")
    preds.append(crop_center(out, h, w)[:len(starts) - i])
  predictions = np.concatenate(preds)
  inputs = np.stack([frames[s:s + m] for s in starts])
  truths = np.stack([frames[s + m:s + m + n] for s in starts])
  last = np.broadcast_to(inputs[:, -1:], truths.shape)
  psnr, ssim = _scores(predictions, truths)
  last_psnr, last_ssim = _scores(last, truths)
  assert predictions.shape == truths.shape == (len(starts), n, h, w, c)
  return ClipPrediction(
      window_starts=np.asarray(starts, np.int64), inputs=inputs, predictions=predictions,
      truths=truths, psnr=psnr, ssim=ssim, last_input_psnr=last_psnr, last_input_ssim=last_ssim,
      fit_description=description)


# --- rendering and writing ------------------------------------------------------------------------


def side_by_side(result: ClipPrediction, *, border: int = 1, separator: int = 2,
                 scale: int = 1) -> np.ndarray:
  """The frames of a video comparing truth and prediction, window after window.

  For each window, `m` frames show input frame `t` in both panels framed in white (`INPUT_COLOR`),
  then `n` frames show `[true frame k (green, TARGET_COLOR) | predicted frame k (red,
  PREDICTION_COLOR)]`, the panels `separator` pixels apart (`SEPARATOR_COLOR`). The whole frame
  is upscaled `scale` times by pixel repetition.

  Args:
    result: `predict_clip`'s result, frames `H x W`.
    border: border width in pixels before upscaling, >= 0.
    separator: gap between the panels in pixels before upscaling, >= 0.
    scale: integer upscaling factor, >= 1.

  Returns:
    uint8 `[W (m + n), (H + 2 border) scale, (2 (W + 2 border) + separator) scale, 3]`.

  Raises:
    ValueError: a bad `border`, `separator` or `scale`.
  """
  border = _check_int("border", border, 0)
  separator = _check_int("separator", separator, 0)
  scale = _check_int("scale", scale, 1)
  frames = [visualize.prediction_animation(result.inputs[i:i + 1], result.predictions[i:i + 1],
                                           result.truths[i:i + 1], max_rows=1, scale=1,
                                           border=border)
            for i in range(len(result.window_starts))]
  frames = np.stack([f for window in frames for f in window])
  cell = frames.shape[2] // 2
  gap = np.empty(frames.shape[:2] + (separator, 3), np.uint8)
  gap[...] = np.asarray(SEPARATOR_COLOR, np.uint8)
  frames = np.concatenate([frames[:, :, :cell], gap, frames[:, :, cell:]], axis=2)
  return np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)


def _check_frames_uint8(frames) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f"frames: dtype {frames.dtype}, shape {frames.shape}; expected uint8 "
                     f"[T, H, W, 3] with T >= 1")
  return frames


def _even(frames: np.ndarray) -> np.ndarray:
  """Pads `[T, H, W, 3]` with a black row / column where H / W is odd: the codecs keep even sizes
  only and would drop the last row or column."""
  t, h, w, _ = frames.shape
  if h % 2 == 0 and w % 2 == 0:
    return frames
  out = np.zeros((t, h + h % 2, w + w % 2, 3), np.uint8)
  out[:, :h, :w] = frames
  return out


def _temp_path(path: str) -> str:
  """A fresh name beside `path` with the same extension (the codec is chosen by it), created with
  the permissions a new file usually gets (`writers.new_file_mode`)."""
  directory, name = os.path.split(path)
  base, ext = os.path.splitext(name)
  fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{base}.", suffix=f".tmp{ext}")
  os.close(fd)
  os.chmod(tmp, writers.new_file_mode())
  return tmp


def write_video(path: str | os.PathLike, frames, fps: float) -> None:
  """Writes uint8 `[T, H, W, 3]` RGB frames as a video, atomically, creating parent folders.

  `.mp4` (MPEG-4 part 2, 'mp4v'), `.avi` (Motion JPEG) and `.mkv` (Xvid) go through OpenCV; these
  codecs store even sizes only, so an odd height or width gets one black row or column (bottom,
  right). `.gif` goes through `visualize.save_gif` at the exact size. The video is written under a
  temporary name in the same folder, then renamed, so a reader never sees half a file.

  Args:
    path: the output file; its extension picks the format (`VIDEO_FORMATS`).
    frames: uint8 `[T, H, W, 3]` RGB.
    fps: frames per second, > 0.

  Raises:
    ValueError: an unknown extension, bad frames or `fps`.
    OSError: OpenCV cannot write the file.
  """
  path = os.fspath(path)
  ext = check_output_path(path)
  frames = _check_frames_uint8(frames)
  if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not fps > 0:
    raise ValueError(f"fps={fps!r}: expected a number > 0")
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  if ext == ".gif":
    visualize.save_gif(path, list(frames), fps=fps)
    return
  import cv2  # pylint: disable=g-import-not-at-top
  frames = _even(frames)
  t, h, w, _ = frames.shape
  tmp = _temp_path(path)
  try:
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*VIDEO_FORMATS[ext]), float(fps), (w, h))
    if not writer.isOpened():
      raise OSError(f"{path}: OpenCV cannot open a {VIDEO_FORMATS[ext]!r} writer for {ext} "
                    f"files; try another extension ({', '.join(VIDEO_FORMATS)})")
    try:
      for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV expects BGR
    finally:
      writer.release()
    if not os.path.getsize(tmp):
      raise OSError(f"{path}: OpenCV wrote an empty file ({t} frames of {w}x{h})")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def score_rows(result: ClipPrediction) -> list[dict]:
  """One dict per predicted frame, keyed by `CSV_COLUMNS`; `k` counts from 1."""
  rows = []
  indices = result.frame_indices
  for i, start in enumerate(result.window_starts):
    for k in range(result.num_frames):
      rows.append({"window_start": int(start), "k": k + 1, "frame_index": int(indices[i, k]),
                   "psnr": float(result.psnr[i, k]), "ssim": float(result.ssim[i, k]),
                   "last_input_psnr": float(result.last_input_psnr[i, k]),
                   "last_input_ssim": float(result.last_input_ssim[i, k])})
  return rows


def write_scores_csv(path: str | os.PathLike, result: ClipPrediction) -> None:
  """Writes `score_rows(result)` as CSV with a header of `CSV_COLUMNS`, atomically."""
  path = os.fspath(path)
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
  writer.writeheader()
  writer.writerows(score_rows(result))
  writers.replace_atomically(path, text.getvalue())


def summary(result: ClipPrediction) -> str:
  """A table of the mean scores of each predicted frame `k` over the windows, the model against
  copying the last input frame."""
  lines = [f"{'k':>3}  {'PSNR':>7}  {'SSIM':>6}  {'copy-last PSNR':>14}  {'copy-last SSIM':>14}"]
  for k in range(result.num_frames):
    lines.append(f"{k + 1:>3}  {np.mean(result.psnr[:, k]):7.2f}  {np.mean(result.ssim[:, k]):6.3f}"
                 f"  {np.mean(result.last_input_psnr[:, k]):14.2f}"
                 f"  {np.mean(result.last_input_ssim[:, k]):14.3f}")
  return "\n".join(lines)


def output_size(frame_size: Sequence[int], *, border: int = 1, separator: int = 2,
                scale: int = 1) -> tuple[int, int]:
  """`(height, width)` of `side_by_side`'s frames for `H x W` frames (`frame_size = (H, W)`)."""
  h, w = frame_size
  return (h + 2 * border) * scale, (2 * (w + 2 * border) + separator) * scale
