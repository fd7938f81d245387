"""Tests of the folder-of-videos dataset on small videos written with OpenCV's own encoders."""

import concurrent.futures
import hashlib
import json
import logging
import os
import shutil
import threading
import time

import cv2
import jax
import numpy as np
import pytest

from tests.conftest import run_main
from tests.conftest import tree_snapshot
from tests.conftest import xla_cache_env
from uncertainty_jax.data import video_files
from uncertainty_jax.training import sharding as sharding_lib

_SIZE = (72, 96)  # (H, W) of the moving-square videos
_NUM_FRAMES = 16
_SQUARE = 8
_SPEED = 2  # pixels per frame, to the right
_TOP, _LEFT = 8, 4

# The library folder, moving-square videos: path relative to its root -> codec. The hash split at
# test_fraction=0.3 puts ClassA's g02 and g03 (`_ODD`) and `_GRAY` in the test set (checked by the
# CLI test).
_MOVING = {
    "ClassA/v_ClassA_g01_c01.avi": "MJPG",
    "ClassA/v_ClassA_g02_c01.avi": "MJPG",
    "ClassB/v_ClassB_g01_c01.mp4": "mp4v",
    "ClassB/deep/er/v_ClassB_g02_c01.mkv": "XVID",
}
_GRAY = "Gray/v_Gray_g01_c01.avi"
_GRAY_SIZE = (48, 64)
# Not a multiple of 8 on either side. OpenCV's writer stores even sizes only; odd ones come from
# resizing (short_side=53 gives 53x75).
_ODD = "ClassA/v_ClassA_g03_c01.avi"
_ODD_SIZE = (52, 74)
_CORRUPT = "Bad/v_Bad_g01_c01.mp4"
_SHORT = "Short/v_Short_g01_c01.avi"
_UNUSABLE = (_CORRUPT, _SHORT)
_ALL = sorted([*_MOVING, _GRAY, _ODD, _CORRUPT, _SHORT])
_CONFIG = "--config=experiments/video_pred.py:tiny"


def _sharding():
  return sharding_lib.batch_sharding(sharding_lib.make_mesh())


def _write_video(path, frames, fourcc, is_color=True):
  """Writes `[T, H, W, 3]` RGB (or `[T, H, W]` grey) uint8 frames with cv2.VideoWriter."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  h, w = frames.shape[1:3]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h), is_color)
  assert writer.isOpened(), path
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[..., ::-1] if is_color else frame))
  writer.release()


def _background(shape, seed):
  """A static texture of 8x8 grey blocks (aligned with JPEG's blocks, so it survives encoding)."""
  h, w = shape
  rng = np.random.default_rng(seed)
  levels = rng.integers(40, 120, (-(-h // 8), -(-w // 8)))
  return np.repeat(np.kron(levels, np.ones((8, 8)))[:h, :w, None], 3, axis=2).astype(np.uint8)


def _square_left(t):
  return _LEFT + _SPEED * t


def _moving_frames(shape=_SIZE, num_frames=_NUM_FRAMES, seed=0):
  """`[T, H, W, 3]`: a white square moving `_SPEED` pixels per frame over a static texture."""
  video = np.repeat(_background(shape, seed)[None], num_frames, axis=0)
  for t in range(num_frames):
    video[t, _TOP:_TOP + _SQUARE, _square_left(t):_square_left(t) + _SQUARE] = 250
  return video


@pytest.fixture(scope="module", name="media")
def _media(tmp_path_factory):
  """Every test video: `lib/` (a small UCF101-like library), `many/`, `motion/` and loose files."""
  base = tmp_path_factory.mktemp("media")
  lib = base / "lib"
  written = {}
  for i, (rel, codec) in enumerate(sorted(_MOVING.items())):
    written[rel] = _moving_frames(seed=i)
    _write_video(lib / rel, written[rel], codec)
  rng = np.random.default_rng(7)
  gray = np.stack([np.kron(rng.integers(30, 220, (6, 8)), np.ones((8, 8))).astype(np.uint8)
                   for _ in range(12)])
  written[_GRAY] = gray
  _write_video(lib / _GRAY, gray, "MJPG", is_color=False)
  written[_ODD] = _moving_frames(_ODD_SIZE, 12, seed=9)
  _write_video(lib / _ODD, written[_ODD], "MJPG")
  written[_SHORT] = _moving_frames(num_frames=2, seed=10)
  _write_video(lib / _SHORT, written[_SHORT], "MJPG")
  os.makedirs(lib / "Bad")
  (lib / _CORRUPT).write_bytes(np.random.default_rng(3).bytes(5000))
  (lib / "ClassA" / "notes.txt").write_text("not a video")
  cv2.imwrite(str(lib / "ClassA" / "cover.png"), _background((16, 16), 1))

  # Seven test files and one training file, for test_every.
  many = base / "many"
  for i in range(7):
    _write_video(many / f"t{i}.avi", _moving_frames((48, 64), 8, seed=20 + i), "MJPG")
  _write_video(many / "train.avi", _moving_frames((48, 64), 8, seed=30), "MJPG")
  (base / "many_test.txt").write_text("".join(f"t{i}.avi\n" for i in range(7)))

  # One video where only a square in the top-left corner moves (mp4v keeps static blocks exact).
  motion = base / "motion"
  _write_video(motion / "moving.mp4", _moving_frames(seed=40), "mp4v")
  _write_video(motion / "still.mp4", np.repeat(_background(_SIZE, 41)[None], 8, axis=0), "mp4v")
  (base / "motion_test.txt").write_text("still.mp4\n")

  red = np.zeros((6, 48, 64, 3), np.uint8)
  red[..., 0] = 255
  _write_video(base / "red.avi", red, "MJPG")

  images = base / "images"
  images.mkdir()
  pngs = np.random.default_rng(5).integers(0, 256, (5, 21, 31, 3)).astype(np.uint8)  # BGR
  for i, image in enumerate(pngs):
    cv2.imwrite(str(images / f"frame_{i:03d}.png"), image)
  (images / "readme.txt").write_text("not an image")
  return dict(base=base, lib=str(lib), written=written, many=str(many),
              many_test=str(base / "many_test.txt"), motion=str(motion),
              motion_test=str(base / "motion_test.txt"), red=str(base / "red.avi"),
              images=str(images), pngs=pngs)


@pytest.fixture(scope="module", name="shared_cache")
def _shared_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("cache"))


def _make(video_dir, cache_dir, **overrides):
  kwargs = dict(video_dir=video_dir, seed=0, batch_size=4, num_input_frames=3, image_size=16,
                num_test_clips=10, test_future_frames=2, sharding=_sharding(), short_side=0,
                test_fraction=0.3, cache_dir=cache_dir, num_workers=2)
  kwargs.update(overrides)
  return video_files.VideoFilesDataset(**kwargs)


def _lib_file(media, rel):
  return os.path.join(media["lib"], rel)


def _to_unit(frames):
  return np.asarray(frames, np.float32) / np.float32(127.5) - np.float32(1)


def _rms_motion(patch):
  """RMS of successive-frame differences of uint8 `[T, h, w, C]`, in [-1, 1] units."""
  diff = np.diff(patch.astype(np.float64), axis=0) / 127.5
  return np.sqrt(np.mean(diff ** 2))


def _sha1_fraction(name):
  return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") / 2.0 ** 64


# --- decoding -------------------------------------------------------------------------------------


class TestDecoding:

  @pytest.mark.parametrize("rel", sorted(_MOVING))
  def test_frames_match_what_was_written(self, media, rel):
    frames = video_files.read_video(_lib_file(media, rel))
    written = media["written"][rel]
    assert frames.dtype == np.uint8
    assert frames.shape == written.shape
    assert np.abs(frames.astype(np.int32) - written).mean() < 6
    # The square is where it was drawn, in every frame.
    for t, frame in enumerate(frames):
      columns = np.nonzero((frame.min(axis=-1) > 200).any(axis=0))[0]
      center = columns.mean()
      assert abs(center - (_square_left(t) + (_SQUARE - 1) / 2)) <= 1, (t, columns)

  def test_rgb_order(self, media):
    frames = video_files.read_video(media["red"])
    mean = frames.reshape(-1, 3).astype(np.float64).mean(axis=0)
    assert mean[0] > 240 and mean[1] < 15 and mean[2] < 15, mean

  @pytest.mark.parametrize("stride", [2, 3, 5])
  def test_frame_stride_keeps_every_kth_frame(self, media, stride):
    path = _lib_file(media, "ClassB/v_ClassB_g01_c01.mp4")
    every = video_files.read_video(path)
    strided = video_files.read_video(path, frame_stride=stride)
    assert len(strided) == -(-_NUM_FRAMES // stride)
    np.testing.assert_array_equal(strided, every[::stride])

  def test_max_frames(self, media):
    path = _lib_file(media, "ClassA/v_ClassA_g01_c01.avi")
    every = video_files.read_video(path)
    np.testing.assert_array_equal(video_files.read_video(path, max_frames=5), every[:5])
    np.testing.assert_array_equal(video_files.read_video(path, frame_stride=2, max_frames=3),
                                  every[0:6:2])
    frames = list(video_files.iter_video(path, max_frames=100))
    assert len(frames) == _NUM_FRAMES

  def test_short_side_resize(self, media):
    path = _lib_file(media, "ClassA/v_ClassA_g01_c01.avi")
    native = video_files.read_video(path)
    np.testing.assert_array_equal(video_files.read_video(path, short_side=0), native)
    np.testing.assert_array_equal(video_files.read_video(path, short_side=72), native)
    half = video_files.read_video(path, short_side=36)
    assert half.shape == (_NUM_FRAMES, 36, 48, 3)
    # Shrinking by exactly 2 with area interpolation is the mean of each 2x2 block.
    blocks = native.astype(np.float64).reshape(_NUM_FRAMES, 36, 2, 48, 2, 3).mean(axis=(2, 4))
    assert np.abs(half - blocks).max() <= 1
    assert video_files.read_video(path, short_side=96).shape == (_NUM_FRAMES, 96, 128, 3)
    odd = video_files.read_video(_lib_file(media, _ODD), short_side=64)
    assert odd.shape == (12, 64, round(74 * 64 / 52), 3)
    odd = video_files.read_video(_lib_file(media, _ODD), short_side=53)
    assert odd.shape == (12, 53, round(74 * 53 / 52), 3)

  def test_grayscale_gives_three_equal_channels(self, media):
    frames = video_files.read_video(_lib_file(media, _GRAY))
    assert frames.shape == (12, *_GRAY_SIZE, 3)
    np.testing.assert_array_equal(frames[..., 0], frames[..., 1])
    np.testing.assert_array_equal(frames[..., 0], frames[..., 2])
    assert np.abs(frames[..., 0].astype(np.int32) - media["written"][_GRAY]).mean() < 3

  def test_odd_size(self, media):
    frames = video_files.read_video(_lib_file(media, _ODD))
    assert frames.shape == (12, *_ODD_SIZE, 3)

  def test_unreadable_files_raise(self, media, tmp_path):
    with pytest.raises(video_files.VideoReadError, match="Bad"):
      video_files.read_video(_lib_file(media, _CORRUPT))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(video_files.VideoReadError):
      video_files.read_video(str(empty))
    with pytest.raises(video_files.VideoReadError, match="no such file"):
      video_files.read_frames(str(tmp_path / "missing.avi"))
    assert issubclass(video_files.VideoReadError, ValueError)

  @pytest.mark.parametrize("kwargs, name", [(dict(frame_stride=0), "frame_stride=0"),
                                            (dict(frame_stride=-2), "frame_stride=-2"),
                                            (dict(short_side=-1), "short_side=-1"),
                                            (dict(max_frames=0), "max_frames=0")])
  def test_bad_decoding_arguments(self, media, kwargs, name):
    with pytest.raises(ValueError, match=name):
      video_files.read_video(media["red"], **kwargs)

  def test_image_folder_is_exact(self, media):
    expected = media["pngs"][..., ::-1]  # written as BGR by cv2.imwrite
    frames = video_files.read_image_folder(media["images"])
    assert frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_array_equal(
        video_files.read_image_folder(media["images"], frame_stride=2, max_frames=2),
        expected[[0, 2]])
    assert video_files.read_image_folder(media["images"], short_side=10).shape == (5, 10, 15, 3)
    assert video_files.read_image_folder(media["images"], short_side=42).shape == (5, 42, 62, 3)

  def test_image_folder_errors(self, tmp_path):
    (tmp_path / "text.txt").write_text("x")
    with pytest.raises(video_files.VideoReadError, match="no image files"):
      video_files.read_image_folder(str(tmp_path))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(video_files.VideoReadError, match="differ in size"):
      video_files.read_image_folder(str(tmp_path))

  def test_read_frames_dispatches(self, media):
    np.testing.assert_array_equal(video_files.read_frames(media["images"]),
                                  video_files.read_image_folder(media["images"]))
    np.testing.assert_array_equal(video_files.read_frames(media["red"], frame_stride=2),
                                  video_files.read_video(media["red"], frame_stride=2))

  def test_patch_motion(self):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 200, (6, 5, 3)).astype(np.uint8)
    # Frames 0, +51, +51: successive differences 51 and 0 levels, RMS = 0.4 / sqrt(2).
    patch = np.stack([frame, frame + 51, frame + 51])
    np.testing.assert_allclose(video_files.patch_motion(patch), 0.4 / np.sqrt(2), rtol=1e-6)
    assert video_files.patch_motion(np.stack([frame, frame])) == 0.0
    noisy = rng.integers(0, 256, (4, 6, 5, 3)).astype(np.uint8)
    np.testing.assert_allclose(video_files.patch_motion(noisy), _rms_motion(noisy), rtol=1e-5)


# --- finding files --------------------------------------------------------------------------------


class TestFindVideos:

  @pytest.fixture(name="tree")
  def _tree(self, tmp_path):
    for rel in ["a/b/c.mp4", "a/b/d.MP4", "x.AVI", "y.MkV", "z.webm", "notes.txt", "img.png",
                "fake.avi.txt", "a/e.avi"]:
      path = tmp_path / rel
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(b"")
    (tmp_path / "folder.avi").mkdir()  # a folder named like a video is not a video
    return tmp_path

  def test_recursive_folder_case_insensitive(self, tree):
    root, files = video_files.find_videos(str(tree))
    assert root == str(tree)
    assert files == ["a/b/c.mp4", "a/b/d.MP4", "a/e.avi", "x.AVI", "y.MkV", "z.webm"]

  def test_real_library(self, media):
    root, files = video_files.find_videos(media["lib"])
    assert root == media["lib"]
    assert files == _ALL

  def test_glob_pattern(self, tree):
    root, files = video_files.find_videos(str(tree / "a" / "**" / "*.*"))
    assert root == str(tree / "a")
    assert files == ["b/c.mp4", "b/d.MP4", "e.avi"]
    root, files = video_files.find_videos(str(tree / "*"))
    assert root == str(tree)
    assert files == ["x.AVI", "y.MkV", "z.webm"]

  def test_missing_folder(self, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError) as err:
      video_files.find_videos(missing)
    assert "video_dir" in str(err.value) and missing in str(err.value)

  @pytest.mark.parametrize("pattern", [False, True])
  def test_no_videos_names_what_was_searched_and_the_extensions(self, tmp_path, pattern):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "clip.txt").write_text("x")
    searched = str(tmp_path / "*.mp4") if pattern else str(tmp_path)
    with pytest.raises(ValueError) as err:
      video_files.find_videos(searched)
    message = str(err.value)
    assert "video_dir" in message and searched in message
    assert "\n" not in message
    for ext in (".avi", ".mp4", ".mkv", ".webm"):
      assert ext in message

  def test_empty_video_dir(self):
    with pytest.raises(ValueError, match="video_dir"):
      video_files.find_videos("")


# --- splits ---------------------------------------------------------------------------------------


class TestSplit:

  _NAMES = [f"Class{i % 37}/v_Class{i % 37}_g{i:04d}_c01.avi" for i in range(2000)]

  def test_hash_split_is_stable_disjoint_complete_and_sized(self):
    fraction = 0.25
    train, test = video_files.split_files(self._NAMES, test_fraction=fraction)
    assert (train, test) == video_files.split_files(list(reversed(self._NAMES)),
                                                    test_fraction=fraction)
    assert train == sorted(train) and test == sorted(test)
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(self._NAMES)
    n = len(self._NAMES)
    assert abs(len(test) - fraction * n) < 4 * np.sqrt(n * fraction * (1 - fraction))
    # A name's side depends on the name only (adding files moves no other file), through a
    # salt-free hash of the path.
    subset = self._NAMES[::7]
    sub_train, sub_test = video_files.split_files(subset, test_fraction=fraction)
    assert set(sub_test) == set(test) & set(subset)
    assert set(sub_train) == set(train) & set(subset)
    assert test == sorted(n for n in self._NAMES if _sha1_fraction(n) < fraction)
    for name in self._NAMES[:20]:
      assert video_files.hash_fraction(name) == _sha1_fraction(name)
    assert video_files.split_files(self._NAMES, test_fraction=0.0)[1] == []

  @pytest.mark.parametrize("value", [1.5, 1.0, -0.1, "0.1", True])
  def test_bad_test_fraction(self, value):
    with pytest.raises(ValueError, match=f"test_fraction={value!r}"):
      video_files.split_files(self._NAMES, test_fraction=value)

  def test_split_file_by_relative_path_and_base_name(self, tmp_path):
    listed = tmp_path / "testlist01.txt"
    listed.write_text("ClassA/v_ClassA_g01_c01.avi 1\n"
                      "UCF-101/ClassB/v_ClassB_g01_c01.mp4 2\n"  # another root: by base name
                      "ClassA\\v_ClassA_g03_c01.avi\n"  # Windows separators
                      "\n"
                      "Gone/v_Gone_g01_c01.avi 3\n")  # not in the folder: ignored
    train, test = video_files.split_files(_ALL, test_fraction=0.3, split_file=str(listed))
    expected_test = ["ClassA/v_ClassA_g01_c01.avi", _ODD, "ClassB/v_ClassB_g01_c01.mp4"]
    assert test == expected_test
    assert train == [f for f in _ALL if f not in expected_test]

  def test_train_split_file_restricts_training(self, tmp_path):
    (tmp_path / "test.txt").write_text("ClassA/v_ClassA_g01_c01.avi\n")
    (tmp_path / "train.txt").write_text(f"{_GRAY} 4\nv_ClassA_g03_c01.avi 5\n"
                                        "ClassA/v_ClassA_g01_c01.avi 1\n")
    train, test = video_files.split_files(_ALL, test_fraction=0.3,
                                          split_file=str(tmp_path / "test.txt"),
                                          train_split_file=str(tmp_path / "train.txt"))
    assert test == ["ClassA/v_ClassA_g01_c01.avi"]
    assert train == [_ODD, _GRAY]

  def test_bad_lists(self, tmp_path):
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("Other/v_Other_g01_c01.avi 1\nv_None.avi\n")
    with pytest.raises(ValueError, match="split_file=.*nothing.txt.*none of its 2 entries"):
      video_files.split_files(_ALL, test_fraction=0.3, split_file=str(nothing))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="empty"):
      video_files.split_files(_ALL, test_fraction=0.3, split_file=str(empty))
    with pytest.raises(ValueError, match="missing.txt"):
      video_files.split_files(_ALL, test_fraction=0.3, split_file=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="train_split_file"):
      video_files.split_files(_ALL, test_fraction=0.3, train_split_file=str(empty))

  def test_read_split_list(self, tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("A/v_a.avi 1\r\nB\\v_b.avi\n\nv_c.avi 3 extra\n")
    assert video_files.read_split_list(str(path)) == ["A/v_a.avi", "B/v_b.avi", "v_c.avi"]

  @pytest.mark.parametrize("test_every, num_test_clips, expected", [
      (1, 10, [0, 1, 2, 3, 4, 5, 6]), (3, 10, [0, 3, 6]), (2, 3, [0, 2, 4]), (10, 10, [0])])
  def test_test_every(self, media, shared_cache, test_every, num_test_clips, expected):
    dataset = _make(media["many"], shared_cache, split_file=media["many_test"],
                    test_every=test_every, num_test_clips=num_test_clips)
    assert [c.path for c in dataset.test_clips] == [f"t{i}.avi" for i in expected]
    assert [c.path for c in dataset.train_clips] == ["train.avi"]


# --- the frame cache ------------------------------------------------------------------------------


class TestFrameCache:

  @pytest.fixture(name="video")
  def _video(self, media, tmp_path):
    """A private copy of one video (tests change its modification time)."""
    path = str(tmp_path / "clip.avi")
    shutil.copy(_lib_file(media, "ClassA/v_ClassA_g01_c01.avi"), path)
    return path

  def _cache(self, tmp_path, **kwargs):
    kwargs = {"short_side": 0, "frame_stride": 1, **kwargs}
    return video_files.FrameCache(str(tmp_path / "cache"), **kwargs)

  def test_entry_is_the_decoded_video_and_is_reused(self, video, tmp_path):
    expected = video_files.read_video(video, frame_stride=2)
    cache = self._cache(tmp_path, frame_stride=2)
    frames = cache.frames(video)
    assert cache.decoded == 1
    np.testing.assert_array_equal(frames, expected)
    assert cache.frames(video) is frames  # held open
    assert cache.shape(video) == expected.shape and cache.decoded == 1
    np.testing.assert_array_equal(np.load(cache.path(video)), expected)
    again = self._cache(tmp_path, frame_stride=2)
    reread = again.frames(video)
    assert again.decoded == 0
    assert isinstance(reread, np.memmap)
    np.testing.assert_array_equal(reread, expected)
    assert os.listdir(cache.directory) == [os.path.basename(cache.path(video))]

  def test_max_frames_entry(self, video, tmp_path):
    cache = self._cache(tmp_path)
    np.testing.assert_array_equal(cache.frames(video, 5), video_files.read_video(video)[:5])
    assert cache.path(video, 5) != cache.path(video)

  def test_new_settings_or_new_file_make_a_new_entry(self, video, tmp_path):
    cache = self._cache(tmp_path)
    first = cache.path(video)
    cache.frames(video)
    assert self._cache(tmp_path, short_side=36).path(video) != first
    assert self._cache(tmp_path, frame_stride=2).path(video) != first
    stat = os.stat(video)
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10 ** 9))
    fresh = self._cache(tmp_path)
    assert fresh.path(video) != first
    fresh.frames(video)
    assert fresh.decoded == 1
    assert len([f for f in os.listdir(fresh.directory) if f.endswith(".npy")]) == 2
    smaller = self._cache(tmp_path, short_side=36)
    assert smaller.frames(video).shape == (_NUM_FRAMES, 36, 48, 3) and smaller.decoded == 1

  def test_leftover_partial_file_is_never_read(self, video, tmp_path):
    cache = self._cache(tmp_path)
    final = cache.path(video)
    os.makedirs(cache.directory)
    # A complete-looking array under a temporary name: reading it would give zeros.
    shape = (_NUM_FRAMES, *_SIZE, 3)
    with open(f"{final}.partial-1-deadbeef", "wb") as f:
      np.save(f, np.zeros(shape, np.uint8))
    with open(f"{final}.partial-1-deadbeef.raw", "wb") as f:
      f.write(bytes(int(np.prod(shape))))
    frames = cache.frames(video)
    assert cache.decoded == 1
    np.testing.assert_array_equal(frames, video_files.read_video(video))
    np.testing.assert_array_equal(np.load(final), video_files.read_video(video))

  @pytest.mark.parametrize("keep_bytes", [40, 5000, -100])
  def test_truncated_entry_is_decoded_again(self, video, tmp_path, keep_bytes):
    cache = self._cache(tmp_path)
    original = np.array(cache.frames(video))
    final = cache.path(video)
    size = os.path.getsize(final)
    with open(final, "r+b") as f:
      f.truncate(keep_bytes % size)
    fresh = self._cache(tmp_path)
    frames = fresh.frames(video)
    assert fresh.decoded == 1
    np.testing.assert_array_equal(frames, original)
    assert os.path.getsize(final) == size
    third = self._cache(tmp_path)
    np.testing.assert_array_equal(third.frames(video), original)
    assert third.decoded == 0

  def test_failed_decode_leaves_no_cache_file(self, video, tmp_path, monkeypatch):
    real_iter_video = video_files.iter_video

    def two_frames_then_fail(path, **kwargs):
      frames = real_iter_video(path, **kwargs)
      yield next(frames)
      yield next(frames)
      raise video_files.VideoReadError(f"{path}: decoding failed at frame 2")

    monkeypatch.setattr(video_files, "iter_video", two_frames_then_fail)
    cache = self._cache(tmp_path)
    with pytest.raises(video_files.VideoReadError, match="frame 2"):
      cache.frames(video)
    leftovers = os.listdir(cache.directory) if os.path.isdir(cache.directory) else []
    assert leftovers == []
    monkeypatch.undo()
    np.testing.assert_array_equal(cache.frames(video), video_files.read_video(video))

  def test_unwritable_cache_dir_keeps_frames_in_memory(self, video, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    caplog.set_level(logging.WARNING, logger="absl")
    cache = video_files.FrameCache(str(blocker), short_side=0, frame_stride=1)
    np.testing.assert_array_equal(cache.frames(video), video_files.read_video(video))
    assert any("cannot write" in r.getMessage() for r in caplog.records)
    assert blocker.read_text() == "not a folder"

  def test_threads_read_entries_one_at_a_time(self, media, tmp_path, monkeypatch):
    # np.load parses each header with the compiler, which CPython 3.11 cannot enter from two
    # threads at once; the dataset's probing threads must take turns.
    real_load, inside, most = np.load, [0], [0]
    counter = threading.Lock()

    def slow_load(*args, **kwargs):
      with counter:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
      time.sleep(0.02)
      try:
        return real_load(*args, **kwargs)
      finally:
        with counter:
          inside[0] -= 1

    videos = [_lib_file(media, rel) for rel in _MOVING]
    self._cache(tmp_path).frames(videos[0])  # cached, so a fresh instance loads it
    for video in videos[1:]:
      self._cache(tmp_path).frames(video)
    monkeypatch.setattr(video_files.np, "load", slow_load)
    cache = self._cache(tmp_path)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      shapes = list(pool.map(cache.shape, videos * 3))
    assert cache.decoded == 0 and len(shapes) == 3 * len(videos)
    assert most[0] == 1

  def test_bad_arguments(self, tmp_path):
    with pytest.raises(ValueError, match="cache_dir=''"):
      video_files.FrameCache("", short_side=0, frame_stride=1)
    with pytest.raises(ValueError, match="frame_stride=0"):
      video_files.FrameCache(str(tmp_path), short_side=0, frame_stride=0)


# --- the dataset ----------------------------------------------------------------------------------


def _find_crop(patch, videos):
  """Whether uint8 `[T, s, s, 3]` is a crop of `T` successive frames of one of `videos`."""
  length, s = patch.shape[:2]
  for video in videos:
    windows = np.lib.stride_tricks.sliding_window_view(video, (s, s), axis=(1, 2))
    hits = np.all(windows == patch[0].transpose(2, 0, 1)[None, None, None], axis=(3, 4, 5))
    for t, y, x in zip(*np.nonzero(hits)):
      if t + length <= len(video) and np.array_equal(video[t:t + length, y:y + s, x:x + s], patch):
        return True
  return False


class TestDataset:

  def test_skipped_files_are_named_once_per_reason(self, media, tmp_path, caplog):
    split = tmp_path / "test.txt"
    split.write_text("ClassA/v_ClassA_g02_c01.avi\nv_ClassA_g03_c01.avi\n")
    caplog.set_level(logging.WARNING, logger="absl")
    dataset = _make(media["lib"], str(tmp_path / "cache"), split_file=str(split), image_size=50)
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "absl" and r.levelno == logging.WARNING]
    for name, why in [(_CORRUPT, "unreadable"), (_SHORT, "shorter than 4 frames"),
                      (_GRAY, "too small")]:
      mentioning = [w for w in warnings if name in w]
      assert len(mentioning) == 1, warnings
      assert why in mentioning[0]
    assert len(warnings) == 3, warnings
    assert [c.path for c in dataset.train_clips] == [
        "ClassA/v_ClassA_g01_c01.avi", "ClassB/deep/er/v_ClassB_g02_c01.mkv",
        "ClassB/v_ClassB_g01_c01.mp4"]
    assert [c.path for c in dataset.test_clips] == ["ClassA/v_ClassA_g02_c01.avi", _ODD]
    assert dataset.train_batch(0)["frames"].shape == (4, 4, 50, 50, 3)

  def test_only_unreadable_videos(self, media, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ["a.mp4", "b.avi", "c.mkv", "d.webm"]:
      shutil.copy(_lib_file(media, _CORRUPT), folder / name)
    with pytest.raises(ValueError, match="video_dir"):
      _make(str(folder), str(tmp_path / "cache"), test_fraction=0.0)

  def test_train_batch(self, media, shared_cache):
    dataset = _make(media["lib"], shared_cache)
    batch = dataset.train_batch(0)
    assert set(batch) == {"frames"}
    frames = batch["frames"]
    assert isinstance(frames, jax.Array)
    assert frames.shape == (4, 4, 16, 16, 3)
    assert frames.dtype == np.float32
    assert frames.sharding == _sharding()
    values = np.asarray(frames)
    assert values.min() >= -1 and values.max() <= 1
    levels = (values + 1) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    # Every row is a crop of successive frames of a training video.
    videos = [video_files.read_video(_lib_file(media, c.path)) for c in dataset.train_clips]
    assert {c.path for c in dataset.train_clips} == {
        f for f in _ALL if _sha1_fraction(f) >= 0.3 and f not in _UNUSABLE}
    for row in np.round(levels).astype(np.uint8):
      assert _find_crop(row, videos)

  def test_batches_are_a_function_of_the_step(self, media, shared_cache):
    dataset = _make(media["lib"], shared_cache)
    first = np.asarray(dataset.train_batch(5)["frames"])
    np.testing.assert_array_equal(np.asarray(dataset.train_batch(5)["frames"]), first)
    np.testing.assert_array_equal(np.asarray(_make(media["lib"], shared_cache).train_batch(5)[
        "frames"]), first)
    assert not np.array_equal(np.asarray(dataset.train_batch(6)["frames"]), first)
    other_seed = _make(media["lib"], shared_cache, seed=1)
    assert not np.array_equal(np.asarray(other_seed.train_batch(5)["frames"]), first)
    np.testing.assert_array_equal(dataset.sample_patch(5, 2), np.round((first[2] + 1) * 127.5))
    with pytest.raises(ValueError, match="step=-1"):
      dataset.train_batch(-1)

  def test_motion_threshold_prefers_moving_patches(self, media, shared_cache):
    threshold = 0.02
    kwargs = dict(split_file=media["motion_test"], image_size=24, motion_threshold=threshold)
    picky = _make(media["motion"], shared_cache, patch_tries=30, **kwargs)
    blind = _make(media["motion"], shared_cache, patch_tries=1, **kwargs)
    assert [c.path for c in picky.train_clips] == ["moving.mp4"]
    rows = range(200)
    picked = [picky.sample_patch(0, r) for r in rows]
    random = [blind.sample_patch(0, r) for r in rows]
    moving_picked = np.array([_rms_motion(p) > threshold for p in picked])
    moving_random = np.array([_rms_motion(p) > threshold for p in random])
    for p in picked:
      assert p.shape == (4, 24, 24, 3)
      assert video_files.patch_motion(p) == pytest.approx(_rms_motion(p), rel=1e-5)
    # The first candidate is the same draw in both; when it moves, it is the one kept.
    for p, r, moves in zip(picked, random, moving_random):
      if moves:
        np.testing.assert_array_equal(p, r)
    # The square covers a small corner: most single draws see none of it, while 30 draws almost
    # always find it (1 - (1 - p)^30 > 0.98 for p > 0.125).
    assert moving_random.mean() < 0.3
    assert moving_picked.mean() > 0.9

  @pytest.mark.parametrize("short_side, shapes", [
      (0, [(2, 72, 96), (1, 72, 96), (1, 48, 72), (1, 48, 64)]),
      # 72x96 and 48x64 -> 53x71, 52x74 -> 53x75: cropped to 48x64 and 48x72.
      (53, [(2, 48, 64), (2, 48, 64), (1, 48, 72)]),
  ])
  def test_test_batches_full_frames_grouped_by_size(self, media, shared_cache, tmp_path,
                                                    short_side, shapes):
    split = tmp_path / "test.txt"
    tested = [f for f in _ALL if f != "ClassA/v_ClassA_g01_c01.avi"]
    split.write_text("".join(f"{rel}\n" for rel in tested))
    dataset = _make(media["lib"], shared_cache, split_file=str(split), size_multiple=8,
                    short_side=short_side)
    usable = [rel for rel in tested if rel not in _UNUSABLE]
    assert [c.path for c in dataset.test_clips] == usable
    # Expected: the first 5 frames, centre-cropped to multiples of 8, grouped by size in the order
    # of each size's first clip, then batched by 2.
    groups = {}
    for rel in usable:
      frames = video_files.read_video(_lib_file(media, rel), short_side=short_side)[:5]
      h, w = frames.shape[1:3]
      top, left = (h % 8) // 2, (w % 8) // 2
      crop = _to_unit(frames[:, top:top + h - h % 8, left:left + w - w % 8])
      groups.setdefault(crop.shape, []).append(crop)
    expected = [np.stack(clips[i:i + 2]) for clips in groups.values()
                for i in range(0, len(clips), 2)]
    batches = [b["frames"] for b in dataset.test_batches(2)]
    assert [b.shape for b in batches] == [(n, 5, h, w, 3) for n, h, w in shapes]
    assert len(batches) == len(expected)
    for batch, want in zip(batches, expected):
      assert batch.dtype == np.float32
      np.testing.assert_array_equal(batch, want)
    capped = _make(media["lib"], shared_cache, split_file=str(split), size_multiple=8,
                   short_side=short_side, num_test_clips=2)
    assert [c.path for c in capped.test_clips] == usable[:2]
    assert sum(len(b["frames"]) for b in capped.test_batches(8)) == 2

  def test_cache_is_reused_across_builds(self, media, tmp_path):
    # The readable videos only (ClassA and ClassB): an unreadable file has no entry to reuse.
    pattern = os.path.join(media["lib"], "Class*", "**", "*")
    cache_dir = str(tmp_path / "cache")
    first = _make(pattern, cache_dir, short_side=40)
    assert first.cache.decoded > 0
    second = _make(pattern, cache_dir, short_side=40)
    assert second.cache.decoded == 0
    assert second.train_clips == first.train_clips and second.test_clips == first.test_clips
    for step in (0, 3):
      np.testing.assert_array_equal(np.asarray(second.train_batch(step)["frames"]),
                                    np.asarray(first.train_batch(step)["frames"]))
    for a, b in zip(first.test_batches(4), second.test_batches(4), strict=True):
      np.testing.assert_array_equal(a["frames"], b["frames"])
    assert second.cache.decoded == 0
    assert not any(".partial-" in f for f in os.listdir(cache_dir))
    resized = _make(pattern, cache_dir, short_side=32)
    assert resized.cache.decoded == first.cache.decoded

  @pytest.mark.parametrize("field, value, message", [
      ("short_side", 8, "short_side=8"),
      ("test_fraction", 1.5, "test_fraction=1.5"),
      ("frame_stride", -1, "frame_stride=-1"),
      ("test_every", 0, "test_every=0"),
      ("patch_tries", 0, "patch_tries=0"),
      ("motion_threshold", -0.5, "motion_threshold=-0.5"),
      ("batch_size", 0, "batch_size=0"),
      ("seed", -1, "seed=-1"),
  ])
  def test_bad_arguments(self, media, shared_cache, field, value, message):
    with pytest.raises(ValueError, match=message):
      _make(media["lib"], shared_cache, **{field: value})

  def test_from_config_and_registry(self, media, shared_cache, tiny_config):
    from uncertainty_jax import data
    config = tiny_config()
    config.unlock()
    config.update(dataset="video_files", video_dir=media["lib"], video_short_side=64,
                  video_cache_dir=shared_cache, test_fraction=0.3)
    dataset = data.get_video_dataset(config, _sharding())
    assert isinstance(dataset, video_files.VideoFilesDataset)
    assert dataset.train_batch(0)["frames"].shape == (8, 5, 32, 32, 3)
    multiple = 2 ** (config.num_scales - 1)
    shapes = [b["frames"].shape for b in dataset.test_batches(8)]
    assert sum(s[0] for s in shapes) == 3
    for shape in shapes:
      assert shape[1] == config.num_input_frames + config.test_future_frames
      assert shape[2] % multiple == 0 and shape[3] % multiple == 0
      assert min(shape[2:4]) == 64  # the short side, already a multiple of 8


# --- the command line -----------------------------------------------------------------------------


def _cli_args(media, workdir, cache_dir):
  return [_CONFIG, f"--workdir={workdir}", "--config.dataset=video_files",
          f"--config.video_dir={media['lib']}", "--config.video_short_side=64",
          "--config.test_fraction=0.3", f"--config.video_cache_dir={cache_dir}"]


@pytest.fixture(scope="module", name="cli_run")
def _cli_run(media, tmp_path_factory):
  """A tiny chapter-4 run on the library folder: `(process, workdir, cache_dir)`."""
  base = tmp_path_factory.mktemp("cli")
  workdir, cache_dir = str(base / "run"), str(base / "cache")
  proc = run_main(_cli_args(media, workdir, cache_dir), env_extra=xla_cache_env())
  return proc, workdir, cache_dir


def _read_eval(workdir):
  with open(os.path.join(workdir, "eval.json")) as f:
    return json.load(f)


def test_cli_trains_and_evaluates_on_a_folder(cli_run):
  proc, workdir, cache_dir = cli_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  usable_test = [f for f in _ALL if _sha1_fraction(f) < 0.3 and f not in _UNUSABLE]
  assert len(usable_test) == 3  # the library's names were chosen for this
  results = _read_eval(workdir)
  assert results["num_clips"] == len(usable_test)
  assert results["step"] == 2
  assert np.isfinite(results["full/frame1/psnr"])
  assert "2" in os.listdir(os.path.join(workdir, "checkpoints"))
  assert any(f.endswith(".npy") for f in os.listdir(cache_dir))
  for skipped in (_CORRUPT, _SHORT):
    assert skipped in proc.stderr


def test_cli_eval_mode_reuses_the_cache(cli_run, media):
  proc, workdir, cache_dir = cli_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  trained = _read_eval(workdir)
  entries = tree_snapshot(cache_dir)
  again = run_main([*_cli_args(media, workdir, cache_dir), "--mode=eval"],
                   env_extra=xla_cache_env())
  assert again.returncode == 0, again.stderr[-3000:]
  evaluated = _read_eval(workdir)
  assert evaluated["num_clips"] == trained["num_clips"]
  assert evaluated["step"] == 2
  np.testing.assert_allclose(evaluated["full/frame1/psnr"], trained["full/frame1/psnr"],
                             rtol=1e-4)
  assert tree_snapshot(cache_dir) == entries  # nothing decoded again


@pytest.mark.parametrize("missing", [True, False])
def test_cli_missing_video_dir_is_one_line_and_keeps_the_workdir(cli_run, media, tmp_path,
                                                                 missing):
  _, trained, cache_dir = cli_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained, workdir)
  before = tree_snapshot(workdir)
  video_dir = str(tmp_path / "no_videos_here") if missing else ""
  args = _cli_args(media, workdir, cache_dir)
  args = [a for a in args if not a.startswith("--config.video_dir=")]
  if missing:
    args.append(f"--config.video_dir={video_dir}")
  proc = run_main(args, env_extra=xla_cache_env())
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert "video_dir" in errors[0] and video_dir in errors[0]
  assert tree_snapshot(workdir) == before
