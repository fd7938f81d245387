"""Chapter 5's same-identity pairs on digits, MNIST, toys, smallNORB, dSprites and 3D Shapes.

Each class is an `identity.IdentityDataset`; the identity is what the label of 5.3 specifies:

* `digits` (`DigitPairs`): scikit-learn's 8x8 digits with the split and pixel mapping of
  `images.Digits` (1437 train, 360 test images); identity and only factor: the class.
* `mnist` (`MnistPairs`): TFDS `mnist` as `images.Mnist` loads it (60000 train, 10000 test),
  each 28x28 digit padded by 2 pixels of the background value -1 on every side to 32x32, the
  size the DCGAN-style networks of Table 5.1 halve down to 4x4; identity: the class.
* `toys` (`ToyPairs`): the NORB-like toys of `toys`, rendered on the fly. The identity is the
  instance, one attribute numbered `category * toys.NUM_INSTANCES + instance` (50 values): the
  25 instances of `toys.TRAIN_INSTANCES` train, the other 25 are the test identities (5.4.4).
  Poses are drawn uniformly: azimuth in [0, 360) degrees, elevation in [30, 70] degrees
  (NORB's range), and one of the `toys.NUM_LIGHTS` lights.
* `smallnorb` (`SmallNorbPairs`): TFDS `smallnorb` through `smallnorb.load_split` (the grid
  `[5, 5, 6, 9, 18, S, S, 1]` per split). The identity is the instance, numbered
  `category * 10 + instance` (50 values); smallNORB's splits hold disjoint instances.
* `dsprites` (`DSpritesPairs`): TFDS `dsprites` (737,280 binary 64x64 sprites); identity: the
  shape (3 values); factors: shape, and the TFDS `value_*` of scale, orientation (radians), x and
  y (in [0, 1]).
* `shapes3d` (`Shapes3DPairs`): TFDS `shapes3d` (480,000 RGB 64x64 scenes); identity: (shape,
  object hue) (4 x 10 values); factors: those two labels, then the TFDS `value_*` of floor hue,
  wall hue, scale and orientation (degrees).

dSprites and 3D Shapes have one TFDS split and far more images than a host wants to hold as
float32, so they read the first `num_images` records (default 100,000) in TFDS' stored order,
which TFDS shuffles at preparation from a hash of each example's key: a fixed subset spread over
the factor grid. Record `k` of that subset is a test image when the SplitMix64 hash of `k` falls
in a fixed 10% of its range (`_is_test`), so the split does not depend on `num_images`. Both are
area-averaged from 64x64 to `image_size`, which must divide 64 (each output pixel is the mean of
a `64 / image_size` square block), and stored as exact integer block sums (a few hundred MB at
the defaults); images are mapped to [-1, 1] by `2 * v / max - 1` (dSprites' pixels are 0 or 1,
3D Shapes' 0..255).

Training pairs (Algorithm 5.1). Every dataset but the toys holds its training split in memory
(`InMemoryPairs`), sorted by identity. Batch `k` draws its `B` rows from the numpy Generator
`np.random.default_rng([seed, k])`, as three `[B]` draws in turn: `y1` uniformly over the
training images; `y1_same` uniformly among the other images of `y1`'s identity (`y1` itself
when the identity has one image); `y2` uniformly among the images of the other identities.
Each process takes its `B / process_count` consecutive rows (`process_index` giving the block),
so batches do not depend on the process count; `base.make_global_batch` assembles them. The toys
draw, for row `i` of step `k`, from `fold_in(fold_in(train_key, k), i)`: a training identity
uniformly, another training identity uniformly, and three independent poses, then render the
three images in one jitted program per step.

`arrays(split)`: the whole split for `digits` and `mnist`; for `smallnorb`, `dsprites` and
`shapes3d`, a fixed sample (independent of the seed) of `num_eval_images` (default 2048) images
of the split; for `toys`, examples `0 .. num_eval_images - 1` of the split's evaluation stream,
drawn from the seed on keys apart from the training key and rendered once.

TensorFlow and TensorFlow Datasets are imported only by the TFDS datasets (`base.import_tfds`).
"""

from __future__ import annotations

import abc
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import identity
from uncertainty_jax.data import images
from uncertainty_jax.data import smallnorb
from uncertainty_jax.data import toys

DEFAULT_NUM_EVAL_IMAGES = 2048
DEFAULT_NUM_IMAGES = 100_000
# The share of dSprites' and 3D Shapes' records held out for testing, per mille.
TEST_PER_MILLE = 100
# NORB's elevations, degrees: the toys' elevation range.
TOY_ELEVATIONS = (30.0, 70.0)
# Seeds the fixed evaluation samples, which do not depend on the config's seed.
_EVAL_SALT = 0x1D5E7
# Records per tf.data batch when reading a TFDS dataset into memory.
_LOAD_CHUNK = 4096
# Toys per compiled call of `ToyPairs.render`: one program for any count.
_RENDER_CHUNK = 64
# Uniform draws per toy row: two identities and three poses of three coordinates.
_TOY_TRAIN_DRAWS = 11
_TOY_EVAL_DRAWS = 4
_NORB_INSTANCES = len(smallnorb.TRAIN_INSTANCES) + len(smallnorb.TEST_INSTANCES)


def _read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  for array in arrays.values():
    array.setflags(write=False)
  return arrays


def _local_rows(batch_size: int) -> slice:
  """This process' block of `batch_size / process_count` consecutive rows."""
  local = batch_size // jax.process_count()
  first = jax.process_index() * local
  return slice(first, first + local)


class SplitTable(NamedTuple):
  """One split held on the host.

  Attributes:
    images: `[N, H, W, C]` stored pixels; the image is `images * scale + offset` (float32
      storage has scale 1 and offset 0, and is served as it is).
    identity: `[N, A]` int32 identity attributes.
    factors: `[N, F]` float32, the columns of `factor_names`.
    scale: multiplies the stored pixels.
    offset: added after `scale`.
  """

  images: np.ndarray
  identity: np.ndarray
  factors: np.ndarray
  scale: float = 1.0
  offset: float = 0.0


class InMemoryPairs(identity.IdentityDataset):
  """An identity dataset whose splits are host tables, paired as the module docstring says.

  Subclasses set the class attributes of `IdentityDataset` (and `sample_shape` before calling
  this constructor) and implement `_load_tables`.

  Args:
    seed: a non-negative integer; seeds the training pairs.
    batch_size: global training batch size, a multiple of the process count and of the
      sharding's batch shards.
    sharding: the sharding of `[B, H, W, C]` training batches.
    num_eval_images: `arrays(split)` holds at most this many images of the split (a fixed
      sample); None for the whole split.
  """

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               num_eval_images: int | None = None):
    self.seed = images.check_seed(seed)
    images.check_batch_sharding(batch_size, sharding, self.sample_shape)
    self.batch_size = int(batch_size)
    self.sharding = sharding
    self.num_eval_images = (None if num_eval_images is None
                            else images.check_positive('num_eval_images', num_eval_images))
    tables = self._load_tables()
    self._tables = {split: self._checked(split, tables[split]) for split in identity.SPLITS}
    self._group_training()
    self._eval_rows = {split: self._sample_rows(split) for split in identity.SPLITS}
    self._arrays: dict[str, dict[str, np.ndarray]] = {}

  @abc.abstractmethod
  def _load_tables(self) -> dict[str, SplitTable]:
    """`{'train': SplitTable, 'test': SplitTable}`."""

  def _checked(self, split: str, table: SplitTable) -> SplitTable:
    count = len(table.images)
    if count == 0:
      raise ValueError(f'{self.name}: the {split} split has no images; expected at least one.')
    if table.images.shape[1:] != self.sample_shape:
      raise ValueError(f'{self.name}: {split} images of shape {table.images.shape[1:]}; '
                       f'expected {self.sample_shape}.')
    if table.identity.shape != (count, len(self.identity_sizes)):
      raise ValueError(f'{self.name}: {split} identities of shape {table.identity.shape}; '
                       f'expected {(count, len(self.identity_sizes))}.')
    if table.factors.shape != (count, len(self.factor_names)):
      raise ValueError(f'{self.name}: {split} factors of shape {table.factors.shape}; '
                       f'expected {(count, len(self.factor_names))}.')
    sizes = np.asarray(self.identity_sizes)
    if np.any(table.identity < 0) or np.any(table.identity >= sizes):
      raise ValueError(f'{self.name}: a {split} identity outside identity_sizes '
                       f'{self.identity_sizes}.')
    identities = np.ascontiguousarray(table.identity, np.int32)
    factors = np.ascontiguousarray(table.factors, np.float32)
    for array in (table.images, identities, factors):
      array.setflags(write=False)
    return table._replace(identity=identities, factors=factors)

  def _group_training(self) -> None:
    """Sorts the training split by identity: each identity is a block of `_order`."""
    table = self._tables['train']
    keys = np.ravel_multi_index(tuple(table.identity.T), self.identity_sizes)
    order = np.argsort(keys, kind='stable')
    _, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    if len(counts) < 2:
      raise ValueError(f'{self.name}: the training split has {len(counts)} identity; expected '
                       'at least 2 (y2 needs an identity other than that of y1).')
    group = np.repeat(np.arange(len(counts)), counts)
    # Per example: where its identity's block starts in `_order`, its length, and the
    # example's position in it.
    self._order = order
    self._start = np.empty_like(order)
    self._count = np.empty_like(order)
    self._rank = np.empty_like(order)
    self._start[order] = starts[group]
    self._count[order] = counts[group]
    self._rank[order] = np.arange(len(order)) - starts[group]
    self.num_train_identities = len(counts)

  def _sample_rows(self, split: str) -> np.ndarray | None:
    """Rows of the split's table that `arrays(split)` holds, ascending (None: every row)."""
    count = len(self._tables[split].images)
    if self.num_eval_images is None or self.num_eval_images >= count:
      return None
    rng = np.random.default_rng([_EVAL_SALT, identity.SPLITS.index(split)])
    return np.sort(rng.choice(count, self.num_eval_images, replace=False))

  def _float_images(self, table: SplitTable, rows: np.ndarray | None) -> np.ndarray:
    stored = table.images if rows is None else table.images[rows]
    if stored.dtype == np.float32 and table.scale == 1.0 and table.offset == 0.0:
      return stored
    return stored.astype(np.float32) * np.float32(table.scale) + np.float32(table.offset)

  def train_indices(self, step: int) -> dict[str, np.ndarray]:
    """Rows of the training table in this process' rows of the batch of `step`.

    Returns:
      `'y1'`, `'y1_same'`, `'y2'`: `[B / process_count]` int64 each, rows of the training split
      (of `arrays('train')` where that is the whole split, as for digits and MNIST).
    """
    base.check_step(step)
    rng = np.random.default_rng([self.seed, int(step)])
    size = len(self._order)
    y1 = rng.integers(size, size=self.batch_size)
    start, count, rank = self._start[y1], self._count[y1], self._rank[y1]
    # Another member of the block, skipping y1's own position.
    other = rng.integers(np.maximum(count - 1, 1))
    y1_same = self._order[start + np.where(count > 1, other + (other >= rank), rank)]
    # A position outside the block of y1's identity.
    outside = rng.integers(size - count)
    y2 = self._order[np.where(outside < start, outside, outside + count)]
    rows = _local_rows(self.batch_size)
    return {'y1': y1[rows], 'y1_same': y1_same[rows], 'y2': y2[rows]}

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step` (see `identity.IdentityDataset.train_batch`)."""
    indices = self.train_indices(step)
    table = self._tables['train']
    local = {name: self._float_images(table, rows) for name, rows in indices.items()}
    local['id1'] = table.identity[indices['y1']]
    local['id2'] = table.identity[indices['y2']]
    return base.make_global_batch(local, self.sharding)

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """`{'images': [N, H, W, C], 'identity': [N, A], 'factors': [N, F]}`, read-only."""
    if identity.check_split(split) not in self._arrays:
      table, rows = self._tables[split], self._eval_rows[split]
      self._arrays[split] = _read_only({
          'images': self._float_images(table, rows),
          'identity': table.identity if rows is None else table.identity[rows],
          'factors': table.factors if rows is None else table.factors[rows],
      })
    return self._arrays[split]


class DigitPairs(InMemoryPairs):
  """scikit-learn's 8x8 digits split as `images.Digits`; the identity is the class.

  Args:
    seed, batch_size, sharding: as `InMemoryPairs`.
  """

  name = 'digits'
  sample_shape = images.Digits.sample_shape
  identity_names = ('digit',)
  identity_sizes = (10,)
  factor_names = ('digit',)
  factor_discrete = (True,)
  probe_names = ('digit',)
  pose_names = ()

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding):
    super().__init__(seed=seed, batch_size=batch_size, sharding=sharding)

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> DigitPairs:
    """Reads `seed` and `batch_size`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding)

  def _load_tables(self) -> dict[str, SplitTable]:
    source = images.Digits(seed=self.seed, batch_size=self.batch_size, sharding=self.sharding)
    return {split: _class_table(source.arrays(split)) for split in identity.SPLITS}


class MnistPairs(InMemoryPairs):
  """TFDS `mnist` loaded by `images.Mnist`, padded with -1 to 32x32; the identity is the class.

  Args:
    seed, batch_size, sharding: as `InMemoryPairs`.
    data_dir: TFDS data dir, '' for the TFDS default.
  """

  name = 'mnist'
  sample_shape = (32, 32, 1)
  identity_names = ('digit',)
  identity_sizes = (10,)
  factor_names = ('digit',)
  factor_discrete = (True,)
  probe_names = ('digit',)
  pose_names = ()
  # Background pixels added on each side of the 28x28 digits.
  padding = 2

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               data_dir: str = ''):
    self._data_dir = data_dir
    super().__init__(seed=seed, batch_size=batch_size, sharding=sharding)

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> MnistPairs:
    """Reads `seed`, `batch_size` and, if present, `data_dir`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               data_dir=config.get('data_dir', ''))

  def _load_tables(self) -> dict[str, SplitTable]:
    source = images.Mnist(seed=self.seed, batch_size=self.batch_size, sharding=self.sharding,
                          data_dir=self._data_dir)
    tables = {}
    for split in identity.SPLITS:
      arrays = source.arrays(split)
      pad = self.padding
      padded = np.pad(arrays['images'], ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                      constant_values=np.float32(-1))
      tables[split] = _class_table({'images': padded, 'labels': arrays['labels']})
    return tables


def _class_table(arrays: dict[str, np.ndarray]) -> SplitTable:
  """A `SplitTable` whose identity and only factor is the label of `images.*.arrays`."""
  labels = np.asarray(arrays['labels'], np.int32)
  return SplitTable(images=arrays['images'], identity=labels[:, None],
                    factors=labels[:, None].astype(np.float32))


class SmallNorbPairs(InMemoryPairs):
  """TFDS `smallnorb` (via `smallnorb.load_split`); the identity is the instance.

  Factors: the instance (`category * 10 + instance`), the category, the azimuth (`20 a`
  degrees), the elevation (`30 + 5 e` degrees) and the lighting (0..5).

  Args:
    seed, batch_size, sharding: as `InMemoryPairs`.
    image_size: `S`, the side the 96x96 images are area-resized to, at most 96.
    data_dir: TFDS data dir, '' for the TFDS default.
    num_eval_images: images of each split in `arrays(split)`, a fixed sample.
  """

  name = 'smallnorb'
  identity_names = ('instance',)
  identity_sizes = (smallnorb.NUM_CATEGORIES * _NORB_INSTANCES,)
  factor_names = ('instance', 'category', 'azimuth', 'elevation', 'lighting')
  factor_discrete = (True, True, False, False, True)
  probe_names = ('category',)
  pose_names = ('azimuth', 'elevation', 'lighting')

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               image_size: int = 32, data_dir: str = '',
               num_eval_images: int = DEFAULT_NUM_EVAL_IMAGES):
    self.image_size = images.check_positive('image_size', image_size)
    if self.image_size > smallnorb.NATIVE_SIZE:
      raise ValueError(f'image_size={image_size}: expected at most {smallnorb.NATIVE_SIZE}, '
                       "smallNORB's native size.")
    if not isinstance(data_dir, str):
      raise ValueError(f'data_dir={data_dir!r}: expected a path string ("" for the TFDS '
                       'default).')
    self._data_dir = data_dir
    self.sample_shape = (self.image_size, self.image_size, 1)
    super().__init__(seed=seed, batch_size=batch_size, sharding=sharding,
                     num_eval_images=num_eval_images)

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> SmallNorbPairs:
    """Reads `seed`, `batch_size` and, if present, `image_size`, `data_dir`, `num_eval_images`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               image_size=config.get('image_size', 32), data_dir=config.get('data_dir', ''),
               num_eval_images=config.get('num_eval_images', DEFAULT_NUM_EVAL_IMAGES))

  def _load_tables(self) -> dict[str, SplitTable]:
    tables = {}
    for split in identity.SPLITS:
      grid = smallnorb.load_split(split, image_size=self.image_size, data_dir=self._data_dir)
      cells = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape[:5]), indexing='ij'),
                       axis=-1).reshape(-1, 5)
      category, slot, lighting, elevation, azimuth = cells.T
      instance = category * _NORB_INSTANCES + np.asarray(smallnorb.SPLIT_INSTANCES[split])[slot]
      factors = np.stack([instance, category, 20.0 * azimuth, 30.0 + 5.0 * elevation, lighting],
                         axis=-1)
      tables[split] = SplitTable(images=grid.reshape(-1, *self.sample_shape),
                                 identity=instance[:, None], factors=factors)
    return tables


def _splitmix64(values: np.ndarray) -> np.ndarray:
  """SplitMix64's output function of `values` (uint64 arithmetic wraps modulo 2**64)."""
  x = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def _is_test(positions: np.ndarray) -> np.ndarray:
  """Whether records `positions` (`[N]` ints, in stored order) are test records: about 10%."""
  return _splitmix64(positions) % np.uint64(1000) < np.uint64(TEST_PER_MILLE)


def _storage_dtype(maximum: int) -> np.dtype:
  for dtype in (np.uint8, np.uint16, np.uint32):
    if maximum <= np.iinfo(dtype).max:
      return np.dtype(dtype)
  raise ValueError(f'block sums up to {maximum} do not fit 32 bits.')


class _TfdsSubsetPairs(InMemoryPairs):
  """A one-split TFDS dataset of 64x64 images: a fixed subset, split and resized as the module
  docstring says.

  Args:
    seed, batch_size, sharding: as `InMemoryPairs`.
    image_size: `S`, a divisor of 64; images are the means of `64 / S` square blocks.
    data_dir: TFDS data dir, '' for the TFDS default.
    num_images: records read, the first ones in TFDS' stored order.
    num_eval_images: images of each split in `arrays(split)`, a fixed sample.
  """

  tfds_name: str
  native_size = 64
  channels: int
  # The largest stored pixel value, which maps to 1.
  max_value: int
  # TFDS features read besides the image.
  label_features: tuple[str, ...]

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               image_size: int = 64, data_dir: str = '', num_images: int = DEFAULT_NUM_IMAGES,
               num_eval_images: int = DEFAULT_NUM_EVAL_IMAGES):
    self.image_size = images.check_positive('image_size', image_size)
    if self.native_size % self.image_size:
      divisors = [d for d in range(1, self.native_size + 1) if self.native_size % d == 0]
      raise ValueError(f'image_size={image_size}: expected a divisor of {self.native_size} '
                       f'({divisors}), so that area averaging takes whole blocks.')
    if not isinstance(data_dir, str):
      raise ValueError(f'data_dir={data_dir!r}: expected a path string ("" for the TFDS '
                       'default).')
    self._data_dir = data_dir
    self.num_images = images.check_positive('num_images', num_images)
    self.sample_shape = (self.image_size, self.image_size, self.channels)
    super().__init__(seed=seed, batch_size=batch_size, sharding=sharding,
                     num_eval_images=num_eval_images)

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> _TfdsSubsetPairs:
    """Reads `seed`, `batch_size` and, if present, `image_size`, `data_dir`, `num_images` and
    `num_eval_images`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               image_size=config.get('image_size', 64), data_dir=config.get('data_dir', ''),
               num_images=config.get('num_images', DEFAULT_NUM_IMAGES),
               num_eval_images=config.get('num_eval_images', DEFAULT_NUM_EVAL_IMAGES))

  @abc.abstractmethod
  def _columns(self, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`[b]` arrays of `label_features` -> identities `[b, A]` and factors `[b, F]`."""

  def _load_tables(self) -> dict[str, SplitTable]:
    tf, tfds = base.import_tfds(f'the {self.tfds_name} dataset')
    features = tfds.decode.PartialDecoding({name: True
                                            for name in ('image',) + self.label_features})
    records = images._as_dataset(  # pylint: disable=protected-access
        tfds, self.tfds_name, self._data_dir or None, 'train', decoders=features)
    chunks = (records.take(self.num_images).batch(_LOAD_CHUNK).prefetch(1)
              .with_options(images._pipeline_options(tf)))  # pylint: disable=protected-access
    block = self.native_size // self.image_size
    dtype = _storage_dtype(self.max_value * block * block)
    native = (self.native_size, self.native_size, self.channels)
    parts = {'images': [], 'identity': [], 'factors': []}
    for chunk in chunks.as_numpy_iterator():
      pixels = chunk['image']
      if pixels.shape[1:] != native or pixels.max(initial=0) > self.max_value:
        raise ValueError(f'{self.tfds_name}: images of shape {pixels.shape[1:]} with values up '
                         f'to {pixels.max(initial=0)}; expected {native} with values in '
                         f'0..{self.max_value}.')
      count = len(pixels)
      sums = pixels.reshape(count, self.image_size, block, self.image_size, block,
                            self.channels).sum(axis=(2, 4), dtype=np.uint32)
      parts['images'].append(sums.astype(dtype))
      identities, factors = self._columns(chunk)
      parts['identity'].append(np.asarray(identities, np.int32))
      parts['factors'].append(np.asarray(factors, np.float32))
    if not parts['images']:
      raise ValueError(f'{self.tfds_name}: the prepared dataset has no records.')
    stacked = {name: np.concatenate(values) for name, values in parts.items()}
    test = _is_test(np.arange(len(stacked['images'])))
    scale = 2.0 / (self.max_value * block * block)
    return {split: SplitTable(images=stacked['images'][rows], identity=stacked['identity'][rows],
                              factors=stacked['factors'][rows], scale=scale, offset=-1.0)
            for split, rows in (('train', ~test), ('test', test))}


class DSpritesPairs(_TfdsSubsetPairs):
  """TFDS `dsprites`: the first `num_images` records, 10% held out; the identity is the shape.

  Factors: the shape (0 square, 1 ellipse, 2 heart), then TFDS' `value_scale` (0.5..1),
  `value_orientation` (radians, 0..2 pi), `value_x_position` and `value_y_position` (0..1).
  See `_TfdsSubsetPairs` for the arguments and the module docstring for the subset and split.
  """

  name = 'dsprites'
  tfds_name = 'dsprites'
  channels = 1
  max_value = 1
  identity_names = ('shape',)
  identity_sizes = (3,)
  factor_names = ('shape', 'scale', 'orientation', 'x', 'y')
  factor_discrete = (True, False, False, False, False)
  probe_names = ('shape',)
  pose_names = ('scale', 'orientation', 'x', 'y')
  label_features = ('label_shape', 'value_scale', 'value_orientation', 'value_x_position',
                    'value_y_position')

  def _columns(self, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    shape = labels['label_shape']
    factors = np.stack([shape] + [labels[name] for name in self.label_features[1:]], axis=-1)
    return shape[:, None], factors


class Shapes3DPairs(_TfdsSubsetPairs):
  """TFDS `shapes3d`: the first `num_images` records, 10% held out; the identity is (shape,
  object hue).

  Factors: the shape and object-hue labels (4 and 10 values), then TFDS' `value_floor_hue`,
  `value_wall_hue` (0..0.9), `value_scale` (0.75..1.25) and `value_orientation` (-30..30
  degrees). See `_TfdsSubsetPairs` for the arguments and the module docstring for the subset
  and split.
  """

  name = 'shapes3d'
  tfds_name = 'shapes3d'
  channels = 3
  max_value = 255
  identity_names = ('shape', 'object_hue')
  identity_sizes = (4, 10)
  factor_names = ('shape', 'object_hue', 'floor_hue', 'wall_hue', 'scale', 'orientation')
  factor_discrete = (True, True, False, False, False, False)
  probe_names = ('shape', 'object_hue')
  pose_names = ('floor_hue', 'wall_hue', 'scale', 'orientation')
  label_features = ('label_shape', 'label_object_hue', 'value_floor_hue', 'value_wall_hue',
                    'value_scale', 'value_orientation')

  def _columns(self, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    identities = np.stack([labels['label_shape'], labels['label_object_hue']], axis=-1)
    factors = np.stack([labels[name] for name in self.label_features], axis=-1)
    return identities, factors


def _pick(draw: jax.Array, options: jax.Array) -> jax.Array:
  """The option at a uniform `draw` in [0, 1): each equally likely."""
  count = options.shape[0]
  return options[jnp.minimum(jnp.floor(draw * count).astype(jnp.int32), count - 1)]


def _toy_pose(draws: jax.Array) -> jax.Array:
  """Three uniform draws -> a pose `[3]`: azimuth, elevation (degrees) and a light index."""
  low, high = TOY_ELEVATIONS
  light = jnp.minimum(jnp.floor(draws[2] * toys.NUM_LIGHTS), toys.NUM_LIGHTS - 1)
  return jnp.stack([360.0 * draws[0], low + (high - low) * draws[1], light])


def _row_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  # fold_in by index rather than split(key, n): row i then does not depend on the batch size.
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


def _toy_render(identities: jax.Array, poses: jax.Array, *, size: int, color: bool) -> jax.Array:
  """`[n]` global toy identities and `[n, 3]` poses -> `[n, S, S, C]`; jit-able."""
  return toys.render_batch(identities // toys.NUM_INSTANCES, identities % toys.NUM_INSTANCES,
                           poses[:, 0], poses[:, 1], poses[:, 2].astype(jnp.int32), size=size,
                           color=color)


class ToyPairs(identity.IdentityDataset):
  """The NORB-like toys of `toys`, rendered on the fly; the identity is the instance.

  Factors: the instance (`category * toys.NUM_INSTANCES + instance`), the category, the azimuth
  and elevation (degrees) and the light index. `render` draws any identity in any pose `[N, 3]`
  (azimuth, elevation, light index), the columns of `arrays(split)['pose']`.

  Args:
    seed: a non-negative integer; seeds the training rows and the evaluation streams.
    batch_size: global training batch size.
    sharding: the sharding of `[B, S, S, C]` training batches.
    image_size: `S`, the side of the images.
    color: RGB images, or one gray channel (the default, like NORB).
    num_eval_images: examples of each split in `arrays(split)`.

  Attributes:
    split_identities: `{'train': [25], 'test': [25]}` int32, each split's identities, ascending.
  """

  name = 'toys'
  identity_names = ('instance',)
  identity_sizes = (toys.NUM_CATEGORIES * toys.NUM_INSTANCES,)
  factor_names = ('instance', 'category', 'azimuth', 'elevation', 'lighting')
  factor_discrete = (True, True, False, False, True)
  probe_names = ('category',)
  pose_names = ('azimuth', 'elevation', 'lighting')
  renders = True

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               image_size: int = 32, color: bool = False,
               num_eval_images: int = DEFAULT_NUM_EVAL_IMAGES):
    self.seed = images.check_seed(seed)
    self.image_size = images.check_positive('image_size', image_size)
    if not isinstance(color, (bool, np.bool_)):
      raise ValueError(f'color={color!r}: expected a bool.')
    self.color = bool(color)
    self.num_eval_images = images.check_positive('num_eval_images', num_eval_images)
    self.sample_shape = (self.image_size, self.image_size, 3 if self.color else 1)
    images.check_batch_sharding(batch_size, sharding, self.sample_shape)
    self.batch_size = int(batch_size)
    self.sharding = sharding
    self.split_identities = {
        split: np.asarray([c * toys.NUM_INSTANCES + i for c in range(toys.NUM_CATEGORIES)
                           for i in instances], np.int32)
        for split, instances in (('train', toys.TRAIN_INSTANCES), ('test', toys.TEST_INSTANCES))}
    for value in self.split_identities.values():
      value.setflags(write=False)
    train_key, train_eval_key, test_eval_key = jax.random.split(jax.random.key(self.seed), 3)
    self._train_key = train_key
    self._eval_keys = {'train': train_eval_key, 'test': test_eval_key}
    self._render_fn = functools.partial(_toy_render, size=self.image_size, color=self.color)
    self._train_params_fn = jax.jit(self._train_params)
    self._train_fn = jax.jit(self._local_train_batch)
    self._eval_params_fn = jax.jit(self._eval_params, static_argnames='split')
    self._arrays: dict[str, dict[str, np.ndarray]] = {}

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> ToyPairs:
    """Reads `seed`, `batch_size` and, if present, `image_size`, `color`, `num_eval_images`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               image_size=config.get('image_size', 32), color=config.get('color', False),
               num_eval_images=config.get('num_eval_images', DEFAULT_NUM_EVAL_IMAGES))

  def _train_params(self, step: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
    options = jnp.asarray(self.split_identities['train'])
    count = options.shape[0]

    def one(row_key):
      u = jax.random.uniform(row_key, (_TOY_TRAIN_DRAWS,))
      first = jnp.minimum(jnp.floor(u[0] * count).astype(jnp.int32), count - 1)
      # One of the other count - 1 identities, skipping the first one's rank.
      second = jnp.minimum(jnp.floor(u[1] * (count - 1)).astype(jnp.int32), count - 2)
      second = second + (second >= first)
      return {'id1': options[first], 'id2': options[second], 'pose1': _toy_pose(u[2:5]),
              'pose1_same': _toy_pose(u[5:8]), 'pose2': _toy_pose(u[8:11])}

    return jax.vmap(one)(_row_keys(jax.random.fold_in(self._train_key, step), indices))

  def _local_train_batch(self, step: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
    params = self._train_params(step, indices)
    count = indices.shape[0]
    rendered = self._render_fn(
        jnp.concatenate([params['id1'], params['id1'], params['id2']]),
        jnp.concatenate([params['pose1'], params['pose1_same'], params['pose2']]))
    return {'y1': rendered[:count], 'y1_same': rendered[count:2 * count],
            'y2': rendered[2 * count:], 'id1': params['id1'][:, None],
            'id2': params['id2'][:, None]}

  def _local_indices(self) -> np.ndarray:
    rows = _local_rows(self.batch_size)
    return np.arange(rows.start, rows.stop)

  def train_params(self, step: int) -> dict[str, np.ndarray]:
    """What this process' rows of the batch of `step` show.

    Returns:
      `'id1'`, `'id2'`: `[B / process_count]` int32 identities of `y1` (and `y1_same`) and `y2`;
      `'pose1'`, `'pose1_same'`, `'pose2'`: `[B / process_count, 3]` float32 poses.
    """
    base.check_step(step)
    return jax.device_get(self._train_params_fn(np.uint32(step), self._local_indices()))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step` (see `identity.IdentityDataset.train_batch`)."""
    base.check_step(step)
    local = jax.device_get(self._train_fn(np.uint32(step), self._local_indices()))
    return base.make_global_batch(local, self.sharding)

  def _eval_params(self, indices: jax.Array, *, split: str) -> dict[str, jax.Array]:
    options = jnp.asarray(self.split_identities[split])

    def one(row_key):
      u = jax.random.uniform(row_key, (_TOY_EVAL_DRAWS,))
      return {'identity': _pick(u[0], options), 'pose': _toy_pose(u[1:4])}

    return jax.vmap(one)(_row_keys(self._eval_keys[split], indices))

  def render(self, identity: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Images `[N, S, S, C]` of identities `[N, 1]` in poses `[N, 3]` (azimuth, elevation,
    light index), as `arrays()` holds them."""
    identities = np.asarray(identity)
    poses = np.asarray(pose, np.float32)
    count = len(identities)
    if (identities.ndim != 2 or identities.shape[1] != 1
        or not np.issubdtype(identities.dtype, np.integer) or np.any(identities < 0)
        or np.any(identities >= self.identity_sizes[0])):
      raise ValueError(f'identity of shape {identities.shape}: expected [N, 1] integers in '
                       f'[0, {self.identity_sizes[0]}).')
    lights = poses[:, 2] if poses.ndim == 2 and poses.shape[1:] == (3,) else None
    if (lights is None or len(poses) != count or np.any(lights != np.round(lights))
        or np.any(lights < 0) or np.any(lights >= toys.NUM_LIGHTS)):
      raise ValueError(f'pose of shape {poses.shape}: expected [{count}, 3] (azimuth, elevation, '
                       f'light index in 0..{toys.NUM_LIGHTS - 1}).')
    identities = identities[:, 0].astype(np.int32)
    padded = -(-count // _RENDER_CHUNK) * _RENDER_CHUNK
    # Pad with copies of the first row so that every call has one shape; the extras are dropped.
    identities = np.concatenate([identities, np.repeat(identities[:1], padded - count)])
    poses = np.concatenate([poses, np.repeat(poses[:1], padded - count, axis=0)])
    chunks = [np.asarray(self._render_fn(identities[start:start + _RENDER_CHUNK],
                                         poses[start:start + _RENDER_CHUNK]))
              for start in range(0, padded, _RENDER_CHUNK)]
    if not chunks:
      return np.zeros((0, *self.sample_shape), np.float32)
    return np.concatenate(chunks)[:count]

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """Examples `0 .. num_eval_images - 1` of the split's evaluation stream, rendered once.

    Returns:
      `'images'` `[N, S, S, C]`, `'identity'` `[N, 1]`, `'factors'` `[N, 5]`, `'pose'` `[N, 3]`,
      read-only.
    """
    if identity.check_split(split) not in self._arrays:
      params = jax.device_get(self._eval_params_fn(np.arange(self.num_eval_images), split=split))
      identities = np.asarray(params['identity'], np.int32)
      poses = np.asarray(params['pose'], np.float32)
      factors = np.concatenate([
          np.stack([identities, identities // toys.NUM_INSTANCES], axis=-1).astype(np.float32),
          poses], axis=-1)
      self._arrays[split] = _read_only({
          'images': self.render(identities[:, None], poses), 'identity': identities[:, None],
          'factors': factors, 'pose': poses})
    return self._arrays[split]


__all__ = ['DEFAULT_NUM_EVAL_IMAGES', 'DEFAULT_NUM_IMAGES', 'DSpritesPairs', 'DigitPairs',
           'InMemoryPairs', 'MnistPairs', 'Shapes3DPairs', 'SmallNorbPairs', 'SplitTable',
           'TEST_PER_MILLE', 'TOY_ELEVATIONS', 'ToyPairs']
