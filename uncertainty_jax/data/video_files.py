"""Chapter 4 on a folder of video files: decoding, a per-file frame cache, splits, patch sampling.

`VideoFilesDataset` trains on and evaluates with any folder of videos (`.avi`, `.mp4`, `.mkv`,
`.webm`, ...), UCF101's raw release included:

* Decoding. OpenCV's `VideoCapture` (its wheels bundle FFmpeg, and OpenCV is already the
  project's optical-flow library, so no second decoder is needed) reads each file once; frames
  become RGB, every `frame_stride`-th is kept, and they are resized so that their short side is
  `short_side` (area interpolation when shrinking, bilinear when growing; 0 keeps the native
  size). Grayscale videos come out with three equal channels.
* Cache. The decoded frames of a file are stored as one uint8 `.npy` file `[T, H, W, 3]` under
  `cache_dir`, named by a hash of the file's absolute path, size, modification time and the
  decoding settings, and read back memory-mapped: later epochs and runs read frames at disk speed.
  A cache file is written under a temporary name and renamed when complete, so an interrupted write
  is never read; a cache file that does not load whole is decoded again.
* Split. By file: either a stable hash of the path relative to `video_dir` (a file is a test file
  when the hash falls below `test_fraction`), or a split list `split_file` in UCF101's format (one
  relative path per line, optionally followed by a class index: `testlist01.txt`): the listed
  files are the test files and every other file trains, unless `train_split_file`
  (`trainlist01.txt`) restricts training to its list. Test files are taken in sorted order, every
  `test_every`-th starting at the first, at most `num_test_clips` of them; the thesis' UCF101
  protocol (footnote 1 of 4.3) is split 1 with `test_every=10`.
* Test clips are the first `num_input_frames + test_future_frames` frames of each test file at
  full frame (after the short-side resize), centre-cropped to a multiple of `size_multiple` (the
  generator's coarsest scale), and batched with clips of the same size.
* Training patches. Each row of a batch draws up to `patch_tries` candidates (a file, weighted by
  its number of clips, a start frame and a patch position) and keeps the first whose motion
  (the root mean square of the differences between successive frames, in [-1, 1] units) exceeds
  `motion_threshold`; if none does, the one with the most motion. This is the thesis' selection of
  patches by the L2 distance between successive frames (4.3). Every draw comes from a generator
  seeded with `(seed, step, process, row)`, so a batch is a pure function of its step and a resumed
  run sees the batches an uninterrupted one would.

Files that cannot be read, that are too short (fewer than `num_input_frames + 1` frames for
training, `num_input_frames + test_future_frames` for testing) or too small for a training patch
are skipped with one warning that names them. Multi-host: each process decodes and samples from
its share of the training files (every `process_count`-th); every process reads the test clips.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import numbers
import os
import shutil
import threading
import time
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from absl import logging

from uncertainty_jax.data import base

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ogv", ".3gp")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Bumped when the cache's contents change meaning, so that old entries are not reused.
_CACHE_VERSION = 1
# Memory maps held open at once; each holds a file descriptor.
_OPEN_MAPS = 128
# np.load parses the `.npy` header with ast.literal_eval, and CPython 3.11's compiler is not safe
# to enter from several threads at once (it can raise "SystemError: AST constructor recursion
# depth mismatch", CPython gh-106905); the probing threads take turns at it.
_NPY_HEADER_LOCK = threading.Lock()
_LOG_EVERY_S = 5.0


class VideoReadError(ValueError):
  """A video file or image folder that cannot be read."""


def default_cache_dir() -> str:
  """`$XDG_CACHE_HOME/uncertainty_jax/video_files`, or `~/.cache/...` without the variable."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "uncertainty_jax", "video_files")


def _check_int(name: str, value: Any, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
  return int(value)


def _check_frames_args(short_side: int, frame_stride: int, max_frames: int | None) -> None:
  _check_int("short_side", short_side, 0)
  _check_int("frame_stride", frame_stride, 1)
  if max_frames is not None:
    _check_int("max_frames", max_frames, 1)


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
  """Resizes `[H, W, C]` uint8 so that `min(H, W) == short_side` (0 or equal: unchanged)."""
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = frame.shape[:2]
  if short_side == 0 or min(h, w) == short_side:
    return frame
  scale = short_side / min(h, w)
  size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))  # cv2: (W, H)
  interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
  return cv2.resize(frame, size, interpolation=interpolation)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
  """An OpenCV frame (BGR, BGRA or grayscale, 8 or 16 bit) -> uint8 RGB `[H, W, 3]`."""
  import cv2  # pylint: disable=g-import-not-at-top
  if frame.dtype == np.uint16:
    frame = (frame // 257).astype(np.uint8)
  elif frame.dtype != np.uint8:
    raise VideoReadError(f"unsupported sample type {frame.dtype}")
  if frame.ndim == 2 or frame.shape[2] == 1:
    return np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
  if frame.shape[2] == 4:
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
  return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def iter_video(path: str, *, short_side: int = 0, frame_stride: int = 1,
               max_frames: int | None = None) -> Iterator[np.ndarray]:
  """Decodes a video file with OpenCV, one frame at a time.

  Args:
    path: a video file OpenCV's FFmpeg backend reads (avi, mp4, mkv, webm, ...).
    short_side: resize every frame so its short side has this many pixels; 0 keeps the size.
    frame_stride: keep frames 0, stride, 2 * stride, ...
    max_frames: stop after this many kept frames; None reads to the end.

  Yields:
    `[H, W, 3]` uint8 RGB frames, all of one size.

  Raises:
    VideoReadError: the file does not open, has no decodable frame, or changes frame size.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  _check_frames_args(short_side, frame_stride, max_frames)
  capture = cv2.VideoCapture(os.fspath(path))
  try:
    if not capture.isOpened():
      raise VideoReadError(f"{path}: not a video OpenCV can open")
    kept, index, shape = 0, 0, None
    while max_frames is None or kept < max_frames:
      try:
        if index % frame_stride:
          ok, frame = capture.grab(), None  # skipped frames are not converted
        else:
          ok, frame = capture.read()
      except cv2.error as e:
        raise VideoReadError(f"{path}: decoding failed at frame {index} ({e})") from None
      if not ok:
        break
      index += 1
      if frame is None:
        continue
      frame = resize_short_side(_to_rgb(frame), short_side)
      if shape is not None and frame.shape != shape:
        raise VideoReadError(f"{path}: the frame size changes mid-stream ({shape} then "
                             f"{frame.shape})")
      shape = frame.shape
      kept += 1
      yield frame
    if not kept:
      raise VideoReadError(f"{path}: no frame could be decoded")
  finally:
    capture.release()


def read_video(path: str, **kwargs) -> np.ndarray:
  """All the frames `iter_video(path, **kwargs)` yields, `[T, H, W, 3]` uint8 RGB."""
  return np.stack(list(iter_video(path, **kwargs)))


def read_image_folder(path: str, *, short_side: int = 0, frame_stride: int = 1,
                      max_frames: int | None = None) -> np.ndarray:
  """Reads the images of a folder (sorted by name) as the frames of one clip.

  Args: as `read_video`; `path` is a folder of images (`IMAGE_EXTENSIONS`) of one size.

  Returns:
    `[T, H, W, 3]` uint8 RGB.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  _check_frames_args(short_side, frame_stride, max_frames)
  names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
  names = names[::frame_stride][:max_frames]
  if not names:
    raise VideoReadError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
  frames = []
  for name in names:
    image = cv2.imread(os.path.join(path, name), cv2.IMREAD_UNCHANGED)
    if image is None:
      raise VideoReadError(f"{os.path.join(path, name)}: not an image OpenCV can read")
    frames.append(resize_short_side(_to_rgb(image), short_side))
  shapes = sorted({f.shape for f in frames})
  if len(shapes) > 1:
    raise VideoReadError(f"{path}: the images differ in size ({shapes[:2]}); expected one size")
  return np.stack(frames)


def read_frames(path: str, **kwargs) -> np.ndarray:
  """`read_image_folder` for a folder, `read_video` for a file; same arguments and result."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    return read_image_folder(path, **kwargs)
  if not os.path.exists(path):
    raise VideoReadError(f"{path}: no such file or folder")
  return read_video(path, **kwargs)


def to_unit_range(frames: np.ndarray) -> np.ndarray:
  """uint8 frames -> float32 in [-1, 1]."""
  return np.asarray(frames, np.float32) / 127.5 - 1.0


def to_uint8(frames: np.ndarray) -> np.ndarray:
  """Frames in [-1, 1] -> uint8, rounding to the nearest level."""
  return np.round((np.clip(np.asarray(frames, np.float32), -1.0, 1.0) + 1.0) * 127.5
                  ).astype(np.uint8)


def find_videos(video_dir: str) -> tuple[str, list[str]]:
  """The video files named by `video_dir`, a folder (searched recursively) or a glob pattern.

  Returns:
    `(root, relative_paths)`: the folder paths are relative to (the folder itself, or the longest
    folder prefix of the pattern), and the sorted relative paths (POSIX separators) of the files
    whose extension is in `VIDEO_EXTENSIONS`, case-insensitively.

  Raises:
    ValueError: nothing matches; the message names what was searched and the extensions.
  """
  if not isinstance(video_dir, str) or not video_dir:
    raise ValueError(f"video_dir={video_dir!r}: expected a folder of videos or a glob pattern; set "
                     f"--config.video_dir=PATH")
  expanded = os.path.expanduser(video_dir)
  if glob.has_magic(expanded):
    root = expanded
    while glob.has_magic(root):
      root = os.path.dirname(root)
    root = os.path.abspath(root or ".")
    paths = [p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p)]
    what = f"files matching {video_dir!r}"
  elif os.path.isdir(expanded):
    root = os.path.abspath(expanded)
    paths, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
      # Linked folders are followed once each, so a link loop does not repeat them.
      seen.add(os.path.realpath(folder))
      subfolders[:] = sorted(d for d in subfolders
                             if os.path.realpath(os.path.join(folder, d)) not in seen)
      paths.extend(os.path.join(folder, n) for n in names)
    what = f"{root} (recursively)"
  else:
    raise ValueError(f"video_dir={video_dir!r}: no such folder, and not a glob pattern; give a "
                     f"folder of videos (searched recursively for {', '.join(VIDEO_EXTENSIONS)}) "
                     f"or a glob")
  relative = sorted(os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/") for p in paths
                    if p.lower().endswith(VIDEO_EXTENSIONS))
  if not relative:
    raise ValueError(f"video_dir: no video file in {what}; a video file ends in one of "
                     f"{', '.join(VIDEO_EXTENSIONS)} (any case)")
  return root, relative


def read_split_list(path: str) -> list[str]:
  """The relative paths of a split list in UCF101's format (`path [class]` per line)."""
  try:
    with open(os.path.expanduser(path)) as f:
      lines = f.read().splitlines()
  except OSError as e:
    raise ValueError(f"split_file={path!r}: cannot read it ({e.strerror or e})") from None
  entries = [line.split()[0].replace("\\", "/") for line in lines if line.strip()]
  if not entries:
    raise ValueError(f"split_file={path!r}: the list is empty; expected one video path per line")
  return entries


def hash_fraction(relative_path: str) -> float:
  """A stable number in [0, 1) from a relative path (SHA-1, not Python's salted hash)."""
  digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _match_list(entries: Sequence[str], files: Sequence[str], list_path: str) -> list[str]:
  """The files a split list names, by relative path or, failing that, by base name."""
  by_path = set(files)
  by_name = collections.defaultdict(list)
  for f in files:
    by_name[os.path.basename(f)].append(f)
  chosen, missing = [], []
  for entry in entries:
    while entry.startswith("./"):
      entry = entry[2:]
    if entry in by_path:
      chosen.append(entry)
    elif len(by_name.get(os.path.basename(entry), [])) == 1:
      chosen.append(by_name[os.path.basename(entry)][0])
    else:
      missing.append(entry)
  if not chosen:
    raise ValueError(f"split_file={list_path!r}: none of its {len(entries)} entries (e.g. "
                     f"{entries[0]!r}) is a video found under video_dir")
  if missing:
    logging.warning("split list %s: %d of %d listed videos are not under video_dir (e.g. %s)",
                    list_path, len(missing), len(entries), ", ".join(missing[:3]))
  return sorted(set(chosen))


def split_files(files: Sequence[str], *, test_fraction: float, split_file: str = "",
                train_split_file: str = "") -> tuple[list[str], list[str]]:
  """Splits relative paths into `(train, test)`, both sorted; see the module docstring."""
  if split_file:
    test = _match_list(read_split_list(split_file), files, split_file)
    test_set = set(test)
    if train_split_file:
      train = [f for f in _match_list(read_split_list(train_split_file), files, train_split_file)
               if f not in test_set]
    else:
      train = [f for f in files if f not in test_set]
  else:
    if train_split_file:
      raise ValueError("train_split_file: given without split_file; give the test list as "
                       "split_file too")
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
        or not 0 <= test_fraction < 1):
      raise ValueError(f"test_fraction={test_fraction!r}: expected a number in [0, 1)")
    test = [f for f in files if hash_fraction(f) < test_fraction]
    train = [f for f in files if hash_fraction(f) >= test_fraction]
  return sorted(train), sorted(test)


class FrameCache:
  """Decoded videos stored as uint8 `.npy` files and read back memory-mapped.

  Args:
    cache_dir: where the `.npy` files go (created on first write).
    short_side, frame_stride: the decoding settings (see `read_video`); part of each entry's key.
  """

  def __init__(self, cache_dir: str, *, short_side: int, frame_stride: int):
    if not isinstance(cache_dir, str) or not cache_dir:
      raise ValueError(f"cache_dir={cache_dir!r}: expected a folder path")
    _check_frames_args(short_side, frame_stride, None)
    self.directory = os.path.abspath(os.path.expanduser(cache_dir))
    self.short_side = short_side
    self.frame_stride = frame_stride
    # Decodes this instance attempted (failed ones included; the rest came from the cache).
    self.decoded = 0
    self._maps: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    self._lock = threading.Lock()  # decoding threads share the map table and the count

  def path(self, video_path: str, max_frames: int | None = None) -> str:
    """The cache file of `video_path` (which must exist) under the current settings."""
    stat = os.stat(video_path)
    key = (f"{_CACHE_VERSION}|{os.path.abspath(video_path)}|{stat.st_size}|{stat.st_mtime_ns}|"
           f"{self.short_side}|{self.frame_stride}|{max_frames}")
    name = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return os.path.join(self.directory, f"{name}.npy")

  def _load(self, cache_path: str) -> np.ndarray | None:
    """The memory-mapped entry, or None when it is missing or does not load whole."""
    if not os.path.exists(cache_path):
      return None
    try:
      with _NPY_HEADER_LOCK:
        frames = np.load(cache_path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
      logging.warning("frame cache: %s is damaged; decoding its video again", cache_path)
      return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      logging.warning("frame cache: %s holds %s %s, not uint8 [T, H, W, 3]; decoding again",
                      cache_path, frames.dtype, frames.shape)
      return None
    return frames

  def _write(self, cache_path: str, frames: Iterator[np.ndarray]) -> None:
    """Streams decoded frames to `cache_path`: raw bytes first (memory stays one frame), then
    the `.npy` header and the bytes under a temporary name, renamed when complete."""
    os.makedirs(self.directory, exist_ok=True)
    tmp = f"{cache_path}.partial-{os.getpid()}-{os.urandom(4).hex()}"
    count, shape = 0, None
    try:
      with open(f"{tmp}.raw", "wb") as raw:
        for frame in frames:
          raw.write(np.ascontiguousarray(frame, np.uint8).tobytes())
          count, shape = count + 1, frame.shape
      with open(f"{tmp}.raw", "rb") as raw, open(tmp, "wb") as out:
        header = {"descr": "|u1", "fortran_order": False, "shape": (count, *shape)}
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(raw, out, 1 << 24)
        out.flush()
        os.fsync(out.fileno())
      os.replace(tmp, cache_path)
    finally:
      for leftover in (tmp, f"{tmp}.raw"):
        if os.path.exists(leftover):
          os.remove(leftover)

  def frames(self, video_path: str, max_frames: int | None = None) -> np.ndarray:
    """`[T, H, W, 3]` uint8 frames of `video_path`, decoded (and cached) on first use.

    Raises:
      VideoReadError: the video cannot be read.
    """
    cache_path = self.path(video_path, max_frames)
    with self._lock:
      if cache_path in self._maps:
        self._maps.move_to_end(cache_path)
        return self._maps[cache_path]
    frames = self._load(cache_path)
    if frames is None:
      decode = functools.partial(iter_video, video_path, short_side=self.short_side,
                                 frame_stride=self.frame_stride, max_frames=max_frames)
      with self._lock:
        self.decoded += 1
      try:
        self._write(cache_path, decode())
        frames = self._load(cache_path)
      except OSError as e:
        logging.warning("frame cache: cannot write %s (%s); the video is kept in memory",
                        cache_path, e.strerror or e)
        frames = None
      if frames is None:
        frames = np.stack(list(decode()))
    with self._lock:
      self._maps[cache_path] = frames
      while len(self._maps) > _OPEN_MAPS:
        self._maps.popitem(last=False)
    return frames

  def shape(self, video_path: str, max_frames: int | None = None) -> tuple[int, ...]:
    """The shape of `frames(video_path, max_frames)`, decoding it only if it is not cached."""
    return tuple(self.frames(video_path, max_frames).shape)


@dataclasses.dataclass(frozen=True)
class _Clip:
  """One usable video: its path relative to the root and the shape of its decoded frames."""
  path: str
  shape: tuple[int, int, int, int]


def _plural(n: int, word: str) -> str:
  return f"{n} {word}{'' if n == 1 else 's'}"


class VideoFilesDataset(base.ClipLengths, base.VideoDataset):
  """Training patches and full-frame test clips from a folder of videos; see the module docstring.

  Args:
    video_dir: a folder (searched recursively) or a glob pattern.
    seed: seeds the patch sampler.
    batch_size: global training batch size, a multiple of `jax.process_count()`.
    num_input_frames: frames given to the model; a training clip has one more.
    image_size: side of the square training patches.
    num_test_clips: at most this many test clips.
    test_future_frames: frames after the inputs in a test clip.
    sharding: the batch sharding of training batches.
    short_side: the short side of decoded frames; 0 keeps the native size.
    frame_stride: keep every `frame_stride`-th frame.
    test_fraction: the share of files held out for testing when there is no split list.
    split_file: a list of test files (UCF101 `testlist01.txt` format), '' for the hash split.
    train_split_file: with `split_file`, a list of training files ('' : every unlisted file).
    test_every: keep every `test_every`-th test file in sorted order, from the first.
    size_multiple: test frames are centre-cropped to a multiple of this in height and width.
    motion_threshold: RMS difference between successive frames ([-1, 1] units) a training patch
      must exceed.
    patch_tries: candidates drawn per training patch before the most moving one is taken.
    cache_dir: the frame cache; '' for `default_cache_dir()`.
    num_workers: decoding threads; 0 for one per CPU.
  """

  def __init__(self, *, video_dir: str, seed: int, batch_size: int, num_input_frames: int,
               image_size: int, num_test_clips: int, test_future_frames: int,
               sharding: jax.sharding.Sharding, short_side: int = 240, frame_stride: int = 1,
               test_fraction: float = 0.1, split_file: str = "", train_split_file: str = "",
               test_every: int = 1, size_multiple: int = 1, motion_threshold: float = 0.02,
               patch_tries: int = 10, cache_dir: str = "", num_workers: int = 0):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
      raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    self._seed = int(seed)
    self._batch_size = _check_int("batch_size", batch_size, 1)
    self._num_input_frames = _check_int("num_input_frames", num_input_frames, 1)
    self._image_size = _check_int("image_size", image_size, 1)
    self._num_test_clips = _check_int("num_test_clips", num_test_clips, 1)
    self._test_future_frames = _check_int("test_future_frames", test_future_frames, 1)
    self._test_every = _check_int("test_every", test_every, 1)
    self._size_multiple = _check_int("size_multiple", size_multiple, 1)
    self._patch_tries = _check_int("patch_tries", patch_tries, 1)
    num_workers = _check_int("num_workers", num_workers, 0)
    _check_frames_args(short_side, frame_stride, None)
    if 0 < short_side < image_size:
      raise ValueError(f"short_side={short_side}: expected 0 (native size) or at least "
                       f"image_size ({image_size})")
    if (isinstance(motion_threshold, bool) or not isinstance(motion_threshold, numbers.Real)
        or not motion_threshold >= 0):
      raise ValueError(f"motion_threshold={motion_threshold!r}: expected a number >= 0")
    self._motion_threshold = float(motion_threshold)
    if not isinstance(sharding, jax.sharding.Sharding):
      raise ValueError(f"sharding={sharding!r}: expected a jax.sharding.Sharding")
    self._sharding = sharding
    self._process_index = jax.process_index()
    self._process_count = jax.process_count()
    if self._batch_size % self._process_count:
      raise ValueError(f"batch_size={batch_size}: expected a multiple of the process count "
                       f"{self._process_count}")
    self._per_process_batch = self._batch_size // self._process_count

    self.root, files = find_videos(video_dir)
    train, test = split_files(files, test_fraction=test_fraction, split_file=split_file,
                              train_split_file=train_split_file)
    if not train:
      raise ValueError(f"video_dir: none of the {len(files)} videos under {self.root} is a "
                       f"training video (split: "
                       f"{split_file or f'test_fraction={test_fraction}'})")
    self.cache = FrameCache(cache_dir or default_cache_dir(), short_side=short_side,
                            frame_stride=frame_stride)
    self._workers = num_workers or os.cpu_count() or 1
    share = train[self._process_index::self._process_count]
    if not share:
      raise ValueError(f"video_dir: {len(train)} training videos cannot give each of "
                       f"{self._process_count} processes one")
    self.train_clips = self._usable(share, None, self.clip_length, "training")
    if not self.train_clips:
      raise ValueError(f"video_dir: no readable training video under {self.root} has "
                       f"{self.clip_length} frames of at least {image_size}x{image_size} "
                       f"pixels (tried {len(share)}; see the warnings above)")
    test = test[::self._test_every]
    self.test_clips = self._usable(test, self.test_clip_length, self.test_clip_length, "test")
    self.test_clips = self.test_clips[:self._num_test_clips]
    if not self.test_clips:
      how = (f"split_file {split_file}" if split_file else
             f"test_fraction={test_fraction} of {len(files)} files")
      raise ValueError(f"video_dir: no readable test video of at least {self.test_clip_length} "
                       f"frames (num_input_frames + test_future_frames) under {self.root}: "
                       f"{how} gave {len(test)} test files; raise test_fraction, give a "
                       f"split_file, or add videos")
    starts = np.array([c.shape[0] - self.clip_length + 1 for c in self.train_clips], np.float64)
    self._clip_weights = starts / starts.sum()
    logging.info("video_files: %s under %s, %s for training (this process), %s for testing, "
                 "frame cache %s", _plural(len(files), "video"), self.root,
                 len(self.train_clips), len(self.test_clips), self.cache.directory)

  # --- decoding ---------------------------------------------------------------------------------

  def _usable(self, relative: Sequence[str], max_frames: int | None, min_frames: int,
              role: str) -> list[_Clip]:
    """Decodes (or finds in the cache) each file; returns those usable for `role`, in order."""
    shapes: dict[str, Any] = {}
    started = last_log = time.time()

    def probe(rel):
      try:
        return self.cache.shape(os.path.join(self.root, rel), max_frames)
      except (VideoReadError, OSError) as e:
        return e

    with concurrent.futures.ThreadPoolExecutor(self._workers) as pool:
      for i, (rel, result) in enumerate(zip(relative, pool.map(probe, relative))):
        shapes[rel] = result
        now = time.time()
        if now - last_log > _LOG_EVERY_S:
          last_log = now
          logging.info("video_files: %d/%d %s videos ready (%.1f/s, %d decoded, the rest cached)",
                       i + 1, len(relative), role, (i + 1) / (now - started), self.cache.decoded)
    unreadable, short, small, clips = [], [], [], []
    for rel in relative:
      result = shapes[rel]
      if isinstance(result, Exception):
        unreadable.append(rel)
      elif result[0] < min_frames:
        short.append(rel)
      elif role == "training" and min(result[1:3]) < self._image_size:
        small.append(rel)
      elif role == "test" and min(result[1:3]) < self._size_multiple:
        small.append(rel)
      else:
        clips.append(_Clip(rel, result))
    problems = [(unreadable, "unreadable"), (short, f"shorter than {min_frames} frames"),
                (small, "too small")]
    for names, why in problems:
      if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        logging.warning("video_files: skipping %s (%s): %s", _plural(len(names), f"{role} video"),
                        why, shown)
    return clips

  # --- training ---------------------------------------------------------------------------------

  def _frames(self, clip: _Clip, max_frames: int | None = None) -> np.ndarray:
    return self.cache.frames(os.path.join(self.root, clip.path), max_frames)

  def sample_patch(self, step: int, row: int) -> np.ndarray:
    """The training patch of `row` (of this process' rows) at `step`: `[T, s, s, 3]` uint8."""
    rng = np.random.default_rng([self._seed, step, self._process_index, row])
    s, length = self._image_size, self.clip_length
    best, best_motion = None, -1.0
    for _ in range(self._patch_tries):
      clip = self.train_clips[rng.choice(len(self.train_clips), p=self._clip_weights)]
      t = int(rng.integers(clip.shape[0] - length + 1))
      y = int(rng.integers(clip.shape[1] - s + 1))
      x = int(rng.integers(clip.shape[2] - s + 1))
      patch = np.asarray(self._frames(clip)[t:t + length, y:y + s, x:x + s])
      motion = patch_motion(patch)
      if motion > best_motion:
        best, best_motion = patch, motion
      if motion > self._motion_threshold:
        break
    return best

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global training batch of `step`, `{'frames': [B, T, image_size, image_size, 3]}`."""
    base.check_step(step)
    rows = [self.sample_patch(int(step), r) for r in range(self._per_process_batch)]
    return base.make_global_batch({"frames": to_unit_range(np.stack(rows))}, self._sharding)

  # --- testing ----------------------------------------------------------------------------------

  def _test_frames(self, clip: _Clip) -> np.ndarray:
    """`[T_test, H', W', 3]` uint8: the first frames, centre-cropped to `size_multiple`."""
    frames = self._frames(clip, self.test_clip_length)[:self.test_clip_length]
    h, w = frames.shape[1:3]
    m = self._size_multiple
    top, left = (h % m) // 2, (w % m) // 2
    return np.asarray(frames[:, top:top + h - h % m, left:left + w - w % m])

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The test clips, `{'frames': [b, T_test, H, W, 3]}`, batched by frame size.

    Sizes come in the order of their first clip; within a size, clips keep the sorted file order.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    groups: dict[tuple[int, int], list[_Clip]] = {}
    m = self._size_multiple
    for clip in self.test_clips:
      groups.setdefault((clip.shape[1] - clip.shape[1] % m, clip.shape[2] - clip.shape[2] % m),
                        []).append(clip)
    for clips in groups.values():
      for i in range(0, len(clips), batch_size):
        chunk = clips[i:i + batch_size]
        yield {"frames": to_unit_range(np.stack([self._test_frames(c) for c in chunk]))}


def patch_motion(patch: np.ndarray) -> float:
  """The root mean square difference between successive frames of `[T, h, w, C]` uint8, in
  [-1, 1] units (a difference of 255 levels is 2)."""
  diff = np.diff(np.asarray(patch, np.float32), axis=0) / 127.5
  return float(np.sqrt(np.mean(np.square(diff)))) if diff.size else 0.0


def from_config(config: Any, sharding: jax.sharding.Sharding) -> VideoFilesDataset:
  """`VideoFilesDataset` from a chapter 4 config (`video_dir`, `video_short_side`, ...)."""
  return VideoFilesDataset(
      video_dir=config.video_dir, seed=config.seed, batch_size=config.batch_size,
      num_input_frames=config.num_input_frames, image_size=config.image_size,
      num_test_clips=config.num_test_clips, test_future_frames=config.test_future_frames,
      sharding=sharding, short_side=config.video_short_side, frame_stride=config.frame_stride,
      test_fraction=config.test_fraction, split_file=config.split_file,
      train_split_file=config.train_split_file, test_every=config.test_every,
      size_multiple=2 ** (config.num_scales - 1), motion_threshold=config.patch_motion_threshold,
      patch_tries=config.patch_tries, cache_dir=config.video_cache_dir)
