"""Image datasets of chapter 6 (EBGAN): embedded ones and TensorFlow Datasets loaders.

Every dataset is an `ImageDataset`: training batches addressed by step, and fixed host arrays of
its train and test splits. Images are float32 in [-1, 1], `[B, H, W, C]` (the 2-D points of
`toy2d.Toy2D`, the other `ImageDataset`, are raw coordinates). `num_eval_images` (optional in a
config, default 1024) sizes the splits of the datasets that are endless or large: the patch
sets of `photo_patches`, and the first images read from CelebA's and LSUN's splits.

* `digits` (`Digits`): scikit-learn's handwritten digits (`sklearn.datasets.load_digits`, 1797
  images shipped with the package), 8x8x1, pixel values `v` in 0..16 mapped to `v / 8 - 1`.
  A fixed stratified split: `train_test_split` of the indices with `test_size=0.2`,
  `random_state=0` and `stratify=target` (1437 train, 360 test images), each split kept in the
  original order; the config's seed does not change it. Labelled (10 classes).
* `mnist` (`Mnist`): TFDS `mnist`, 28x28x1, `v` in 0..255 mapped to `v / 127.5 - 1`, read whole
  into memory on first use, in TFDS' stored order. Labelled (10 classes).
* `photo_patches` (`PhotoPatches`): random `image_size` x `image_size` RGB patches, not rescaled,
  of the scikit-image photographs of `moving_photos.PHOTO_NAMES` at their native resolution (all
  of them colour; the smallest, `chelsea`, is 300x451), each randomly flipped left-right: the
  "augmented LSUN" protocol of section 6.3.3 on embedded photographs. Unlabelled.
* `celeb_a` and `lsun_bedroom` (`CelebA`, `LsunBedroom`): TFDS `celeb_a` and `lsun/bedroom`,
  the centre square of each image (side `min(H, W)`, offset `(H - side) // 2`,
  `(W - side) // 2`) resized to `image_size` with area averaging (`tf.image.resize`,
  `method='area'`: each output pixel is the mean of the input area it covers; an image smaller
  than `image_size` is enlarged by repeating pixels). Unlabelled.

Training batches are pure functions of `(seed, step)`, so a resumed run sees exactly the batches
an uninterrupted one would:

* `digits`, `mnist`: example `g = step * B + i` of an endless stream of epochs; epoch `e` visits
  the training split in the order of `np.random.default_rng([seed, e]).permutation(N)` (a numpy
  PCG64 Generator seeded through `SeedSequence([seed, e])`), and a batch may straddle two epochs.
* `photo_patches`: example `g` of the stream draws, from
  `np.random.default_rng([seed, stream, g])` (stream 0 for train, 1 for test), a photo
  uniformly, a top-left corner uniformly among those that keep the patch inside it, and a flip
  with probability 1/2. `arrays(split)` holds examples `0 .. num_eval_images - 1` of the split's
  stream, so `arrays('train')` is what the first training steps see.
* `celeb_a`, `lsun_bedroom`: the training split is streamed in TFDS' stored order, epoch after
  epoch, unshuffled (TFDS fixes that order at preparation from a hash of each example's key);
  step `s` takes records `s * B_p .. (s + 1) * B_p - 1` of the process' slice
  (`tfds.split_for_jax_process`), `B_p = B / process_count`, wrapping around the slice. The seed
  does not change the stream. An instance remembers the next step: serving that step reads on,
  any other step rebuilds the pipeline and skips the records before it, still encoded (at most
  one pass over the slice). `arrays(split)` holds the first `num_eval_images` images of the split
  ('test' is CelebA's test split and LSUN's validation split, 300 images).

Multi-host: `digits`, `mnist` and `photo_patches` compute this process' rows of the global batch
(`batch_size / process_count` consecutive rows, `process_index` giving the block), so batches do
not depend on the process count; `make_global_batch` assembles the global array.

TensorFlow and TensorFlow Datasets are imported only by the TFDS datasets (`pip install
'uncertainty_jax[tfds]'`), which hide every GPU from TensorFlow so that it leaves accelerator
memory to JAX; scikit-learn is imported only by `digits`.
"""

from __future__ import annotations

import abc
import functools
import numbers
import os
from typing import Any

import jax
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import moving_photos

SPLITS = ('train', 'test')
DEFAULT_IMAGE_SIZE = 64
DEFAULT_NUM_EVAL_IMAGES = 1024
# Streams of the per-example draws of `PhotoPatches`.
_TRAIN_STREAM, _TEST_STREAM = 0, 1
# Images converted per tf.data batch when reading a whole split to the host.
_HOST_CHUNK = 256
# MNIST records read per tf.data batch when loading a split into memory.
_MNIST_CHUNK = 10000


class ImageDataset(abc.ABC):
  """Training batches addressed by step, and the fixed splits on the host.

  Attributes:
    name: the dataset's name in `IMAGE_DATASETS` (the config's `dataset`).
    sample_shape: shape of one example, `(H, W, C)` for images, `(2,)` for 2-D points.
    num_classes: number of label classes, or None when the dataset is unlabelled.
    batch_size: the global training batch size `B`.
    sharding: the sharding of training batches (batch axis over the devices).
  """

  name: str
  sample_shape: tuple[int, ...]
  num_classes: int | None
  batch_size: int
  sharding: jax.sharding.Sharding

  @abc.abstractmethod
  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global training batch of `step`, a pure function of the seed and `step`.

    Returns:
      `{'images': [B, *sample_shape]}` float32 (images in [-1, 1]), plus `'labels': [B]` int32
      when `num_classes` is not None; global `jax.Array`s sharded with `sharding`.
    """

  @abc.abstractmethod
  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """The fixed examples of `split` ('train' or 'test') on the host, read-only.

    Returns:
      `{'images': [N, *sample_shape]}` float32, plus `'labels': [N]` int32 when labelled.
    """


def check_split(split: Any) -> str:
  """Returns `split` if it is 'train' or 'test', else raises a one-line ValueError."""
  if split not in SPLITS:
    raise ValueError(f'split={split!r}: expected one of {SPLITS}.')
  return split


def check_positive(name: str, value: Any) -> int:
  """Returns `value` as an int if it is a positive integer, else raises a one-line ValueError."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f'{name}={value!r}: expected a positive integer.')
  return int(value)


def check_seed(seed: Any) -> int:
  """Returns `seed` as an int if it is a non-negative integer, else raises a ValueError."""
  # numpy's SeedSequence takes non-negative integers only.
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise ValueError(f'seed={seed!r}: expected a non-negative integer.')
  return int(seed)


def check_batch_sharding(batch_size: Any, sharding: Any, sample_shape: tuple[int, ...]) -> int:
  """Validates a global batch size against the sharding and the process count.

  Args:
    batch_size: the global batch size `B`.
    sharding: the `jax.sharding.Sharding` of `[B, *sample_shape]` batches.
    sample_shape: shape of one example.

  Returns:
    `B // jax.process_count()`, this process' rows of a batch.
  """
  batch_size = check_positive('batch_size', batch_size)
  if not isinstance(sharding, jax.sharding.Sharding):
    raise ValueError(f'sharding={sharding!r}: expected a jax.sharding.Sharding.')
  process_count = jax.process_count()
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size}: expected a multiple of the process count '
                     f'{process_count}.')
  try:
    sharding.shard_shape((batch_size, *sample_shape))
  except ValueError:
    num_devices = len(sharding.device_set)
    shards = num_devices // sharding.shard_shape((num_devices, *sample_shape))[0]
    raise ValueError(f'batch_size={batch_size}: expected a multiple of {shards}, the number of '
                     'batch shards of the sharding.') from None
  return batch_size // process_count


def _process_rows(step: int, batch_size: int) -> np.ndarray:
  """Stream indices `[B / process_count]` of this process' rows of the batch of `step`."""
  local = batch_size // jax.process_count()
  first = step * batch_size + jax.process_index() * local
  return first + np.arange(local, dtype=np.int64)


def _read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  for array in arrays.values():
    array.setflags(write=False)
  return arrays


class _LabelledInMemory(ImageDataset):
  """A small labelled dataset held whole in host memory, shuffled per epoch.

  Subclasses load the raw splits (`_load_splits`): `uint8` images `[N, H, W, C]` with values in
  `0 .. max_value` and int labels `[N]`; images are mapped to `v * 2 / max_value - 1`.
  """

  max_value: int

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding):
    self.seed = check_seed(seed)
    check_batch_sharding(batch_size, sharding, self.sample_shape)
    self.batch_size = int(batch_size)
    self.sharding = sharding
    self._splits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    self._arrays: dict[str, dict[str, np.ndarray]] = {}
    self._permutations: dict[int, np.ndarray] = {}

  @abc.abstractmethod
  def _load_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{'train': (images, labels), 'test': (images, labels)}`, raw as described above."""

  def _raw(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    if self._splits is None:
      self._splits = self._load_splits()
    return self._splits[split]

  def _to_float(self, raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float32) * np.float32(2 / self.max_value) - np.float32(1)

  def _epoch_order(self, epoch: int, size: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) >= 4:
        self._permutations.pop(min(self._permutations))
      self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(size)
    return self._permutations[epoch]

  def train_indices(self, step: int) -> np.ndarray:
    """Indices into `arrays('train')` of this process' rows of the batch of `step`, `[B_p]`."""
    base.check_step(step)
    size = len(self._raw('train')[1])
    epochs, positions = np.divmod(_process_rows(int(step), self.batch_size), size)
    indices = np.empty_like(positions)
    for epoch in np.unique(epochs):
      rows = epochs == epoch
      indices[rows] = self._epoch_order(int(epoch), size)[positions[rows]]
    return indices

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """`{'images': [B, H, W, C] float32, 'labels': [B] int32}`, sharded; see the module doc."""
    indices = self.train_indices(step)
    images, labels = self._raw('train')
    local = {'images': self._to_float(images[indices]),
             'labels': labels[indices].astype(np.int32)}
    return base.make_global_batch(local, self.sharding)

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """The whole split, `{'images': [N, H, W, C] float32, 'labels': [N] int32}`."""
    if check_split(split) not in self._arrays:
      images, labels = self._raw(split)
      self._arrays[split] = _read_only({'images': self._to_float(images),
                                        'labels': labels.astype(np.int32)})
    return self._arrays[split]


class Digits(_LabelledInMemory):
  """scikit-learn's 8x8 handwritten digits with a fixed stratified split (see the module doc).

  Attributes:
    source_indices: `{'train': [1437], 'test': [360]}` int, the rows of
      `sklearn.datasets.load_digits()` in each split, ascending.
  """

  name = 'digits'
  sample_shape = (8, 8, 1)
  num_classes = 10
  max_value = 16
  test_fraction = 0.2

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding):
    super().__init__(seed=seed, batch_size=batch_size, sharding=sharding)
    self.source_indices = {split: indices for split, indices
                           in zip(SPLITS, _digits_split(self.test_fraction))}

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> Digits:
    """Reads `seed` and `batch_size`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding)

  def _load_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    images, labels = _load_digits()
    return {split: (images[rows], labels[rows]) for split, rows in self.source_indices.items()}


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images.astype(np.uint8)[..., None]  # integer values 0..16
  labels = digits.target.astype(np.int32)
  for array in (images, labels):
    array.setflags(write=False)
  return images, labels


@functools.lru_cache(maxsize=2)
def _digits_split(test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  labels = _load_digits()[1]
  train, test = model_selection.train_test_split(
      np.arange(len(labels)), test_size=test_fraction, random_state=0, stratify=labels)
  train, test = np.sort(train), np.sort(test)
  for array in (train, test):
    array.setflags(write=False)
  return train, test


def _import_tf() -> tuple[Any, Any]:
  return base.import_tfds('the TFDS image datasets')


def _check_data_dir(data_dir: Any) -> str | None:
  if not isinstance(data_dir, str):
    raise ValueError(f'data_dir={data_dir!r}: expected a path string ("" for the TFDS default).')
  return data_dir or None


def _as_dataset(tfds: Any, name: str, data_dir: str | None, split: Any, **kwargs) -> Any:
  """A TFDS split in its stored order, or a FileNotFoundError saying how to prepare it."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    return builder.as_dataset(split=split, shuffle_files=False, **kwargs)
  except (AssertionError, tfds.core.DatasetNotFoundError):
    # TFDS signals an unprepared dataset with an AssertionError deep in its stack.
    shown_dir = data_dir or f'the TFDS default ({tfds.core.constants.DATA_DIR})'
    flag = f' --data_dir={data_dir}' if data_dir else ''
    raise FileNotFoundError(
        f'TFDS dataset {name!r} is not prepared in data dir {shown_dir}. Prepare it once with '
        f'`tfds build {name}{flag}`, or set data_dir to the folder that holds it.') from None


def _pipeline_options(tf: Any) -> Any:
  options = tf.data.Options()
  options.deterministic = True
  # A private pool keeps TensorFlow's input threads from competing with JAX's for every core.
  options.threading.private_threadpool_size = max(1, min(4, os.cpu_count() or 1))
  options.threading.max_intra_op_parallelism = 1
  return options


class Mnist(_LabelledInMemory):
  """TFDS `mnist` held in memory (60000 train, 10000 test digits), batched like `Digits`.

  Args:
    seed: seeds the per-epoch order of training examples.
    batch_size: global training batch size.
    sharding: the sharding of training batches.
    data_dir: TFDS data dir, '' for the TFDS default.
  """

  name = 'mnist'
  sample_shape = (28, 28, 1)
  num_classes = 10
  max_value = 255

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               data_dir: str = ''):
    super().__init__(seed=seed, batch_size=batch_size, sharding=sharding)
    self.data_dir = _check_data_dir(data_dir)
    self._tf, self._tfds = _import_tf()

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> Mnist:
    """Reads `seed`, `batch_size` and, if present, `data_dir`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               data_dir=config.get('data_dir', ''))

  def _load_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    splits = {}
    for split in SPLITS:
      records = _as_dataset(self._tfds, 'mnist', self.data_dir, split)
      chunks = list(records.batch(_MNIST_CHUNK).with_options(_pipeline_options(self._tf))
                    .as_numpy_iterator())
      images = np.concatenate([chunk['image'] for chunk in chunks]).astype(np.uint8)
      labels = np.concatenate([chunk['label'] for chunk in chunks]).astype(np.int32)
      splits[split] = (images.reshape((-1, *self.sample_shape)), labels)
    return splits


@functools.lru_cache(maxsize=1)
def _native_photos() -> tuple[np.ndarray, ...]:
  """The photographs of `moving_photos.PHOTO_NAMES` at native size, `[H, W, 3]` uint8 each."""
  from skimage import data  # pylint: disable=g-import-not-at-top
  photos = []
  for name in moving_photos.PHOTO_NAMES:
    photo = np.asarray(getattr(data, name)())
    if photo.ndim == 2:
      photo = np.repeat(photo[..., None], 3, axis=-1)
    photo = np.ascontiguousarray(photo[..., :3], dtype=np.uint8)
    photo.setflags(write=False)
    photos.append(photo)
  return tuple(photos)


def native_photos() -> tuple[np.ndarray, ...]:
  """The photographs patches are cut from: `[H_p, W_p, 3]` uint8 each, read-only, cached."""
  return _native_photos()


class PhotoPatches(ImageDataset):
  """Random native-resolution patches of the scikit-image photographs (see the module doc).

  Args:
    seed: seeds the train and test streams.
    batch_size: global training batch size.
    sharding: the sharding of training batches.
    image_size: side of the square patches, at most the smallest photo side (300).
    num_eval_images: patches in each of `arrays('train')` and `arrays('test')`.
  """

  name = 'photo_patches'
  num_classes = None

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               image_size: int = DEFAULT_IMAGE_SIZE,
               num_eval_images: int = DEFAULT_NUM_EVAL_IMAGES):
    self.seed = check_seed(seed)
    self.image_size = check_positive('image_size', image_size)
    self.num_eval_images = check_positive('num_eval_images', num_eval_images)
    photos = native_photos()
    smallest = min(min(photo.shape[:2]) for photo in photos)
    if self.image_size > smallest:
      raise ValueError(f'image_size={image_size}: expected at most {smallest}, the smallest '
                       f'side of the photographs {moving_photos.PHOTO_NAMES}.')
    self.sample_shape = (self.image_size, self.image_size, 3)
    check_batch_sharding(batch_size, sharding, self.sample_shape)
    self.batch_size = int(batch_size)
    self.sharding = sharding
    self._photos = photos
    self._eval: dict[str, dict[str, np.ndarray]] = {}

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> PhotoPatches:
    """Reads `seed`, `batch_size` and, if present, `image_size` and `num_eval_images`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               image_size=config.get('image_size', DEFAULT_IMAGE_SIZE),
               num_eval_images=config.get('num_eval_images', DEFAULT_NUM_EVAL_IMAGES))

  def patch_params(self, split: str, indices: Any) -> dict[str, np.ndarray]:
    """Where examples `indices` of a split's stream come from.

    Args:
      split: 'train' or 'test'.
      indices: `[N]` non-negative integers, positions in the stream.

    Returns:
      `{'photo', 'top', 'left', 'flip'}`, `[N]` each: the index in `native_photos()`, the
      patch's first row and column in that photo, and whether it is flipped left-right.
    """
    stream = {'train': _TRAIN_STREAM, 'test': _TEST_STREAM}[check_split(split)]
    indices = np.asarray(indices, np.int64).reshape(-1)
    params = {name: np.empty(len(indices), np.int64) for name in ('photo', 'top', 'left')}
    params['flip'] = np.empty(len(indices), bool)
    size = self.image_size
    for row, index in enumerate(indices):
      rng = np.random.default_rng([self.seed, stream, int(index)])
      photo = int(rng.integers(len(self._photos)))
      height, width = self._photos[photo].shape[:2]
      params['photo'][row] = photo
      params['top'][row] = rng.integers(height - size + 1)
      params['left'][row] = rng.integers(width - size + 1)
      params['flip'][row] = rng.random() < 0.5
    return params

  def _patches(self, split: str, indices: np.ndarray) -> np.ndarray:
    """`[N, s, s, 3]` float32 in [-1, 1], the patches of `indices` of `split`'s stream."""
    params = self.patch_params(split, indices)
    size = self.image_size
    patches = np.empty((len(indices), size, size, 3), np.uint8)
    for row in range(len(indices)):
      top, left = params['top'][row], params['left'][row]
      patch = self._photos[params['photo'][row]][top:top + size, left:left + size]
      patches[row] = patch[:, ::-1] if params['flip'][row] else patch
    return patches.astype(np.float32) / np.float32(127.5) - np.float32(1)

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """`{'images': [B, s, s, 3]}` float32 in [-1, 1]: train-stream examples `step * B + i`."""
    base.check_step(step)
    rows = _process_rows(int(step), self.batch_size)
    return base.make_global_batch({'images': self._patches('train', rows)}, self.sharding)

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """`{'images': [num_eval_images, s, s, 3]}`: the first examples of the split's stream."""
    if check_split(split) not in self._eval:
      images = self._patches(split, np.arange(self.num_eval_images))
      self._eval[split] = _read_only({'images': images})
    return self._eval[split]


def _centre_square_resized(tf: Any, image: Any, size: int) -> Any:
  """`[H, W, C]` uint8 -> the centre square, area-resized, `[size, size, C]` in [-1, 1]."""
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  side = tf.minimum(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = tf.cast(image[top:top + side, left:left + side], tf.float32)
  resized = tf.image.resize(square, [size, size], method='area')
  return tf.clip_by_value(resized / 127.5 - 1.0, -1.0, 1.0)


class _TfdsImageStream(ImageDataset):
  """An unlabelled TFDS image dataset streamed in stored order (see the module doc).

  Args:
    seed: accepted for a uniform interface; the stream does not depend on it.
    batch_size: global training batch size, a multiple of `jax.process_count()`.
    sharding: the sharding of training batches.
    image_size: side of the square images.
    data_dir: TFDS data dir, '' for the TFDS default.
    num_eval_images: at most this many images in each of `arrays('train')`, `arrays('test')`.
  """

  num_classes = None
  tfds_name: str
  # The TFDS split `arrays('test')` reads.
  tfds_test_split: str

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               image_size: int = DEFAULT_IMAGE_SIZE, data_dir: str = '',
               num_eval_images: int = DEFAULT_NUM_EVAL_IMAGES):
    self.seed = check_seed(seed)
    self.image_size = check_positive('image_size', image_size)
    self.num_eval_images = check_positive('num_eval_images', num_eval_images)
    self.data_dir = _check_data_dir(data_dir)
    self.sample_shape = (self.image_size, self.image_size, 3)
    self._local_batch = check_batch_sharding(batch_size, sharding, self.sample_shape)
    self.batch_size = int(batch_size)
    self.sharding = sharding
    self._tf, self._tfds = _import_tf()
    self._iterator = None
    self._next_step: int | None = None
    self._eval: dict[str, dict[str, np.ndarray]] = {}

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> _TfdsImageStream:
    """Reads `seed`, `batch_size` and, if present, `image_size`, `data_dir`, `num_eval_images`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               image_size=config.get('image_size', DEFAULT_IMAGE_SIZE),
               data_dir=config.get('data_dir', ''),
               num_eval_images=config.get('num_eval_images', DEFAULT_NUM_EVAL_IMAGES))

  def _encoded_images(self, split: Any) -> Any:
    """The split's images, still encoded (decoding is left for the records that are used)."""
    tfds = self._tfds
    records = _as_dataset(tfds, self.tfds_name, self.data_dir, split,
                          decoders={'image': tfds.decode.SkipDecoding()})
    return records.map(lambda record: record['image'])

  def _decode(self, encoded: Any) -> Any:
    tf = self._tf
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = _centre_square_resized(tf, image, self.image_size)
    return tf.ensure_shape(image, self.sample_shape)

  def _train_pipeline(self, step: int) -> Any:
    """This process' batches from `step` on, `[B / process_count, s, s, 3]` float32."""
    tf, tfds = self._tf, self._tfds
    split = tfds.split_for_jax_process('train', process_index=jax.process_index(),
                                       process_count=jax.process_count())
    encoded = self._encoded_images(split)
    num_records = int(encoded.cardinality())
    if num_records < 1:
      raise ValueError(f'{self.tfds_name}: the training split of process {jax.process_index()} '
                       f'has {num_records} records (unknown or empty); expected a prepared, '
                       'non-empty split.')
    skip = (step * self._local_batch) % num_records
    images = encoded.repeat().skip(skip).map(self._decode, num_parallel_calls=tf.data.AUTOTUNE,
                                             deterministic=True)
    batches = images.batch(self._local_batch, drop_remainder=True).prefetch(1)
    return batches.with_options(_pipeline_options(tf))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """`{'images': [B, s, s, 3]}` float32 in [-1, 1], sharded; see the module doc."""
    base.check_step(step)
    step = int(step)
    if self._iterator is None or step != self._next_step:
      self._iterator = self._train_pipeline(step).as_numpy_iterator()
    local = next(self._iterator)
    self._next_step = step + 1
    return base.make_global_batch({'images': local}, self.sharding)

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """`{'images': [N, s, s, 3]}`: the first `N <= num_eval_images` images of the split."""
    tf = self._tf
    if check_split(split) not in self._eval:
      tfds_split = 'train' if split == 'train' else self.tfds_test_split
      images = self._encoded_images(tfds_split).take(self.num_eval_images)
      images = images.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      chunks = images.batch(_HOST_CHUNK).with_options(_pipeline_options(tf))
      parts = list(chunks.as_numpy_iterator())
      stacked = (np.concatenate(parts) if parts
                 else np.zeros((0, *self.sample_shape), np.float32))
      self._eval[split] = _read_only({'images': stacked})
    return self._eval[split]


class CelebA(_TfdsImageStream):
  """TFDS `celeb_a` (aligned 178x218 faces), centre square resized to `image_size`."""

  name = 'celeb_a'
  tfds_name = 'celeb_a'
  tfds_test_split = 'test'


class LsunBedroom(_TfdsImageStream):
  """TFDS `lsun/bedroom`, centre square resized to `image_size`; its 'test' is 'validation'."""

  name = 'lsun_bedroom'
  tfds_name = 'lsun/bedroom'
  tfds_test_split = 'validation'


__all__ = ['CelebA', 'DEFAULT_IMAGE_SIZE', 'DEFAULT_NUM_EVAL_IMAGES', 'Digits', 'ImageDataset',
           'LsunBedroom', 'Mnist', 'PhotoPatches', 'SPLITS', 'check_batch_sharding',
           'check_positive', 'check_seed', 'check_split', 'native_photos']
