"""What a run writes besides checkpoints: `metrics.jsonl`, TensorBoard events, a progress line.

`MetricWriter` appends one JSON object per logged step to `workdir/metrics.jsonl` and writes the
same scalars (and sample images) to TensorBoard event files in `workdir` through tensorboardX, so
no TensorFlow is needed. Only the chief process writes. `read_metrics` reads the JSON lines back,
and `truncate_metrics_after` drops what a killed run logged after its last checkpoint, so that a
resumed run logs each step once.

`ProgressLine` prints steps/s and an ETA on the terminal (redrawn in place) or in a log file
(a full line now and then).

Non-finite values in `metrics.jsonl` are written as the JSON strings `"nan"`, `"inf"` and
`"-inf"` (JSON has no literal for them, and `null` would lose which one it was); every line is
strict JSON, and `read_metrics` turns those strings back into floats.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Optional, TextIO

import numpy as np

METRICS_FILENAME = 'metrics.jsonl'

# How `metrics.jsonl` spells the floats that JSON cannot represent.
_NON_FINITE_TO_STR = {'nan': 'nan', 'inf': 'inf', '-inf': '-inf'}
_STR_TO_NON_FINITE = {'nan': math.nan, 'inf': math.inf, '-inf': -math.inf}

# TensorBoard shows new points this often at the latest (tensorboardX's default is 120 s).
_TENSORBOARD_FLUSH_SECS = 30


def _metrics_path(workdir: str | os.PathLike) -> str:
  return os.path.join(os.fspath(workdir), METRICS_FILENAME)


def _to_number(name: str, value: Any) -> int | float:
  """A Python int or float from a number, numpy scalar or 0-d array; ValueError otherwise."""
  arr = np.asarray(value)
  if arr.ndim != 0 or arr.dtype.kind not in 'biuf':
    raise ValueError(f'scalars[{name!r}]={value!r}: expected a real number (int or float)')
  if arr.dtype.kind in 'biu':
    return int(arr)
  return float(arr)


def _encode_json_value(value: int | float) -> int | float | str:
  if isinstance(value, float) and not math.isfinite(value):
    return _NON_FINITE_TO_STR[repr(value)]
  return value


def to_json_safe(obj: Any) -> Any:
  """`obj` with every non-finite float spelled as in `metrics.jsonl` (`"nan"`, `"inf"`, `"-inf"`).

  Dicts, lists and tuples are walked; the result is valid strict JSON where `obj` holds numbers.
  """
  if isinstance(obj, dict):
    return {k: to_json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_json_safe(v) for v in obj]
  return _encode_json_value(obj)


def from_json_safe(obj: Any) -> Any:
  """The inverse of `to_json_safe`: `"nan"`, `"inf"` and `"-inf"` become floats again."""
  if isinstance(obj, dict):
    return {k: from_json_safe(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [from_json_safe(v) for v in obj]
  return _decode_json_value(obj)


def _decode_json_value(value: Any) -> Any:
  if isinstance(value, str) and value in _STR_TO_NON_FINITE:
    return _STR_TO_NON_FINITE[value]
  return value


def _read_lines(path: str) -> list[tuple[str, dict[str, Any]]]:
  """The complete lines of a metrics file with their parsed objects.

  A last line without its newline is a write cut short by a kill and is dropped; any other line
  that is not a JSON object raises ValueError.
  """
  with open(path, 'r', encoding='utf-8') as f:
    text = f.read()
  lines = text.split('\n')
  # After split, the element past the last '\n' is '' for a complete file, or a torn write.
  complete = lines[:-1]
  out = []
  for number, line in enumerate(complete, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: line {number} is not JSON ({e.msg}): {line[:80]!r}') from None
    if not isinstance(record, dict):
      raise ValueError(f'{path}: line {number} is not a JSON object: {line[:80]!r}')
    out.append((line, record))
  return out


def new_file_mode() -> int:
  """The permissions `open(path, 'w')` gives a new file under the current umask (0o666 & ~umask),
  for files made by `tempfile.mkstemp`, which are owner-only."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def replace_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same directory and `os.replace`.

  The file gets the permissions a new file usually gets (`new_file_mode`).
  """
  directory = os.path.dirname(path) or '.'
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.',
                                  suffix='.tmp')
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      os.fchmod(f.fileno(), new_file_mode())
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads `workdir/metrics.jsonl` back, one dict per logged step, in file order.

  Args:
    workdir: the run's directory.

  Returns:
    The logged objects, `{'step': int, name: value, ...}`, with `"nan"`, `"inf"` and `"-inf"`
    turned back into floats. An empty list if the file does not exist. A torn last line (a run
    killed mid-write) is skipped.

  Raises:
    ValueError: a complete line is not a JSON object.
  """
  path = _metrics_path(workdir)
  if not os.path.exists(path):
    return []
  return [{k: _decode_json_value(v) for k, v in record.items()}
          for _, record in _read_lines(path)]


def truncate_metrics_after(workdir: str | os.PathLike, step: int) -> int:
  """Keeps only the lines of `workdir/metrics.jsonl` whose `'step'` is `<= step`.

  Call it when a run resumes from its checkpoint at `step`, before opening a `MetricWriter`
  (which does it itself when given `resume_step`): what a killed run logged after its last
  checkpoint is logged again by the resumed run, and each step should appear once. The file is
  rewritten through a temporary file and `os.replace`, so a kill during the rewrite leaves either
  the old or the new file. Kept lines are copied byte for byte; lines without a `'step'` are kept.
  A torn last line is dropped.

  Args:
    workdir: the run's directory.
    step: the step of the checkpoint the run resumes from.

  Returns:
    The number of lines removed (0 if the file does not exist).
  """
  step = int(step)
  path = _metrics_path(workdir)
  if not os.path.exists(path):
    return 0
  with open(path, 'r', encoding='utf-8') as f:
    total_lines = sum(1 for line in f if line.strip())
  kept = [line for line, record in _read_lines(path)
          if not isinstance(record.get('step'), (int, float)) or record['step'] <= step]
  removed = total_lines - len(kept)
  if removed:
    replace_atomically(path, ''.join(line + '\n' for line in kept))
  return removed


def _drop_torn_last_line(path: str) -> None:
  """Rewrites `path` without a last line that lacks its newline, so appends start a new line."""
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    return
  with open(path, 'rb') as f:
    f.seek(-1, os.SEEK_END)
    if f.read(1) == b'\n':
      return
  replace_atomically(path, ''.join(line + '\n' for line, _ in _read_lines(path)))


class MetricWriter:
  """Writes scalars to `metrics.jsonl` and TensorBoard, and images to TensorBoard.

  Only the chief process writes (and creates `workdir`); on other processes every method is a
  no-op, so all processes can run the same loop. Opening a writer on a workdir that already has a
  `metrics.jsonl` appends to it. Use it as a context manager, or call `close()`.

  Example:

    with MetricWriter(workdir, is_chief=jax.process_index() == 0) as writer:
      writer.write_scalars(step, {'train/g_loss': 0.12, 'train/d_loss': 0.69})
      writer.write_images(step, {'samples/grid': grid})
  """

  def __init__(self, workdir: str | os.PathLike, *, is_chief: bool = True,
               resume_step: Optional[int] = None):
    """Opens the writers (on the chief only).

    Args:
      workdir: the run's directory, created if missing.
      is_chief: whether this process writes; typically `jax.process_index() == 0`.
      resume_step: the step of the checkpoint a resumed run restarts from, or None for a new run.
        If given, lines with `'step' > resume_step` are removed from `metrics.jsonl` and
        TensorBoard is told to discard events with a step above `resume_step` (tensorboardX's
        `purge_step`), so steps logged after the checkpoint by a killed run appear once.
    """
    self._workdir = os.fspath(workdir)
    self._is_chief = bool(is_chief)
    self._closed = False
    self._file: Optional[TextIO] = None
    self._summary_writer = None
    if not self._is_chief:
      return
    if resume_step is not None and int(resume_step) < 0:
      raise ValueError(f'resume_step={resume_step}: expected a step >= 0 or None')
    os.makedirs(self._workdir, exist_ok=True)
    path = _metrics_path(self._workdir)
    if resume_step is not None:
      truncate_metrics_after(self._workdir, resume_step)
    _drop_torn_last_line(path)
    self._file = open(path, 'a', encoding='utf-8')
    # Imported here so that non-chief processes never load it.
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    # tensorboardX names event files by the second and host and opens them with 'wb'. The suffix
    # keeps two writers opened within one second from overwriting each other's file, and its
    # nanosecond time sorts their files in the order they were opened, which TensorBoard's
    # reading (and `purge_step`) relies on.
    self._summary_writer = SummaryWriter(
        logdir=self._workdir,
        purge_step=None if resume_step is None else int(resume_step) + 1,
        flush_secs=_TENSORBOARD_FLUSH_SECS,
        filename_suffix=f'.{time.time_ns()}.{os.getpid()}')

  @property
  def workdir(self) -> str:
    return self._workdir

  @property
  def is_chief(self) -> bool:
    return self._is_chief

  def _check_open(self) -> None:
    if self._closed:
      raise RuntimeError(f'MetricWriter for {self._workdir!r} is closed')

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Appends `{'step': step, **scalars}` to `metrics.jsonl` and each scalar to TensorBoard.

    Args:
      step: the training step, an int >= 0.
      scalars: name -> host number (Python or numpy scalar). Names may contain '/', which
        TensorBoard uses to group plots ('train/g_loss', 'eval/psnr'). Ints stay ints in
        `metrics.jsonl`; everything else is written as a float. Pass host numbers: converting a
        device array here would wait for the device.

    Raises:
      ValueError: `step` is negative or not an int, a name is 'step' or empty, or a value is not
        a real number.
    """
    if not self._is_chief:
      return
    self._check_open()
    step = _check_step(step)
    record: dict[str, int | float] = {}
    for name, value in scalars.items():
      if not isinstance(name, str) or not name or name == 'step':
        raise ValueError(f"scalars: bad name {name!r}; expected a non-empty string other than "
                         "'step'")
      record[name] = _to_number(name, value)
    line = json.dumps({'step': step, **{k: _encode_json_value(v) for k, v in record.items()}},
                      sort_keys=True, allow_nan=False)
    self._file.write(line + '\n')
    # Flushed per call so that a killed run keeps every step it logged.
    self._file.flush()
    for name in sorted(record):
      self._summary_writer.add_scalar(name, float(record[name]), step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Writes images to TensorBoard.

    Args:
      step: the training step, an int >= 0.
      images: name -> uint8 image `[H, W, 3]` (see `evaluation.visualize`).

    Raises:
      ValueError: an image is not uint8 `[H, W, 3]`.
    """
    if not self._is_chief:
      return
    self._check_open()
    step = _check_step(step)
    for name, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f'images[{name!r}]: dtype {image.dtype}, shape {image.shape}; expected '
                         'uint8 [H, W, 3]')
      self._summary_writer.add_image(name, image, step, dataformats='HWC')

  def flush(self) -> None:
    """Pushes buffered TensorBoard events (and metrics lines) to disk."""
    if not self._is_chief or self._closed:
      return
    self._file.flush()
    self._summary_writer.flush()

  def close(self) -> None:
    """Flushes and closes the files; further writes raise RuntimeError. Safe to call twice."""
    if self._closed:
      return
    self._closed = True
    if self._file is not None:
      self._file.close()
    if self._summary_writer is not None:
      self._summary_writer.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _check_step(step: Any) -> int:
  if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
    raise ValueError(f'step={step!r}: expected an int >= 0')
  return int(step)


# A log (not a terminal) gets a line when this long has passed or the run crossed one of this many
# evenly spaced marks (10%, 20%, ...).
_LOG_INTERVAL_S = 30.0
_LOG_MARKS = 10


def _format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{secs:02d}'


def _format_rate(rate: float) -> str:
  if rate >= 100:
    return f'{rate:.0f}'
  if rate >= 10:
    return f'{rate:.1f}'
  return f'{rate:.2f}'


def _format_scalar(value: Any) -> str:
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  return f'{float(value):.4g}'


class ProgressLine:
  """One line of progress: step/total, percent, steps/s, ETA and a few scalars.

    1200/10000 (12.0%) | 5.31 steps/s | ETA 0:27:37 | g_loss=0.0123 psnr=24.1

  Steps/s is measured between consecutive printed lines. The first `update()` only starts the
  clock: the loop calls it after its first step, whose time is mostly compilation, so that step
  never enters a rate; its line shows no rate or ETA.

  When to print:
    * On a terminal (`stream.isatty()`), the line is redrawn in place with '\\r' at most every
      `min_interval_s` seconds.
    * Otherwise (log files, CI), each print is a full line, written when at least
      `min_interval_s` has passed since the previous one and either 30 s have passed or the run
      crossed a 10% mark (10%, 20%, ... of `total_steps`) since then; a run logs about ten
      lines plus one per 30 s.
    * The first update and the step `total_steps` are always printed; `close()` prints the latest
      update if it was not printed yet, then ends the line.

  Pure host code: pass Python numbers, not device arrays (converting one would wait for the
  device).
  """

  def __init__(self, total_steps: int, *, start_step: int = 0, stream: Optional[TextIO] = None,
               min_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
    """Sets up the line; prints nothing yet.

    Args:
      total_steps: the step at which the run ends, > 0.
      start_step: the step the run starts (or resumes) from, in `[0, total_steps]`.
      stream: where to print; None means `sys.stderr`.
      min_interval_s: the least time between two printed lines, >= 0.
      clock: returns the time in seconds; `time.monotonic` unless a test drives it.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) \
        or total_steps <= 0:
      raise ValueError(f'total_steps={total_steps!r}: expected an int > 0')
    if (isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer))
        or not 0 <= start_step <= total_steps):
      raise ValueError(f'start_step={start_step!r}: expected an int in [0, {total_steps}]')
    if min_interval_s < 0:
      raise ValueError(f'min_interval_s={min_interval_s!r}: expected a number >= 0')
    self._total = int(total_steps)
    self._start_step = int(start_step)
    self._stream = sys.stderr if stream is None else stream
    self._min_interval_s = float(min_interval_s)
    self._clock = clock
    self._tty = _is_tty(self._stream)
    # (time, step) of the last printed line, from which the next rate is measured.
    self._ref: Optional[tuple[float, int]] = None
    self._last_printed_step = self._start_step
    self._pending: Optional[tuple[float, int, Optional[Mapping[str, Any]]]] = None
    self._drawn_width = 0
    self._line_open = False
    self._closed = False

  def update(self, step: int, scalars: Optional[Mapping[str, float]] = None) -> None:
    """Records that `step` is done; prints if it is time to (see the class docstring).

    Args:
      step: the last completed step, in `[start_step, total_steps]`.
      scalars: name -> host number, shown as `name=value` with 4 significant digits.
    """
    if self._closed:
      raise RuntimeError('ProgressLine is closed')
    if (isinstance(step, bool) or not isinstance(step, (int, np.integer))
        or not self._start_step <= step <= self._total):
      raise ValueError(f'step={step!r}: expected an int in [{self._start_step}, {self._total}]')
    now = self._clock()
    step = int(step)
    if self._ref is None or step == self._total or self._is_due(now, step):
      self._print(now, step, scalars)
    else:
      self._pending = (now, step, scalars)

  def _is_due(self, now: float, step: int) -> bool:
    elapsed = now - self._ref[0]
    if elapsed < self._min_interval_s:
      return False
    if self._tty:
      return True
    crossed_mark = (step * _LOG_MARKS // self._total
                    > self._last_printed_step * _LOG_MARKS // self._total)
    return elapsed >= _LOG_INTERVAL_S or crossed_mark

  def _print(self, now: float, step: int, scalars: Optional[Mapping[str, Any]]) -> None:
    parts = [f'{step}/{self._total} ({100.0 * step / self._total:.1f}%)']
    if self._ref is not None:
      ref_time, ref_step = self._ref
      if now > ref_time and step > ref_step:
        rate = (step - ref_step) / (now - ref_time)
        parts.append(f'{_format_rate(rate)} steps/s')
        parts.append(f'ETA {_format_duration((self._total - step) / rate)}')
    if scalars:
      parts.append(' '.join(f'{k}={_format_scalar(v)}' for k, v in scalars.items()))
    line = ' | '.join(parts)
    if self._tty:
      # Spaces wipe what a longer previous line left on the terminal.
      self._stream.write('\r' + line + ' ' * max(0, self._drawn_width - len(line)))
      self._drawn_width = len(line)
      self._line_open = True
    else:
      self._stream.write(line + '\n')
    self._stream.flush()
    self._ref = (now, step)
    self._last_printed_step = step
    self._pending = None

  def close(self) -> None:
    """Prints the latest update if it was not printed, and ends the line. Safe to call twice."""
    if self._closed:
      return
    if self._pending is not None:
      self._print(*self._pending)
    if self._line_open:
      self._stream.write('\n')
      self._stream.flush()
      self._line_open = False
    self._closed = True

  def __enter__(self) -> 'ProgressLine':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _is_tty(stream: TextIO) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):
    return False
