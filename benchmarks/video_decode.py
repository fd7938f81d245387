"""What the frame cache of `video_files` buys: decoding a video against reading it back cached.

    python -m benchmarks.video_decode
    python -m benchmarks.video_decode --width=64 --height=48 --frames=20 --videos=2   # the tests

Writes `--videos` synthetic videos (a textured background with a moving square, MPEG-4 Part 2 in
`.mp4`, the codec OpenCV's wheels write; UCF101 ships XviD `.avi`, a codec of the same family) of
`--frames` frames at `--width` x `--height` (default 320x240, UCF101's size) into a temporary
folder, then measures in one run:

* decode: `video_files.read_video`, frames per second, one thread;
* first pass: building a `VideoFilesDataset` on an empty cache (decoding every file on all cores
  and writing the cache), videos per second;
* cached pass: building it again on the filled cache (no decoding), videos per second;
* cached frames: reading every frame of every file from the cache's memory maps, frames per
  second (the files were just written, so they sit in the OS page cache: this is the rate of a
  cache that fits in memory);
* training batches: `train_batch` (motion-chosen patches from the cache), batches per second;
* training batches without a cache: the same number of clips per batch, each decoded from the
  start of its file to its last frame, batches per second.

It prints the ratios of cached to decoded frames per second, and of training batches per second
with and without the cache.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

from uncertainty_jax.data import video_files
from uncertainty_jax.training import sharding as sharding_lib

_WIDTH = flags.DEFINE_integer("width", 320, "Frame width of the synthetic videos.")
_HEIGHT = flags.DEFINE_integer("height", 240, "Frame height of the synthetic videos.")
_FRAMES = flags.DEFINE_integer("frames", 150, "Frames per video.")
_VIDEOS = flags.DEFINE_integer("videos", 8, "Number of videos.")
_BATCHES = flags.DEFINE_integer("batches", 50, "Training batches to time.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Training batch size.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "Training patch size.")


def _write_videos(folder: str, num: int, frames: int, width: int, height: int) -> None:
  import cv2  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  side = max(4, min(width, height) // 4)
  for v in range(num):
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(os.path.join(folder, f"clip{v:03d}.mp4"),
                             cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    for t in range(frames):
      frame = background.copy()
      x = (2 * t + 7 * v) % max(1, width - side)
      frame[height // 3:height // 3 + side, x:x + side] = (40, 200, 250)
      writer.write(frame)
    writer.release()


def main(argv) -> None:
  del argv
  width, height, frames, videos = _WIDTH.value, _HEIGHT.value, _FRAMES.value, _VIDEOS.value
  short_side = min(width, height)
  sharding = sharding_lib.batch_sharding(sharding_lib.make_mesh())
  with tempfile.TemporaryDirectory() as tmp:
    folder, cache = os.path.join(tmp, "videos"), os.path.join(tmp, "cache")
    os.makedirs(folder)
    _write_videos(folder, videos, frames, width, height)
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))
    print(f"{videos} videos of {frames} frames, {width}x{height}, {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    decoded = sum(len(video_files.read_video(p, short_side=short_side)) for p in paths)
    decode_fps = decoded / (time.perf_counter() - t0)
    print(f"decode (1 thread):         {decode_fps:10.1f} frames/s")

    # A split list naming one file as the test set: every other file trains.
    def build_with_test():
      with open(os.path.join(tmp, "test.txt"), "w") as f:
        f.write(os.path.basename(paths[0]) + "\n")
      return video_files.VideoFilesDataset(
          video_dir=folder, seed=0, batch_size=_BATCH_SIZE.value, num_input_frames=4,
          image_size=_IMAGE_SIZE.value, num_test_clips=1, test_future_frames=2,
          sharding=sharding, short_side=short_side, split_file=os.path.join(tmp, "test.txt"),
          cache_dir=cache)

    t0 = time.perf_counter()
    dataset = build_with_test()
    first = time.perf_counter() - t0
    print(f"first pass (decode+cache): {videos / first:10.1f} videos/s "
          f"({dataset.cache.decoded} decoded)")
    t0 = time.perf_counter()
    dataset = build_with_test()
    second = time.perf_counter() - t0
    print(f"cached pass:               {videos / second:10.1f} videos/s "
          f"({dataset.cache.decoded} decoded)")

    reader = video_files.FrameCache(cache, short_side=short_side, frame_stride=1)
    t0 = time.perf_counter()
    read = sum(np.array(reader.frames(p)).shape[0] for p in paths)
    cached_fps = read / (time.perf_counter() - t0)
    print(f"cached frames:             {cached_fps:10.1f} frames/s")

    dataset.train_batch(0)
    t0 = time.perf_counter()
    for step in range(1, _BATCHES.value + 1):
      dataset.train_batch(step)["frames"].block_until_ready()
    rate = _BATCHES.value / (time.perf_counter() - t0)
    print(f"training batches:          {rate:10.1f} batches/s (batch {_BATCH_SIZE.value}, "
          f"{_IMAGE_SIZE.value}x{_IMAGE_SIZE.value} patches)")

    # The same batches without a cache: each clip decoded from the start of its file up to its
    # last frame (what random access costs a decoder without seeking).
    length = dataset.clip_length
    rng = np.random.default_rng(0)
    num_uncached = max(1, _BATCHES.value // 10)
    t0 = time.perf_counter()
    for _ in range(num_uncached):
      for _ in range(_BATCH_SIZE.value):
        clip = dataset.train_clips[rng.integers(len(dataset.train_clips))]
        start = int(rng.integers(clip.shape[0] - length + 1))
        video_files.read_video(os.path.join(folder, clip.path), short_side=short_side,
                               max_frames=start + length)[start:]
    uncached = num_uncached / (time.perf_counter() - t0)
    print(f"training batches, no cache: {uncached:9.1f} batches/s (each clip decoded from its "
          f"file's start)")
    print(f"ratio cached frames / decoded frames: {cached_fps / decode_fps:.1f}x")
    print(f"ratio training batches cached / no cache: {rate / uncached:.1f}x")


if __name__ == "__main__":
  app.run(main)
