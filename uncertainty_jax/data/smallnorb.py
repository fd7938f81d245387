"""`smallnorb`: triplets of NORB frames along constant-speed pose trajectories (3.3.2-3.3.3).

Section 3.3.2 trains on "simulated videos generated using the NORB dataset rescaled to 32x32 ...
by tracing constant speed trajectories with random starting points in the two-dimensional latent
space of pitch and azimuth rotations". This module reads the real images from TensorFlow Datasets
`smallnorb` (LeCun, Huang & Bottou, 2004); `uncertainty_jax.data.rotations` is the procedural
stand-in with the same interface.

The grid. A smallNORB split photographs 5 categories x 5 instances under 6 lightings at
9 elevations (index `e`: 30 + 5e degrees) and 18 azimuths (index `a`: 20a degrees), one 96x96
grayscale image per cell (the second camera of the stereo pair, TFDS `image2`, is not used). The
training split holds instances 4, 6, 7, 8, 9 of each category, the test split 0, 1, 2, 3, 5. Each
split is loaded once into memory as a lookup table `[5, 5, 6, 9, 18, S, S, 1]` (category, instance
in `TRAIN_INSTANCES` or `TEST_INSTANCES` order, lighting, elevation, azimuth), each image resized
to `S = image_size` with an area (box) filter (`tf.image.resize(method='area')`: the mean of each
`96/S` x `96/S` block when `S` divides 96) and mapped to [-1, 1] by `v / 127.5 - 1`. The table
takes `24300 * S * S * 4` bytes per split (100 MB at `S = 32`). A split that lacks a cell, has one
twice, or holds an instance of the other split is an error that names the cell.

Trajectories move on the grid. A trajectory draws, uniformly and independently: a category, an
instance of the split, a lighting, a starting azimuth index, an azimuth velocity of +-1 step
(20 degrees) per frame, an elevation velocity of -1, 0 or +1 step (5 degrees) per frame, and a
starting elevation index among those that keep the elevation index in 0..8 for `t` in [0, 4].
The cell at integer time `t` is `e(t) = e + (t - 1) ve`, `a(t) = (a + (t - 1) va) mod 18`
(azimuth wraps around). Frame `t` of a triplet (`t` = 1, 2, 3) is the image of the cell at
time `t`; with `skip` (3.3.3) the third frame is at time `3 + s`, `s ~ Bernoulli(1/2)`, so that
"rotation angles 0, 20, 40 and 0, 20, 60 are equally likely".

Half steps (`HALF_STEP`). NORB has no image between its grid cells, so `test_trajectories` gives,
at the half-integer times 1/2, 3/2, 5/2 of the interpolation figures (3.5-3.7), the pixel mean of
the images at the two neighbouring integer times: a stand-in for the ground truth, not a
photograph of the intermediate pose.

Randomness. Training row `i` of step `k` is a pure function of `(seed, k, i)` (`fold_in` of the
step, then of the row, into the training key), so batches do not depend on the process count;
each process builds its `batch_size / process_count` consecutive rows from its own copy of the
table and `base.make_global_batch` assembles them. The test set is trajectories
`0..num_test - 1` of the test instances, drawn from the test key.

TensorFlow and TensorFlow Datasets are optional dependencies, imported on first use
(`pip install 'uncertainty_jax[tfds]'`). The data must be prepared once with
`tfds build smallnorb` (about 250 MB downloaded).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import tfds_video

TFDS_NAME = 'smallnorb'
NUM_CATEGORIES = 5
NUM_LIGHTINGS = 6
NUM_ELEVATIONS = 9  # index e: 30 + 5e degrees
NUM_AZIMUTHS = 18  # index a: 20a degrees
NATIVE_SIZE = 96
# Sorted: an instance's slot in its split's table is its rank.
TRAIN_INSTANCES = (4, 6, 7, 8, 9)
TEST_INSTANCES = (0, 1, 2, 3, 5)
SPLIT_INSTANCES = {'train': TRAIN_INSTANCES, 'test': TEST_INSTANCES}
# Grid steps per frame.
AZIMUTH_VELOCITIES = (-1, 1)
ELEVATION_VELOCITIES = (-1, 0, 1)
# Times of the figures' interpolations (3.3.2): the triplet is t = 1, 2, 3.
INTERPOLATION_TIMES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
# What `test_trajectories` shows at the half-integer times, where NORB has no image.
HALF_STEP = 'mean of neighbours'
# Every trajectory keeps its elevation on the grid over this span of times: the interpolations
# start at t = 0 and a skipped third frame lands at t = 4.
_TIME_SPAN = (0, 4)
_NUM_DRAWS = 8
_LABELS = ('label_category', 'instance', 'label_lighting', 'label_elevation', 'label_azimuth')
_CELL_NAMES = ('category', 'instance', 'lighting', 'elevation', 'azimuth')
_LOAD_BATCH = 1024


def _check_positive(**values) -> None:
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
      raise ValueError(f'{name}={value!r}: expected a positive integer.')


def _describe_cell(instances: Sequence[int], index: Sequence[int]) -> str:
  """`'(category, ..., azimuth) = (c, i, l, e, a)'` with the NORB instance number."""
  category, slot, lighting, elevation, azimuth = (int(v) for v in index)
  return (f'({", ".join(_CELL_NAMES)}) = '
          f'({category}, {instances[slot]}, {lighting}, {elevation}, {azimuth})')


def load_split(split: str, *, image_size: int, data_dir: str = '') -> np.ndarray:
  """Reads a prepared smallNORB split into its lookup table.

  Args:
    split: 'train' or 'test'.
    image_size: `S`, the side the 96x96 images are resized to (area filter).
    data_dir: the TFDS data dir, '' for the TFDS default.

  Returns:
    `[5, 5, 6, 9, 18, S, S, 1]` float32 in [-1, 1], read-only: the image of (category, instance
    in `SPLIT_INSTANCES[split]` order, lighting, elevation index, azimuth index).

  Raises:
    FileNotFoundError: the dataset is not prepared in `data_dir` (the message says how to).
    ValueError: bad arguments, or the split does not hold exactly one image per cell of its
      instances (the message names the first offending cell).
  """
  if split not in SPLIT_INSTANCES:
    raise ValueError(f'split={split!r}: expected one of {sorted(SPLIT_INSTANCES)}.')
  _check_positive(image_size=image_size)
  if not isinstance(data_dir, str):
    raise ValueError(f'data_dir={data_dir!r}: expected a path string ("" for the TFDS default).')
  tf, tfds = base.import_tfds('the smallNORB dataset')
  instances = SPLIT_INSTANCES[split]
  # Only the first camera and the labels are decoded: the stereo twin doubles the reading cost.
  features = tfds.decode.PartialDecoding({name: True for name in ('image',) + _LABELS})
  records = tfds_video._as_dataset(  # pylint: disable=protected-access
      tfds, TFDS_NAME, data_dir or None, split, decoders=features)

  def to_unit_range(batch):
    images = tf.cast(batch['image'], tf.float32)
    if image_size != NATIVE_SIZE:
      images = tf.image.resize(images, (image_size, image_size), method='area')
    labels = tf.stack([tf.cast(batch[name], tf.int32) for name in _LABELS], axis=-1)
    return tf.clip_by_value(images / 127.5 - 1.0, -1.0, 1.0), labels

  batches = (records.batch(_LOAD_BATCH)
             .map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))

  grid = (NUM_CATEGORIES, len(instances), NUM_LIGHTINGS, NUM_ELEVATIONS, NUM_AZIMUTHS)
  table = np.zeros(grid + (image_size, image_size, 1), np.float32)
  counts = np.zeros(grid, np.int64)
  for images, labels in batches.as_numpy_iterator():
    foreign = ~np.isin(labels[:, 1], instances)
    if foreign.any():
      raise ValueError(f'{TFDS_NAME} split {split!r}: a record of instance '
                       f'{int(labels[foreign][0, 1])}; expected only instances {instances}.')
    index = (labels[:, 0], np.searchsorted(instances, labels[:, 1]), labels[:, 2], labels[:, 3],
             labels[:, 4])
    table[index] = images
    np.add.at(counts, index, 1)
  for wrong, what in ((counts == 0, 'has no image'), (counts > 1, 'has several images')):
    if wrong.any():
      cells = np.argwhere(wrong)
      raise ValueError(f'{TFDS_NAME} split {split!r} {what} for '
                       f'{_describe_cell(instances, cells[0])} ({len(cells)} such cells); '
                       f'expected one image per cell of the grid {grid}.')
  table.setflags(write=False)
  return table


def _example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  # fold_in by index rather than split(key, n): row i then does not depend on the batch size.
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


def _pick(draw: jax.Array, options: jax.Array) -> jax.Array:
  """The option at a uniform `draw` in [0, 1): each equally likely."""
  count = options.shape[0]
  return options[jnp.minimum(jnp.floor(draw * count).astype(jnp.int32), count - 1)]


def sample_trajectories(key: jax.Array, indices: jax.Array, *, instances: Sequence[int],
                        skip: bool) -> dict[str, jax.Array]:
  """Draws the trajectories numbered `indices` of the stream of `key`; pure and jit-able.

  Args:
    key: a JAX random key.
    indices: `[n]` integers; trajectory `i` depends only on `key` and `i`.
    instances: the NORB instances to draw from (`TRAIN_INSTANCES` or `TEST_INSTANCES`).
    skip: whether the third frame skips one step with probability 1/2.

  Returns:
    `[n]` int32 arrays: `'category'`, `'instance'` (the NORB instance number), `'lighting'`,
    `'elevation'` and `'azimuth'` (grid indices at `t = 1`), `'elevation_velocity'` and
    `'azimuth_velocity'` (grid steps per frame) and `'skip'` (0 or 1).
  """
  instance_options = jnp.asarray(instances, jnp.int32)
  elevation_options = jnp.asarray(ELEVATION_VELOCITIES, jnp.int32)
  first, last = _TIME_SPAN

  def one(row_key):
    u = jax.random.uniform(row_key, (_NUM_DRAWS,))
    elevation_velocity = _pick(u[5], elevation_options)
    # e(t) = e + (t - 1) ve must stay in [0, NUM_ELEVATIONS - 1] at both ends of the span.
    offsets = jnp.stack([(first - 1) * elevation_velocity, (last - 1) * elevation_velocity])
    lowest = -jnp.min(offsets)
    highest = NUM_ELEVATIONS - 1 - jnp.max(offsets)
    return {
        'category': _pick(u[0], jnp.arange(NUM_CATEGORIES, dtype=jnp.int32)),
        'instance': _pick(u[1], instance_options),
        'lighting': _pick(u[2], jnp.arange(NUM_LIGHTINGS, dtype=jnp.int32)),
        'elevation': jnp.minimum(
            lowest + jnp.floor(u[6] * (highest - lowest + 1)).astype(jnp.int32), highest),
        'azimuth': _pick(u[3], jnp.arange(NUM_AZIMUTHS, dtype=jnp.int32)),
        'elevation_velocity': elevation_velocity,
        'azimuth_velocity': _pick(u[4], jnp.asarray(AZIMUTH_VELOCITIES, jnp.int32)),
        'skip': ((u[7] < 0.5) & skip).astype(jnp.int32),
    }

  return jax.vmap(one)(_example_keys(key, jnp.asarray(indices)))


def grid_cells(trajectories: dict[str, np.ndarray], times: Any) -> tuple[np.ndarray, np.ndarray]:
  """The grid cells of trajectories at integer times.

  Args:
    trajectories: `[n]` arrays of `sample_trajectories` (numpy).
    times: `[T]` or `[n, T]` integer times, within [0, 4] for trajectories drawn here.

  Returns:
    `(elevations, azimuths)`, `[n, T]` int64 grid indices: `e + (t - 1) ve` and
    `(a + (t - 1) va) mod 18`.
  """
  times = np.asarray(times)
  if not np.issubdtype(times.dtype, np.integer):
    raise ValueError(f'times={times!r}: expected integers (NORB has images at whole steps only).')
  count = np.shape(trajectories['azimuth'])[0]
  steps = np.broadcast_to(times.astype(np.int64) - 1, (count, times.shape[-1]))
  elevations = np.asarray(trajectories['elevation'])[:, None] + steps * np.asarray(
      trajectories['elevation_velocity'])[:, None]
  azimuths = (np.asarray(trajectories['azimuth'])[:, None]
              + steps * np.asarray(trajectories['azimuth_velocity'])[:, None]) % NUM_AZIMUTHS
  if elevations.min() < 0 or elevations.max() >= NUM_ELEVATIONS:
    raise ValueError(f'times={times.tolist()!r}: the elevation leaves the grid 0..'
                     f'{NUM_ELEVATIONS - 1} for some trajectories.')
  return elevations, azimuths


def triplet_times(trajectories: dict[str, np.ndarray]) -> np.ndarray:
  """`[n, 3]` integer times of a triplet's frames: `1, 2, 3 + skip`."""
  skip = np.asarray(trajectories['skip'], np.int64)
  return np.stack([np.ones_like(skip), 2 * np.ones_like(skip), 3 + skip], axis=-1)


class SmallNorbTriplets(base.ClipLengths, base.VideoDataset):
  """Triplets of smallNORB frames along constant-speed pose trajectories (3.3.2-3.3.3).

  `train_batch(step)` is `{'frames': [B, 3, S, S, 1], 'skip': [B] int32}` from the training
  split; `test_batches` yields the fixed test set of `num_test` triplets of the test split;
  `test_trajectories(num)` gives the first test trajectories at `INTERPOLATION_TIMES`, the
  half-integer times as the mean of their neighbours (`HALF_STEP`). See the module docstring.

  Args:
    seed: seeds the training and test trajectories.
    batch_size: global training batch size, a multiple of `jax.process_count()`.
    sharding: the batch sharding of training batches.
    image_size: `S`, the side the 96x96 images are resized to.
    skip: whether the third frame skips one step with probability 1/2 (3.3.3).
    num_test: test triplets.
    data_dir: the TFDS data dir, '' for the TFDS default.

  Both splits are read when the dataset is built, so an unprepared or incomplete dataset fails
  at once.
  """

  def __init__(self, seed: int, batch_size: int, sharding: jax.sharding.Sharding, *,
               image_size: int = 32, skip: bool = False, num_test: int = 256,
               data_dir: str = ''):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
      raise ValueError(f'seed={seed!r}: expected an integer.')
    _check_positive(batch_size=batch_size, image_size=image_size, num_test=num_test)
    if not isinstance(skip, (bool, np.bool_)):
      raise ValueError(f'skip={skip!r}: expected a bool.')
    if not isinstance(data_dir, str):
      raise ValueError(f'data_dir={data_dir!r}: expected a path string ("" for the TFDS '
                       'default).')
    if not isinstance(sharding, jax.sharding.Sharding):
      raise ValueError(f'sharding={sharding!r}: expected a jax.sharding.Sharding.')
    try:
      sharding.shard_shape((batch_size, 3, image_size, image_size, 1))
    except ValueError as error:
      raise ValueError(f'batch_size={batch_size}: the sharding cannot split it ({error}).'
                       ) from None
    if batch_size % jax.process_count():
      raise ValueError(f'batch_size={batch_size}: expected a multiple of the process count '
                       f'{jax.process_count()}.')

    self.batch_size = int(batch_size)
    self.image_size = int(image_size)
    self.channels = 1
    self.skip = bool(skip)
    self.num_test = int(num_test)
    self.sharding = sharding
    self._num_input_frames, self._test_future_frames = 2, 1
    self.train_images = load_split('train', image_size=self.image_size, data_dir=data_dir)
    self.test_images = load_split('test', image_size=self.image_size, data_dir=data_dir)
    self.train_key, self.test_key = jax.random.split(jax.random.key(seed))
    sample = functools.partial(sample_trajectories, skip=self.skip)
    self._sample_train = functools.partial(sample, instances=TRAIN_INSTANCES)
    self._sample_test = functools.partial(sample, instances=TEST_INSTANCES)
    local_rows = self.batch_size // jax.process_count()
    self._local_indices = np.arange(local_rows) + jax.process_index() * local_rows
    self._train_params_fn = jax.jit(self._train_params)
    self._test_params: dict[str, np.ndarray] | None = None
    self._test_frames: np.ndarray | None = None

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> SmallNorbTriplets:
    """Builds the dataset from a config.

    Reads `seed`, `batch_size`, `image_size`, `skip`, `num_test_clips` (as `num_test`) and, if
    present, `tfds_data_dir` (as `data_dir`).
    """
    return cls(config.seed, config.batch_size, sharding, image_size=config.image_size,
               skip=config.skip, num_test=config.num_test_clips,
               data_dir=config.get('tfds_data_dir', ''))

  def _train_params(self, step: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
    return self._sample_train(jax.random.fold_in(self.train_key, step), indices)

  def _frames(self, images: np.ndarray, instances: Sequence[int],
              trajectories: dict[str, np.ndarray], times: Any) -> np.ndarray:
    """`[n, T, S, S, 1]` images of the trajectories' cells at integer `times` (`[T]` or
    `[n, T]`), looked up in a split's table."""
    elevations, azimuths = grid_cells(trajectories, times)
    slots = np.searchsorted(instances, trajectories['instance'])
    return images[np.asarray(trajectories['category'])[:, None], slots[:, None],
                  np.asarray(trajectories['lighting'])[:, None], elevations, azimuths]

  def train_params(self, step: int) -> dict[str, np.ndarray]:
    """The trajectories of the global batch of `step`: `[B]` arrays of `sample_trajectories`."""
    base.check_step(step)
    return jax.device_get(self._train_params_fn(np.uint32(step), np.arange(self.batch_size)))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step`: `{'frames': [B, 3, S, S, 1], 'skip': [B] int32}`, sharded.

    `'skip'` is 1 where the third frame is at `t = 4` rather than 3 (always 0 without `skip`).
    """
    base.check_step(step)
    params = jax.device_get(self._train_params_fn(np.uint32(step), self._local_indices))
    frames = self._frames(self.train_images, TRAIN_INSTANCES, params, triplet_times(params))
    return base.make_global_batch({'frames': frames, 'skip': params['skip']}, self.sharding)

  @property
  def test_params(self) -> dict[str, np.ndarray]:
    """The test set's trajectories: `[num_test]` arrays of `sample_trajectories`."""
    if self._test_params is None:
      params = jax.device_get(jax.jit(self._sample_test)(self.test_key,
                                                         np.arange(self.num_test)))
      for value in params.values():
        value.setflags(write=False)
      self._test_params = params
    return self._test_params

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields the fixed test set in order.

    Each batch is `{'frames': [b, 3, S, S, 1], 'skip': [b]}` with `b <= batch_size`; the arrays
    are read-only views.
    """
    _check_positive(batch_size=batch_size)
    params = self.test_params
    if self._test_frames is None:
      frames = self._frames(self.test_images, TEST_INSTANCES, params, triplet_times(params))
      frames.setflags(write=False)
      self._test_frames = frames
    for start in range(0, self.num_test, batch_size):
      yield {'frames': self._test_frames[start:start + batch_size],
             'skip': params['skip'][start:start + batch_size]}

  def test_trajectories(self, num: int) -> np.ndarray:
    """The first `num` test trajectories at `INTERPOLATION_TIMES` (t = 0, 1/2, ..., 3), without
    the skip: the ground truth of the interpolation figures 3.5-3.7.

    At the integer times these are the grid images; at the half-integer times, where NORB has
    no image, the mean of the images at the two neighbouring integer times (`HALF_STEP`).

    Returns:
      `[num, 7, S, S, 1]` float32 in [-1, 1], read-only; `[:, 2::2]` are the frames at t = 1, 2, 3.
    """
    _check_positive(num=num)
    if num > self.num_test:
      raise ValueError(f'num={num}: expected at most num_test ({self.num_test}).')
    params = {name: value[:num] for name, value in self.test_params.items()}
    whole = self._frames(self.test_images, TEST_INSTANCES, params, np.arange(4))
    frames = np.empty((num, len(INTERPOLATION_TIMES)) + whole.shape[2:], np.float32)
    frames[:, 0::2] = whole
    frames[:, 1::2] = 0.5 * (whole[:, :-1] + whole[:, 1:])
    frames.setflags(write=False)
    return frames
