"""Sample grids and animated predictions, as uint8 images, and writing them as PNG and GIF.

Frames are float in [-1, 1], channel-last, with 1 or 3 channels. As in the thesis' figures,
predicted frames are framed in red; true future frames are framed in green, and input frames in
white, so a viewer tells them apart at a glance.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Sequence

import numpy as np

# Frame colours (RGB) around each cell.
PREDICTION_COLOR = (255, 0, 0)
TARGET_COLOR = (0, 200, 0)
INPUT_COLOR = (255, 255, 255)


def to_uint8(images) -> np.ndarray:
  """Maps float images in [-1, 1] to uint8 in [0, 255].

  Values are clipped to [-1, 1] first, then `round((x + 1) * 127.5)`; NaN maps to 0 (black), so a
  diverged sample still renders.

  Args:
    images: float array of any shape (numpy or jax).

  Returns:
    uint8 array of the same shape.

  Raises:
    ValueError: `images` has an integer or bool dtype (its scale would be ambiguous).
  """
  images = np.asarray(images)
  if images.dtype.kind in 'biu':
    raise ValueError(f'images: dtype {images.dtype}; expected floats in [-1, 1]')
  x = np.nan_to_num(images.astype(np.float32), nan=-1.0, posinf=1.0, neginf=-1.0)
  return np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def _check_video(name: str, video) -> np.ndarray:
  video = np.asarray(video)
  if video.ndim != 5 or video.shape[-1] not in (1, 3):
    raise ValueError(f'{name}: shape {video.shape}; expected [B, T, H, W, C] with C in (1, 3)')
  return video


def _check_triplet(inputs, predictions, targets):
  """Validates inputs `[B, m, H, W, C]` against predictions and targets `[B, n, H, W, C]`."""
  inputs = _check_video('inputs', inputs)
  predictions = _check_video('predictions', predictions)
  targets = _check_video('targets', targets)
  if predictions.shape != targets.shape:
    raise ValueError(f'predictions: shape {predictions.shape}; expected the shape of targets, '
                     f'{targets.shape}')
  b, _, h, w, c = inputs.shape
  if (predictions.shape[0],) + predictions.shape[2:] != (b, h, w, c):
    raise ValueError(f'predictions: shape {predictions.shape}; expected [{b}, n, {h}, {w}, {c}] '
                     f'to match inputs {inputs.shape}')
  return inputs, predictions, targets


def _rgb(frames_uint8: np.ndarray) -> np.ndarray:
  """`[..., H, W, 1 or 3]` -> `[..., H, W, 3]`, replicating a single channel."""
  if frames_uint8.shape[-1] == 1:
    return np.repeat(frames_uint8, 3, axis=-1)
  return frames_uint8


def _framed(frames: np.ndarray, border: int, color: Sequence[int]) -> np.ndarray:
  """Surrounds each uint8 frame `[..., H, W, 3]` by `border` pixels of `color`."""
  if border == 0:
    return frames
  *lead, h, w, _ = frames.shape
  out = np.empty((*lead, h + 2 * border, w + 2 * border, 3), np.uint8)
  out[...] = np.asarray(color, np.uint8)
  out[..., border:border + h, border:border + w, :] = frames
  return out


def _tile(cells: np.ndarray) -> np.ndarray:
  """`[rows, cols, H, W, 3]` -> `[rows * H, cols * W, 3]`."""
  rows, cols, h, w, c = cells.shape
  return cells.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def _check_positive(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f'{name}={value!r}: expected an int >= {minimum}')
  return int(value)


def prediction_grid(inputs, predictions, targets, *, max_rows: int = 8,
                    border: int = 2) -> np.ndarray:
  """One image: a row per example with its input, predicted and true frames.

  Each row holds the `m` input frames, then the `n` predicted frames, then the `n` true frames.
  Every frame is a cell of `H' = H + 2 * border` by `W' = W + 2 * border` pixels: the frame
  surrounded by a border, white for inputs, red (`PREDICTION_COLOR`) for predictions and green
  (`TARGET_COLOR`) for true frames. The cell of example `r`, column `c` is
  `grid[r * H' : (r + 1) * H', c * W' : (c + 1) * W']`.

  Args:
    inputs: `[B, m, H, W, C]`, floats in [-1, 1], C in (1, 3); C = 1 is shown as grey.
    predictions: `[B, n, H, W, C]`.
    targets: `[B, n, H, W, C]`.
    max_rows: at most this many examples (the first ones) are shown.
    border: border width in pixels, >= 0.

  Returns:
    uint8 `[rows * H', (m + 2 n) * W', 3]` with `rows = min(B, max_rows)`.

  Raises:
    ValueError: shapes that do not match as above, or a bad `max_rows` / `border`.
  """
  inputs, predictions, targets = _check_triplet(inputs, predictions, targets)
  max_rows = _check_positive('max_rows', max_rows, 1)
  border = _check_positive('border', border, 0)
  rows = min(inputs.shape[0], max_rows)
  cells = np.concatenate([
      _framed(_rgb(to_uint8(inputs[:rows])), border, INPUT_COLOR),
      _framed(_rgb(to_uint8(predictions[:rows])), border, PREDICTION_COLOR),
      _framed(_rgb(to_uint8(targets[:rows])), border, TARGET_COLOR),
  ], axis=1)
  return _tile(cells)


def prediction_animation(inputs, predictions, targets, *, max_rows: int = 4, scale: int = 2,
                         border: int = 1) -> list[np.ndarray]:
  """Frames of an animation comparing true and predicted futures, side by side.

  Frame `t` (of `m + n`) has a row per example with two cells, `[truth | prediction]`. While
  `t < m` both cells show input frame `t` with a white border; afterwards the left cell shows the
  true frame `t - m` framed in green and the right cell the predicted frame `t - m` framed in red,
  so the moment prediction starts is visible. Each frame is upscaled `scale` times by
  nearest-neighbour (pixel repetition), borders included.

  Args:
    inputs: `[B, m, H, W, C]`, floats in [-1, 1], C in (1, 3).
    predictions: `[B, n, H, W, C]`.
    targets: `[B, n, H, W, C]`.
    max_rows: at most this many examples (the first ones) are shown.
    scale: integer upscaling factor, >= 1.
    border: border width in pixels before upscaling, >= 0.

  Returns:
    `m + n` uint8 frames `[rows * (H + 2 border) * scale, 2 * (W + 2 border) * scale, 3]`,
    `rows = min(B, max_rows)`.

  Raises:
    ValueError: shapes that do not match as above, or a bad `max_rows` / `scale` / `border`.
  """
  inputs, predictions, targets = _check_triplet(inputs, predictions, targets)
  max_rows = _check_positive('max_rows', max_rows, 1)
  scale = _check_positive('scale', scale, 1)
  border = _check_positive('border', border, 0)
  rows = min(inputs.shape[0], max_rows)
  seen = _framed(_rgb(to_uint8(inputs[:rows])), border, INPUT_COLOR)
  # [rows, m, H', W', 3] -> [m, rows, 2, H', W', 3]: the input on both sides.
  observed = np.stack([seen, seen], axis=2).transpose(1, 0, 2, 3, 4, 5)
  truth = _framed(_rgb(to_uint8(targets[:rows])), border, TARGET_COLOR)
  guess = _framed(_rgb(to_uint8(predictions[:rows])), border, PREDICTION_COLOR)
  future = np.stack([truth, guess], axis=2).transpose(1, 0, 2, 3, 4, 5)
  frames = []
  for cells in np.concatenate([observed, future], axis=0):
    image = _tile(cells)
    frames.append(np.repeat(np.repeat(image, scale, axis=0), scale, axis=1))
  return frames


def _check_image(name: str, image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'{name}: dtype {image.dtype}, shape {image.shape}; expected uint8 '
                     '[H, W, 3] (see to_uint8)')
  return image


def _write_atomically(path: str | os.PathLike, write: Callable[[object], None]) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then renames it to `path`.

  A reader (TensorBoard, a browser, a notebook) never sees a half-written image, and a kill
  leaves the previous image in place.
  """
  path = os.fspath(path)
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.',
                                  suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def save_png(path: str | os.PathLike, image) -> None:
  """Writes a uint8 `[H, W, 3]` image as PNG, atomically, creating parent directories."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = _check_image('image', image)
  _write_atomically(path, lambda f: Image.fromarray(image).save(f, format='PNG'))


def save_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], *, fps: float = 4,
             loop: int = 0) -> None:
  """Writes uint8 `[H, W, 3]` frames as an animated GIF, atomically, creating parent directories.

  Each frame gets its own 256-colour palette (Pillow's adaptive quantization). Pillow merges
  consecutive identical frames into one longer frame, so a reader may count fewer frames than
  were written when some repeat; the playing time is the same.

  Args:
    path: the `.gif` file.
    frames: a non-empty sequence of uint8 `[H, W, 3]` frames of one shape.
    fps: frames per second, > 0; GIF stores durations in hundredths of a second.
    loop: number of times the animation repeats; 0 loops forever.

  Raises:
    ValueError: no frames, frames of different shapes or not uint8 `[H, W, 3]`, or a bad `fps`
      or `loop`.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  frames = [_check_image(f'frames[{i}]', frame) for i, frame in enumerate(frames)]
  if not frames:
    raise ValueError('frames: empty; expected at least one uint8 [H, W, 3] frame')
  for i, frame in enumerate(frames):
    if frame.shape != frames[0].shape:
      raise ValueError(f'frames[{i}]: shape {frame.shape}; expected the shape of frames[0], '
                       f'{frames[0].shape}')
  if not fps > 0:
    raise ValueError(f'fps={fps!r}: expected a number > 0')
  if isinstance(loop, bool) or not isinstance(loop, (int, np.integer)) or loop < 0:
    raise ValueError(f'loop={loop!r}: expected an int >= 0 (0 loops forever)')
  images = [Image.fromarray(frame) for frame in frames]
  duration_ms = int(round(1000.0 / fps))
  _write_atomically(path, lambda f: images[0].save(
      f, format='GIF', save_all=True, append_images=images[1:], duration=duration_ms,
      loop=int(loop)))
