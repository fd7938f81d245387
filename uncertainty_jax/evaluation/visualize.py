"""Sample grids and animated predictions, as uint8 images, and writing them as PNG and GIF.

Frames are float in [-1, 1], channel-last, with 1 or 3 channels. As in the thesis' figures,
predicted frames are framed in red; true future frames are framed in green, and input frames in
white, so a viewer tells them apart at a glance. `comparison_grid` and `comparison_animation` put
several predictors side by side under a header of labels.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Mapping, Sequence

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


# Header text: black on white, Pillow's built-in bitmap font (6 x 11 pixels a character).
_HEADER_TEXT = (0, 0, 0)
_HEADER_BACKGROUND = (255, 255, 255)
_HEADER_PAD = 2


def check_label(name: str, label) -> str:
  """A caption the header font can draw: a non-empty Latin-1 string."""
  if not isinstance(label, str) or not label.strip():
    raise ValueError(f'{name} {label!r}; expected a non-empty string')
  try:
    label.encode('latin-1')
  except UnicodeEncodeError:
    raise ValueError(f'{name} {label!r}; expected Latin-1 characters (the caption font has no '
                     'others)') from None
  return label


def _check_comparison(inputs, targets, predictions):
  """Validates inputs `[B, m, H, W, C]`, targets `[B, n, H, W, C]` and a dict of predictions.

  Returns:
    `(inputs, targets, [(label, prediction), ...])` as numpy arrays, in the dict's order.
  """
  inputs = _check_video('inputs', inputs)
  targets = _check_video('targets', targets)
  b, m, h, w, c = inputs.shape
  if b < 1 or m < 1:
    raise ValueError(f'inputs: shape {inputs.shape}; expected at least one clip and one frame')
  if (targets.shape[0],) + targets.shape[2:] != (b, h, w, c):
    raise ValueError(f'targets: shape {targets.shape}; expected [{b}, n, {h}, {w}, {c}] to match '
                     f'inputs {inputs.shape}')
  if targets.shape[1] < 1:
    raise ValueError(f'targets: shape {targets.shape}; expected at least one future frame')
  if not isinstance(predictions, Mapping):
    raise ValueError(f'predictions: a {type(predictions).__name__}; expected a dict '
                     'label -> [B, n, H, W, C]')
  if not predictions:
    raise ValueError('predictions: an empty dict; expected at least one predictor')
  checked = []
  for label, prediction in predictions.items():
    check_label('predictions: label', label)
    prediction = _check_video(f'predictions[{label!r}]', prediction)
    if prediction.shape != targets.shape:
      raise ValueError(f'predictions[{label!r}]: shape {prediction.shape}; expected the shape of '
                       f'targets, {targets.shape} (the same clips and n = {targets.shape[1]} '
                       'frames)')
    checked.append((label, prediction))
  return inputs, targets, checked


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
  """Nearest-neighbour upscaling of `[H, W, 3]` by pixel repetition."""
  return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _fit_text(text: str, font, width: int) -> str:
  """`text`, shortened with '..' if needed so that it is at most `width` pixels wide."""
  if font.getlength(text) <= width:
    return text
  for end in range(len(text) - 1, 0, -1):
    short = text[:end].rstrip() + '..'
    if font.getlength(short) <= width:
      return short
  # Not even one character and '..' fit: the first character, clipped to its span.
  return text[:1]


def _header(width: int, lines: Sequence[Sequence[tuple[str, int, int]]]) -> np.ndarray:
  """A white band of text lines above a grid.

  Args:
    width: the band's width in pixels.
    lines: for each line, `(text, x0, x1)` spans; each text is centred in `[x0, x1)` and
      clipped to it (shortened with '..' when too long), so labels never overlap.

  Returns:
    uint8 `[len(lines) * (11 + 2 * _HEADER_PAD), width, 3]`.
  """
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  # Pillow >= 10.1 returns a scalable TrueType font from load_default(); the bitmap font needs
  # no FreeType and draws pure black and white pixels.
  font = getattr(ImageFont, 'load_default_imagefont', ImageFont.load_default)()
  text_height = font.getbbox('Ag|')[3]
  line_height = text_height + 2 * _HEADER_PAD
  band = Image.new('RGB', (width, len(lines) * line_height), _HEADER_BACKGROUND)
  for row, spans in enumerate(lines):
    for text, x0, x1 in spans:
      span = Image.new('RGB', (x1 - x0, line_height), _HEADER_BACKGROUND)
      text = _fit_text(text, font, x1 - x0 - 2)
      x = max(0, (x1 - x0 - int(font.getlength(text))) // 2)
      ImageDraw.Draw(span).text((x, _HEADER_PAD), text, fill=_HEADER_TEXT, font=font)
      band.paste(span, (x0, row * line_height))
  return np.asarray(band, np.uint8)


def comparison_grid(inputs, targets, predictions: Mapping[str, object], *, scale: int = 1,
                    border: int = 1, max_rows: int = 4) -> np.ndarray:
  """One labelled image comparing several predictors on a few clips (thesis Figure 4.5 style).

  A row per clip; its columns are the last input frame (white border), the `n` true future
  frames (green, `TARGET_COLOR`), then for each predictor in the dict's order its `n` predicted
  frames (red, `PREDICTION_COLOR`). Above the cells, a white header band names each group of
  columns ("input", "truth", then the labels) centred over the group, and, when `n > 1`, a
  second line numbers the frames 1..n of each group; labels too long for their group are
  shortened with '..'.

  The cells are the frames surrounded by `border` pixels, the whole grid then upscaled `scale`
  times by nearest-neighbour (borders included). With `H' = (H + 2 border) scale`,
  `W' = (W + 2 border) scale` and `top` the header's height (`grid.shape[0] - rows H'`), the cell
  of clip `i`, column `c` is `grid[top + i H' : top + (i + 1) H', c W' : (c + 1) W']`; predictor
  `j` (0-based), frame `k` (0-based) is column `1 + n (j + 1) + k`.

  Args:
    inputs: `[B, m, H, W, C]`, floats in [-1, 1], C in (1, 3); C = 1 is shown as grey.
    targets: `[B, n, H, W, C]`, the true future frames.
    predictions: an ordered dict `label -> [B, n, H, W, C]`, e.g. `{'L2': ..., 'Model 1': ...}`;
      labels are non-empty Latin-1 strings.
    scale: integer upscaling factor, >= 1.
    border: border width in pixels before upscaling, >= 0.
    max_rows: at most this many clips (the first ones) are shown.

  Returns:
    uint8 `[top + rows H', (1 + n (1 + P)) W', 3]`, `rows = min(B, max_rows)`, `P` predictors.

  Raises:
    ValueError: shapes that do not match as above, no predictors, a bad label, or a bad
      `scale` / `border` / `max_rows`.
  """
  inputs, targets, predicted = _check_comparison(inputs, targets, predictions)
  scale = _check_positive('scale', scale, 1)
  border = _check_positive('border', border, 0)
  max_rows = _check_positive('max_rows', max_rows, 1)
  rows = min(inputs.shape[0], max_rows)
  n = targets.shape[1]
  cells = np.concatenate(
      [_framed(_rgb(to_uint8(inputs[:rows, -1:])), border, INPUT_COLOR),
       _framed(_rgb(to_uint8(targets[:rows])), border, TARGET_COLOR)]
      + [_framed(_rgb(to_uint8(p[:rows])), border, PREDICTION_COLOR) for _, p in predicted],
      axis=1)
  body = _upscale(_tile(cells), scale)
  cell_width = cells.shape[3] * scale
  groups = [('input', 0, 1), ('truth', 1, 1 + n)]
  groups += [(label, 1 + n * (j + 1), 1 + n * (j + 2)) for j, (label, _) in enumerate(predicted)]
  lines = [[(text, c0 * cell_width, c1 * cell_width) for text, c0, c1 in groups]]
  if n > 1:
    lines.append([(str(k + 1), c * cell_width, (c + 1) * cell_width)
                  for _, c0, c1 in groups[1:] for k, c in enumerate(range(c0, c1))])
  return np.concatenate([_header(body.shape[1], lines), body], axis=0)


def comparison_animation(inputs, targets, predictions: Mapping[str, object], *, scale: int = 2,
                         max_rows: int = 4, border: int = 1) -> list[np.ndarray]:
  """Frames of a labelled animation comparing the truth with several predictors, side by side.

  Frame `t` (of `m + n`) has a row per clip with `1 + P` cells, `[truth | predictor 1 | ...]`.
  While `t < m` every cell shows input frame `t` with a white border; afterwards the first cell
  shows the true frame `t - m` framed in green and each other cell that predictor's frame `t - m`
  framed in red, as in `prediction_animation`. Above the cells, a white header band names each
  column ("truth", then the labels in the dict's order); it is the same in every frame.

  With `H' = (H + 2 border) scale`, `W' = (W + 2 border) scale` and `top` the header's height
  (`frame.shape[0] - rows H'`), the cell of clip `i`, column `c` is
  `frame[top + i H' : top + (i + 1) H', c W' : (c + 1) W']`.

  Args:
    inputs: `[B, m, H, W, C]`, floats in [-1, 1], C in (1, 3).
    targets: `[B, n, H, W, C]`, the true future frames.
    predictions: an ordered dict `label -> [B, n, H, W, C]`; labels are non-empty Latin-1
      strings.
    scale: integer upscaling factor, >= 1.
    max_rows: at most this many clips (the first ones) are shown.
    border: border width in pixels before upscaling, >= 0.

  Returns:
    `m + n` uint8 frames `[top + rows H', (1 + P) W', 3]`, `rows = min(B, max_rows)`, `P`
    predictors; ready for `save_gif`.

  Raises:
    ValueError: shapes that do not match as above, no predictors, a bad label, or a bad
      `scale` / `max_rows` / `border`.
  """
  inputs, targets, predicted = _check_comparison(inputs, targets, predictions)
  scale = _check_positive('scale', scale, 1)
  max_rows = _check_positive('max_rows', max_rows, 1)
  border = _check_positive('border', border, 0)
  rows = min(inputs.shape[0], max_rows)
  columns = 1 + len(predicted)
  seen = _framed(_rgb(to_uint8(inputs[:rows])), border, INPUT_COLOR)
  # [rows, m, H', W', 3] -> [m, rows, columns, H', W', 3]: the input in every column.
  observed = np.stack([seen] * columns, axis=2).transpose(1, 0, 2, 3, 4, 5)
  future = np.stack(
      [_framed(_rgb(to_uint8(targets[:rows])), border, TARGET_COLOR)]
      + [_framed(_rgb(to_uint8(p[:rows])), border, PREDICTION_COLOR) for _, p in predicted],
      axis=2).transpose(1, 0, 2, 3, 4, 5)
  cell_width = seen.shape[3] * scale
  labels = ['truth'] + [label for label, _ in predicted]
  spans = [(text, c * cell_width, (c + 1) * cell_width) for c, text in enumerate(labels)]
  header = _header(columns * cell_width, [spans])
  return [np.concatenate([header, _upscale(_tile(cells), scale)], axis=0)
          for cells in np.concatenate([observed, future], axis=0)]


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
    # mkstemp creates the file readable by its owner only; give it the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
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
