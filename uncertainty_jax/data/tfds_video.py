"""UCF101 and Moving MNIST through TensorFlow Datasets, for chapter 4 video prediction (4.3).

Two `VideoDataset`s read real videos prepared by TFDS:

* `Ucf101Dataset` (TFDS `ucf101`, config `ucf101_1`: the official train/test split 1).
  Training clips are `num_input_frames + 1` consecutive frames of a training video, cut to a
  `image_size` x `image_size` patch chosen where there is motion. Section 4.3 keeps patches whose
  L2 distance between successive frames is above a threshold; here each clip draws
  `num_crop_candidates` random patch positions and keeps the one with the largest summed squared
  difference between successive frames, so every record still gives exactly one example (the
  one-to-one map that makes resuming exact, see below). The test set follows the thesis' protocol
  (footnote 1 of 4.3): every 10th video of the test split, starting at the first (indices 0, 10,
  20, ...), its first `num_input_frames + test_future_frames` frames, at most `num_test_clips`
  videos. Frames are resized so that their short side is `test_frame_size` (bilinear,
  antialiased) and the centre `test_frame_size` x `test_frame_size` square is kept. Indices count
  in TFDS' stored order, which TFDS fixes at preparation (examples are ordered by a hash of their
  file name), so the selection is a fixed 10% of the split (379 of split 1's 3783 test videos),
  not the same videos as the thesis' 378.
* `MovingMnistDataset`. Test clips come from TFDS `moving_mnist` (the 10000 sequences of
  Srivastava et al., 2015, `[20, 64, 64, 1]`), every 10th starting at the first, first
  `num_input_frames + test_future_frames` frames. Training sequences are made on the fly from TFDS
  `mnist` training digits with `tfds.video.moving_sequence.image_as_moving_sequence`: two digits
  per sequence, each bouncing with a random start and direction at the original speed (0.1 of the
  free canvas per frame) on a 64x64 canvas, summed and clipped to 255 as Moving MNIST does, then
  the same motion-chosen patch crop to `image_size`. The grayscale digits are replicated to 3
  channels, so that every chapter 4 dataset has `C = 3` and one model serves all.

Frames are float32 in [-1, 1], `[B, T, H, W, 3]`. Neither dataset knows the moving pixels
exactly, so test batches hold `'frames'` only (evaluators derive motion masks from optical flow,
as the thesis does).

Determinism and resume. The training stream is a pure function of the seed: records are read in
TFDS' fixed order (no file shuffling); each epoch `e` permutes windows of `shuffle_window`
consecutive records with a stateless permutation seeded from `(seed, e, window)`; every random
choice of an example (clip start, crop candidates, digit trajectories) comes from stateless ops
seeded from `(seed, example index)`, where the index counts records of the fixed order across
epochs and processes; `tf.data.Options.deterministic` keeps parallel maps in order. An instance
remembers the next step it will serve: `train_batch(step)` for that step takes the next batch of
the running pipeline, any other step rebuilds the pipeline at record `step * per_process_batch`
(twice that for Moving MNIST, two digits per example).

Cost of a skip: the rebuilt pipeline starts at the right epoch directly, then reads and discards
the records before the position inside that epoch, at most one epoch of this process' share of
the split. Skipped videos are parsed but their frames never decoded (they stay JPEG strings), so
the cost is I/O: up to the whole UCF101 training split (about 9.5k videos, several GB) divided by
the number of processes, or up to 60k MNIST digits (seconds). Runs that go through steps in order
never skip.

Multi-host: each process reads its own slice of the training split
(`tfds.split_for_jax_process`), builds `batch_size // jax.process_count()` rows, and
`make_global_batch` assembles the global array. Test sets are read whole on every process.

TensorFlow and TensorFlow Datasets are optional dependencies, imported on first use
(`pip install 'uncertainty_jax[tfds]'`); importing them here hides every GPU from TensorFlow so
that it leaves accelerator memory to JAX.
"""

from __future__ import annotations

import abc
import os
from typing import Any, Iterator

import jax
import numpy as np

from uncertainty_jax.data import base

_UCF101_CONFIGS = ('ucf101_1', 'ucf101_1_256')
# Moving MNIST as in Srivastava et al. (2015) and TFDS `moving_mnist`.
_MOVING_MNIST_CANVAS = 64
_MOVING_MNIST_LENGTH = 20
_MOVING_MNIST_SPEED = 0.1
# Epochs of the endless training stream, also the stride that keeps (epoch, window) seeds apart.
_NUM_EPOCHS_BOUND = 2 ** 40
_TEST_STRIDE = 10


def _import_tf() -> tuple[Any, Any]:
  return base.import_tfds('the TFDS video datasets')


def _check_positive(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f'{name}={value!r}: expected a positive integer')
  return int(value)


def _missing_dataset_error(tfds: Any, name: str, data_dir: str | None) -> FileNotFoundError:
  shown_dir = data_dir or f'the TFDS default ({tfds.core.constants.DATA_DIR})'
  flag = f' --data_dir={data_dir}' if data_dir else ''
  return FileNotFoundError(
      f'TFDS dataset {name!r} is not prepared in data dir {shown_dir}. Prepare it once with '
      f'`tfds build {name}{flag}` (add `--manual_dir=DIR` to build from files you downloaded '
      f'yourself), or set tfds_data_dir to the folder that holds it.')


def _as_dataset(tfds: Any, name: str, data_dir: str | None, split: Any,
                decoders: Any = None) -> Any:
  """The records of a TFDS split in their stored order, or a short error if it is not prepared."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    return builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
  except (AssertionError, tfds.core.DatasetNotFoundError):
    # TFDS signals an unprepared dataset with an AssertionError deep in its stack; the
    # traceback would say nothing the message below does not.
    raise _missing_dataset_error(tfds, name, data_dir) from None


def _pipeline_options(tf: Any) -> Any:
  options = tf.data.Options()
  options.deterministic = True
  # A private pool keeps TensorFlow's input threads from competing with JAX's for every core.
  options.threading.private_threadpool_size = max(1, min(8, os.cpu_count() or 1))
  options.threading.max_intra_op_parallelism = 1
  return options


def _to_unit_range(tf: Any, frames: Any) -> Any:
  """uint8 (or float in [0, 255]) frames -> float32 in [-1, 1]."""
  return tf.clip_by_value(tf.cast(frames, tf.float32) / 127.5 - 1.0, -1.0, 1.0)


def _resize_short_side(tf: Any, frames: Any, size: int, grow_only: bool) -> Any:
  """Resizes `[T, H, W, C]` frames so that min(H, W) == size (or >= size if `grow_only`)."""
  shape = tf.shape(frames)
  h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
  scale = size / tf.minimum(h, w)
  if grow_only:
    scale = tf.maximum(scale, 1.0)
  new_h = tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32))
  new_w = tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))
  frames = tf.cast(frames, tf.float32)
  return tf.cond(
      tf.logical_and(tf.equal(new_h, shape[1]), tf.equal(new_w, shape[2])),
      lambda: frames,
      lambda: tf.image.resize(frames, tf.stack([new_h, new_w]), antialias=True))


def _centre_crop(tf: Any, frames: Any, size: int) -> Any:
  shape = tf.shape(frames)
  top, left = (shape[1] - size) // 2, (shape[2] - size) // 2
  return frames[:, top:top + size, left:left + size, :]


def _motion_crop(tf: Any, frames: Any, size: int, seed: Any, num_candidates: int) -> Any:
  """The `size` x `size` patch with the most motion among `num_candidates` random ones.

  Args:
    tf: the TensorFlow module.
    frames: `[T, H, W, C]` float32, `H, W >= size`, `T >= 2`.
    size: side of the patch.
    seed: `[2]` int64, the stateless seed of this example's crop.
    num_candidates: how many random patch positions compete.

  Returns:
    `[T, size, size, C]`, the candidate with the largest sum over its pixels of
    `sum_t ||x_{t+1} - x_t||^2`.
  """
  shape = tf.shape(frames)
  energy = tf.reduce_sum(tf.square(frames[1:] - frames[:-1]), axis=[0, 3])
  # An integral image makes every candidate's box sum four lookups; float64 keeps the
  # differences of large running sums exact enough to rank candidates.
  integral = tf.pad(tf.cumsum(tf.cumsum(tf.cast(energy, tf.float64), axis=0), axis=1),
                    [[1, 0], [1, 0]])
  seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  ys = tf.random.stateless_uniform([num_candidates], seed_y, minval=0,
                                   maxval=shape[1] - size + 1, dtype=tf.int32)
  xs = tf.random.stateless_uniform([num_candidates], seed_x, minval=0,
                                   maxval=shape[2] - size + 1, dtype=tf.int32)

  def corner(y, x):
    return tf.gather_nd(integral, tf.stack([y, x], axis=-1))

  box = (corner(ys + size, xs + size) - corner(ys, xs + size) - corner(ys + size, xs)
         + corner(ys, xs))
  best = tf.argmax(box, output_type=tf.int32)
  y, x = ys[best], xs[best]
  return frames[:, y:y + size, x:x + size, :]


class _TfdsVideoDataset(base.ClipLengths, base.VideoDataset):
  """The deterministic, resumable, per-process training stream shared by the TFDS datasets.

  Subclasses say which records feed training (`_train_records`), what each record keeps before
  the shuffle (`_prepare_record`), how records become clips after it (`_make_clips`), and how the
  test set is read (`_test_clips`).
  """

  # Records consumed by one training example.
  _records_per_example = 1

  def __init__(self, *, seed: int, batch_size: int, num_input_frames: int, image_size: int,
               test_frame_size: int, num_test_clips: int, test_future_frames: int,
               sharding: jax.sharding.Sharding, data_dir: str = '',
               num_crop_candidates: int = 8, shuffle_window: int = 512):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f'seed={seed!r}: expected a non-negative integer')
    self._seed = int(seed)
    self._batch_size = _check_positive('batch_size', batch_size)
    self._num_input_frames = _check_positive('num_input_frames', num_input_frames)
    self._image_size = _check_positive('image_size', image_size)
    self._test_frame_size = _check_positive('test_frame_size', test_frame_size)
    self._num_test_clips = _check_positive('num_test_clips', num_test_clips)
    self._test_future_frames = _check_positive('test_future_frames', test_future_frames)
    self._num_crop_candidates = _check_positive('num_crop_candidates', num_crop_candidates)
    self._shuffle_window = _check_positive('shuffle_window', shuffle_window)
    if not isinstance(data_dir, str):
      raise ValueError(f'data_dir={data_dir!r}: expected a path string ("" for the TFDS default)')
    self._data_dir = data_dir or None
    self._sharding = sharding
    self._process_index = jax.process_index()
    self._process_count = jax.process_count()
    if self._batch_size % self._process_count:
      raise ValueError(
          f'batch_size={batch_size}: expected a multiple of the process count '
          f'{self._process_count}')
    self._per_process_batch = self._batch_size // self._process_count
    self._tf, self._tfds = _import_tf()
    self._iterator = None
    self._next_step = None

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global training batch of `step`, `{'frames': [B, T, image_size, image_size, 3]}`."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
      raise ValueError(f'step={step!r}: expected a non-negative integer')
    step = int(step)
    if self._iterator is None or step != self._next_step:
      self._iterator = self._train_pipeline(step).as_numpy_iterator()
    local = next(self._iterator)
    self._next_step = step + 1
    return base.make_global_batch({'frames': local}, self._sharding)

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The fixed test set, `{'frames': [b, T_test, S, S, 3]}` with `S = test_frame_size`."""
    batch_size = _check_positive('batch_size', batch_size)
    tf = self._tf
    clips = self._test_clips().take(self._num_test_clips)
    clips = clips.batch(batch_size).prefetch(1).with_options(_pipeline_options(tf))
    for frames in clips.as_numpy_iterator():
      yield {'frames': frames}

  def _train_pipeline(self, step: int) -> Any:
    """This process' batches from `step` on, `[B / process_count, T, s, s, 3]` float32."""
    tf = self._tf
    records = self._train_records()
    num_records = int(records.cardinality())
    if num_records < 1:
      raise ValueError(
          f'{self._dataset_name()}: the training split of process {self._process_index} has '
          f'{num_records} records (unknown or empty); expected a prepared, non-empty split')
    first = step * self._per_process_batch * self._records_per_example
    first_epoch, skip = divmod(first, num_records)
    seed, window = self._seed, self._shuffle_window
    process_index, process_count = self._process_index, self._process_count

    def epoch_records(epoch):
      def keyed(index, record):
        # Unique across epochs and processes, and independent of the shuffle.
        example = (epoch * num_records + index) * process_count + process_index
        key = tf.stack([tf.constant(seed, tf.int64), example])
        return self._prepare_record(record, key)

      def permute(window_index, chunk):
        window_seed = tf.stack([tf.constant(seed, tf.int64),
                                epoch * _NUM_EPOCHS_BOUND + window_index])
        scores = tf.random.stateless_uniform(
            tf.shape(chunk['key'])[:1], window_seed, dtype=tf.float32)
        order = tf.argsort(scores)
        return tf.nest.map_structure(lambda x: tf.gather(x, order), chunk)

      chunks = records.enumerate().map(keyed).batch(window).enumerate().map(permute)
      return chunks.unbatch()

    stream = tf.data.Dataset.range(first_epoch, _NUM_EPOCHS_BOUND).flat_map(epoch_records)
    stream = stream.skip(skip)
    clips = self._make_clips(stream)
    batches = clips.batch(self._per_process_batch, drop_remainder=True).prefetch(2)
    return batches.with_options(_pipeline_options(tf))

  def _crop(self, frames: Any, key: Any) -> Any:
    """`[T, H, W, 3]` float32 in [-1, 1] -> the motion-chosen `[T, s, s, 3]` patch."""
    tf = self._tf
    frames = _resize_short_side(tf, frames, self._image_size, grow_only=True)
    crop_seed = tf.random.experimental.stateless_fold_in(key, 1)
    patch = _motion_crop(tf, frames, self._image_size, crop_seed, self._num_crop_candidates)
    return tf.ensure_shape(patch, [self.clip_length, self._image_size, self._image_size, 3])

  @abc.abstractmethod
  def _dataset_name(self) -> str:
    """The TFDS name of the training data, for messages."""

  @abc.abstractmethod
  def _train_records(self) -> Any:
    """This process' training records in their stored order, a finite `tf.data.Dataset`."""

  @abc.abstractmethod
  def _prepare_record(self, record: Any, key: Any) -> dict[str, Any]:
    """What a record keeps through the shuffle: small tensors and its `[2]` int64 `'key'`."""

  @abc.abstractmethod
  def _make_clips(self, stream: Any) -> Any:
    """Prepared records -> training clips `[T, s, s, 3]` float32 in [-1, 1]."""

  @abc.abstractmethod
  def _test_clips(self) -> Any:
    """The selected test clips `[T_test, S, S, 3]` float32 in [-1, 1], in order."""


class Ucf101Dataset(_TfdsVideoDataset):
  """UCF101 (Soomro et al., 2012) from TFDS, split 1: motion-chosen training patches, 4.3 test set.

  Args:
    seed: seeds the stream (shuffle, clip starts, crop candidates).
    batch_size: global training batch size, a multiple of `jax.process_count()`.
    num_input_frames: frames given to the model; a training clip has one more.
    image_size: side of the square training patches.
    test_frame_size: side of the square test frames (short side resized, centre square kept).
    num_test_clips: at most this many test videos.
    test_future_frames: frames to predict in a test clip.
    sharding: the batch sharding of training batches.
    data_dir: TFDS data dir, '' for the TFDS default.
    num_crop_candidates: random patch positions compared per training clip (1: a plain
      random crop).
    shuffle_window: records permuted together in each epoch.
    config_name: the TFDS config, 'ucf101_1' (native 320x240 frames) or 'ucf101_1_256'
      (frames rescaled to 256x256 at preparation).

  Videos shorter than a clip repeat their last frame.
  """

  def __init__(self, *, config_name: str = 'ucf101_1', **kwargs):
    if config_name not in _UCF101_CONFIGS:
      raise ValueError(f'config_name={config_name!r}: expected one of {_UCF101_CONFIGS}')
    self._name = f'ucf101/{config_name}'
    super().__init__(**kwargs)

  def _dataset_name(self) -> str:
    return self._name

  def _video_records(self, split: Any) -> Any:
    # Frames stay JPEG strings until a clip is chosen: a video has ~190 frames, a clip 5.
    return _as_dataset(self._tfds, self._name, self._data_dir, split,
                       decoders={'video': self._tfds.decode.SkipDecoding()})

  def _train_records(self) -> Any:
    split = self._tfds.split_for_jax_process(
        'train', process_index=self._process_index, process_count=self._process_count)
    return self._video_records(split)

  def _first_frames(self, video: Any, start: Any, length: int) -> Any:
    """JPEG strings of frames `start .. start + length - 1`, the last one repeated if short."""
    tf = self._tf
    index = tf.minimum(start + tf.range(length), tf.shape(video)[0] - 1)
    return tf.gather(video, index)

  def _decode(self, jpegs: Any) -> Any:
    tf = self._tf
    frames = tf.map_fn(lambda s: tf.io.decode_image(s, channels=3, expand_animations=False),
                       jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return _to_unit_range(tf, frames)

  def _prepare_record(self, record: Any, key: Any) -> dict[str, Any]:
    tf = self._tf
    video = record['video']
    last_start = tf.maximum(tf.shape(video)[0] - self.clip_length, 0)
    start = tf.random.stateless_uniform(
        [], tf.random.experimental.stateless_fold_in(key, 0), minval=0, maxval=last_start + 1,
        dtype=tf.int32)
    return {'jpegs': self._first_frames(video, start, self.clip_length), 'key': key}

  def _make_clips(self, stream: Any) -> Any:
    tf = self._tf
    return stream.map(lambda ex: self._crop(self._decode(ex['jpegs']), ex['key']),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def _test_clips(self) -> Any:
    tf = self._tf
    size, length = self._test_frame_size, self.test_clip_length

    def clip(record):
      frames = self._decode(self._first_frames(record['video'], 0, length))
      frames = _centre_crop(tf, _resize_short_side(tf, frames, size, grow_only=False), size)
      return tf.ensure_shape(tf.clip_by_value(frames, -1.0, 1.0), [length, size, size, 3])

    records = self._video_records('test').shard(_TEST_STRIDE, 0)
    return records.map(clip, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class MovingMnistDataset(_TfdsVideoDataset):
  """Moving MNIST: training sequences made from TFDS `mnist`, test clips from TFDS `moving_mnist`.

  Args: as `Ucf101Dataset` (without `config_name`); `image_size` is at most 64 and
  `num_input_frames + test_future_frames` at most 20.
  """

  _records_per_example = 2  # two digits per sequence

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    if self._image_size > _MOVING_MNIST_CANVAS:
      raise ValueError(f'image_size={self._image_size}: expected at most '
                       f'{_MOVING_MNIST_CANVAS}, the Moving MNIST canvas')
    if self.test_clip_length > _MOVING_MNIST_LENGTH:
      raise ValueError(
          f'num_input_frames + test_future_frames={self.test_clip_length}: expected at most '
          f'{_MOVING_MNIST_LENGTH}, the length of a Moving MNIST test sequence')

  def _dataset_name(self) -> str:
    return 'mnist'

  def _train_records(self) -> Any:
    split = self._tfds.split_for_jax_process(
        'train', process_index=self._process_index, process_count=self._process_count)
    return _as_dataset(self._tfds, 'mnist', self._data_dir, split)

  def _prepare_record(self, record: Any, key: Any) -> dict[str, Any]:
    return {'image': record['image'], 'key': key}

  def _moving_digit(self, digit: dict[str, Any]) -> dict[str, Any]:
    """One digit bouncing on the canvas, `[T, 64, 64, 1]` uint8."""
    tf = self._tf
    moving_sequence = self._tfds.video.moving_sequence
    start_seed, direction_seed = tf.unstack(
        tf.random.experimental.stateless_split(digit['key'], num=2))
    start = tf.random.stateless_uniform([2], start_seed, dtype=tf.float32)
    direction = tf.random.stateless_normal([2], direction_seed, dtype=tf.float32)
    velocity = _MOVING_MNIST_SPEED * direction / tf.maximum(tf.norm(direction), 1e-6)
    sequence = moving_sequence.image_as_moving_sequence(
        digit['image'], sequence_length=self.clip_length,
        output_size=(_MOVING_MNIST_CANVAS, _MOVING_MNIST_CANVAS),
        velocity=velocity, start_position=start)
    return {'sequence': sequence.image_sequence, 'key': digit['key']}

  def _overlay(self, pair: dict[str, Any]) -> Any:
    """Two moving digits `[2, T, 64, 64, 1]` -> their clipped sum, cropped, `[T, s, s, 3]`."""
    tf = self._tf
    canvas = tf.minimum(tf.reduce_sum(tf.cast(pair['sequence'], tf.int32), axis=0), 255)
    frames = tf.tile(_to_unit_range(tf, canvas), [1, 1, 1, 3])
    return self._crop(frames, pair['key'][0])

  def _make_clips(self, stream: Any) -> Any:
    tf = self._tf
    digits = stream.map(self._moving_digit, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
    return digits.batch(2, drop_remainder=True).map(
        self._overlay, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def _test_clips(self) -> Any:
    tf = self._tf
    size, length = self._test_frame_size, self.test_clip_length

    def clip(record):
      frames = _to_unit_range(tf, record['image_sequence'][:length])
      if size != _MOVING_MNIST_CANVAS:
        frames = _centre_crop(tf, _resize_short_side(tf, frames, size, grow_only=False), size)
        frames = tf.clip_by_value(frames, -1.0, 1.0)
      return tf.ensure_shape(tf.tile(frames, [1, 1, 1, 3]), [length, size, size, 3])

    records = _as_dataset(self._tfds, 'moving_mnist', self._data_dir, 'test')
    return records.shard(_TEST_STRIDE, 0).map(clip, num_parallel_calls=tf.data.AUTOTUNE,
                                              deterministic=True)


def _config_kwargs(config: Any, sharding: jax.sharding.Sharding) -> dict[str, Any]:
  return dict(seed=config.seed, batch_size=config.batch_size,
              num_input_frames=config.num_input_frames, image_size=config.image_size,
              test_frame_size=config.test_frame_size, num_test_clips=config.num_test_clips,
              test_future_frames=config.test_future_frames, sharding=sharding,
              data_dir=config.tfds_data_dir)


def ucf101_from_config(config: Any, sharding: jax.sharding.Sharding) -> Ucf101Dataset:
  """`Ucf101Dataset` built from a config.

  Args:
    config: has seed, batch_size, num_input_frames, image_size, test_frame_size,
      num_test_clips, test_future_frames and tfds_data_dir.
    sharding: the batch sharding of training batches.
  """
  return Ucf101Dataset(**_config_kwargs(config, sharding))


def moving_mnist_from_config(config: Any, sharding: jax.sharding.Sharding
                             ) -> MovingMnistDataset:
  """`MovingMnistDataset` built from the config fields that `ucf101_from_config` reads."""
  return MovingMnistDataset(**_config_kwargs(config, sharding))
