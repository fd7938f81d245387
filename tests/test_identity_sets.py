"""Tests of chapter 5's identity datasets (uncertainty_jax.data.identity_sets).

The TFDS datasets read records faked through `tfds.testing.mock_data`. Every fake image encodes
its identity (and, for smallNORB, its pose) in flat blocks that survive the area resize exactly,
so a served image's identity is read back from its pixels and compared with the identity the
batch claims. Digits and MNIST hold whole splits, so their served images are also located in
`arrays('train')`. Expected values come from the fakes' definitions and from numpy.
"""

import re
import time

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from uncertainty_jax.data import identity
from uncertainty_jax.data import identity_sets
from uncertainty_jax.data import smallnorb
from uncertainty_jax.data import toys

_TOY_SIZE = 16
_NORB_SIZE = 8
_SPRITE_SIZE = 16
_NUM_MNIST = {'train': 300, 'test': 60}
_NUM_DSPRITES = 600
_NUM_SHAPES3D = 480


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _config(**fields):
  values = dict(seed=0, batch_size=16)
  values.update(fields)
  return ml_collections.ConfigDict(values)


def _codes(images):
  """Pixels in [-1, 1] -> the integer values 0..255 they were mapped from."""
  return np.round((np.asarray(images, np.float64) + 1) * 127.5).astype(np.int64)


# ------------------------------------------------------------------------------------------
# Fake TFDS records.


def _split_name(split):
  return str(split).split('[')[0]


def _selected(builder, decoders, record):
  """The features `decoders` asks for (`tfds.decode.PartialDecoding`), else all of them."""
  names = list(builder.info.features.keys())
  if isinstance(decoders, tfds.decode.PartialDecoding):
    names = list(decoders.extract_features(builder.info.features).keys())
  return {name: record[name] for name in names if name in record}


def _mnist_records(split):
  """`[N, 28, 28, 1]` uint8 digits whose pixel (0, 0) is `10 + 20 * label` and pixels (1, 0),
  (1, 1) the record number in base 200, and their labels."""
  count = _NUM_MNIST[split]
  index = np.arange(count) + (0 if split == 'train' else 1000)
  labels = (index * 7) % 10
  rows, cols = np.mgrid[:28, :28]
  images = np.broadcast_to((rows * 5 + cols * 11) % 200 + 30, (count, 28, 28)).copy()
  images[:, 0, 0] = 10 + 20 * labels
  images[:, 1, 0], images[:, 1, 1] = index % 200, index // 200
  return images[..., None].astype(np.uint8), labels


def _norb_grid(split):
  """Every cell of a smallNORB split, `[24300, 5]` (category, instance, lighting, elevation,
  azimuth), in a fixed shuffled order."""
  axes = (range(smallnorb.NUM_CATEGORIES), smallnorb.SPLIT_INSTANCES[split],
          range(smallnorb.NUM_LIGHTINGS), range(smallnorb.NUM_ELEVATIONS),
          range(smallnorb.NUM_AZIMUTHS))
  cells = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 5)
  return cells[np.random.default_rng(len(split)).permutation(len(cells))]


def _norb_images(cells):
  """`[N, 5]` cells -> `[N, 96, 96, 1]` uint8: the top half holds `5 * (category * 10 +
  instance)`, the bottom-left quarter `10 * azimuth`, the bottom-right `20 * elevation + 3 *
  lighting` (each constant over the 12x12 blocks an 8x8 resize averages)."""
  cells = tf.cast(cells, tf.int32)
  n = tf.shape(cells)[0]
  top = 5 * (cells[:, 0] * 10 + cells[:, 1])
  left = 10 * cells[:, 4]
  right = 20 * cells[:, 3] + 3 * cells[:, 2]

  def fill(values, height, width):
    return tf.broadcast_to(values[:, None, None], tf.stack([n, height, width]))

  bottom = tf.concat([fill(left, 48, 48), fill(right, 48, 48)], axis=2)
  return tf.cast(tf.concat([fill(top, 48, 96), bottom], axis=1), tf.uint8)[..., None]


def _decode_norb(images):
  """`[..., 8, 8, 1]` images -> `[..., 5]` (identity, category, azimuth, elevation, lighting)."""
  codes = _codes(images)
  ident = codes[..., 0, 0, 0] // 5
  azimuth = codes[..., 7, 0, 0] // 10
  elevation, lighting = np.divmod(codes[..., 7, 7, 0], 20)
  return np.stack([ident, ident // 10, azimuth, elevation, lighting // 3], axis=-1)


def _dsprites_labels(count, shapes=None):
  """Labels of records `0..count - 1`; record `i` is `shape + 3 scale + 18 orientation`."""
  index = np.arange(count)
  labels = {'label_shape': index % 3 if shapes is None else np.full(count, shapes),
            'label_scale': (index // 3) % 6, 'label_orientation': (index // 18) % 40,
            'label_x_position': (index * 7) % 32, 'label_y_position': (index * 11) % 32}
  values = {'value_shape': labels['label_shape'] + 1.0,
            'value_scale': 0.5 + 0.1 * labels['label_scale'],
            'value_orientation': labels['label_orientation'] * (2 * np.pi / 40),
            'value_x_position': labels['label_x_position'] / 31,
            'value_y_position': labels['label_y_position'] / 31}
  return labels, {k: v.astype(np.float32) for k, v in values.items()}


def _dsprites_images(labels):
  """`[N, 64, 64, 1]` binary sprites, distinct for distinct records: rows 0..15 are 1 in the
  first `16 * (shape + 1)` columns, rows 16..31 in the first `2 * x`, rows 32..47 in the first
  `orientation`, rows 48..63 in the first `8 * scale`."""
  cols = np.arange(64)
  images = np.zeros((len(labels['label_shape']), 64, 64, 1), np.uint8)
  for (first, last), widths in (((0, 16), 16 * (labels['label_shape'] + 1)),
                                ((16, 32), 2 * labels['label_x_position']),
                                ((32, 48), labels['label_orientation']),
                                ((48, 64), 8 * labels['label_scale'])):
    images[:, first:last, :, 0] = (cols < widths[:, None])[:, None]
  return images


def _decode_dsprites(images):
  """`[..., 16, 16, 1]` -> the shape: row 0 is 1 in the first `4 * (shape + 1)` pixels."""
  return np.sum(np.asarray(images)[..., 0, :, 0] > 0.5, axis=-1) // 4 - 1


def _shapes3d_labels(count):
  index = np.arange(count)
  labels = {'label_shape': index % 4, 'label_object_hue': (index // 4) % 10,
            'label_floor_hue': (index // 40) % 10, 'label_wall_hue': (index // 7) % 10,
            'label_scale': index % 8, 'label_orientation': index % 15}
  values = {'value_shape': labels['label_shape'].astype(np.float64),
            'value_object_hue': labels['label_object_hue'] / 10,
            'value_floor_hue': labels['label_floor_hue'] / 10,
            'value_wall_hue': labels['label_wall_hue'] / 10,
            'value_scale': 0.75 + labels['label_scale'] * (0.5 / 7),
            'value_orientation': -30 + labels['label_orientation'] * (60 / 14)}
  return labels, {k: v.astype(np.float32) for k, v in values.items()}


def _shapes3d_images(labels):
  """`[N, 64, 64, 3]`: channel 0 is `10 + 20 shape`, channel 1 `10 + 20 object hue`, channel 2
  varies with the record."""
  count = len(labels['label_shape'])
  channels = np.stack([10 + 20 * labels['label_shape'], 10 + 20 * labels['label_object_hue'],
                       (np.arange(count) * 37) % 256], axis=-1)
  return np.broadcast_to(channels[:, None, None, :], (count, 64, 64, 3)).astype(np.uint8)


def _decode_shapes3d(images):
  codes = _codes(np.asarray(images)[..., 0, 0, :2])
  return (codes - 10) // 20


def _dataset(record):
  return tf.data.Dataset.from_tensor_slices(record)


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  del read_config, shuffle_files
  split = _split_name(split)
  if self.name == 'mnist':
    images, labels = _mnist_records(split)
    return _dataset({'image': images, 'label': labels.astype(np.int64)})
  if self.name == 'smallnorb':
    keys = ('label_category', 'instance', 'label_lighting', 'label_elevation', 'label_azimuth')

    def examples(cells):
      record = {key: tf.cast(cells[:, k], tf.int64) for k, key in enumerate(keys)}
      record['image'] = _norb_images(cells)
      record['image2'] = tf.zeros_like(record['image'])
      return _selected(self, decoders, record)

    return _dataset(_norb_grid(split)).batch(2048).map(examples).unbatch()
  if self.name == 'dsprites':
    labels, values = _dsprites_labels(_NUM_DSPRITES)
    return _dataset(_selected(self, decoders, dict(image=_dsprites_images(labels), **labels,
                                                   **values)))
  if self.name == 'shapes3d':
    labels, values = _shapes3d_labels(_NUM_SHAPES3D)
    return _dataset(_selected(self, decoders, dict(image=_shapes3d_images(labels), **labels,
                                                   **values)))
  raise AssertionError(f'no fake data for {self.name}')


def _one_shape_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  del split, read_config, shuffle_files
  labels, values = _dsprites_labels(200, shapes=1)
  return _dataset(_selected(self, decoders, dict(image=_dsprites_images(labels), **labels,
                                                 **values)))


def _mocked(build, as_dataset_fn=_fake_as_dataset):
  with tfds.testing.mock_data(as_dataset_fn=as_dataset_fn,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    return build()


# ------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope='module', name='digits')
def _digits():
  return identity_sets.DigitPairs.from_config(_config(), _sharding())


@pytest.fixture(scope='module', name='mnist')
def _mnist():
  return _mocked(lambda: identity_sets.MnistPairs.from_config(_config(), _sharding()))


@pytest.fixture(scope='module', name='norb')
def _norb():
  config = _config(image_size=_NORB_SIZE, num_eval_images=300)
  return _mocked(lambda: identity_sets.SmallNorbPairs.from_config(config, _sharding()))


@pytest.fixture(scope='module', name='dsprites')
def _dsprites():
  config = _config(image_size=_SPRITE_SIZE, num_images=500, num_eval_images=1000)
  return _mocked(lambda: identity_sets.DSpritesPairs.from_config(config, _sharding()))


@pytest.fixture(scope='module', name='shapes3d')
def _shapes3d():
  config = _config(image_size=_SPRITE_SIZE, num_eval_images=64)
  return _mocked(lambda: identity_sets.Shapes3DPairs.from_config(config, _sharding()))


@pytest.fixture(scope='module', name='toy')
def _toy():
  config = _config(batch_size=4, image_size=_TOY_SIZE, num_eval_images=6)
  return identity_sets.ToyPairs.from_config(config, _sharding())


# Reads the identities `[..., A]` of images `[..., H, W, C]` from their pixels.
_DECODERS = {
    'mnist': lambda images: ((_codes(np.asarray(images)[..., 2, 2, 0]) - 10) // 20)[..., None],
    'smallnorb': lambda images: _decode_norb(images)[..., :1],
    'dsprites': lambda images: _decode_dsprites(images)[..., None],
    'shapes3d': _decode_shapes3d,
}
_TABLE_SETS = ('digits', 'mnist', 'norb', 'dsprites', 'shapes3d')
_ALL_SETS = _TABLE_SETS + ('toy',)


def _host(batch):
  return {name: np.asarray(value) for name, value in batch.items()}


# ------------------------------------------------------------------------------------------
# What every dataset promises.


@pytest.mark.parametrize('fixture', _ALL_SETS)
def test_attributes_and_arrays_are_consistent(fixture, request):
  dataset = request.getfixturevalue(fixture)
  num_attributes = len(dataset.identity_sizes)
  assert len(dataset.identity_names) == num_attributes >= 1
  assert dataset.factor_names[:num_attributes] == dataset.identity_names
  assert len(dataset.factor_discrete) == len(dataset.factor_names)
  assert set(dataset.probe_names) <= set(dataset.factor_names)
  assert set(dataset.pose_names) <= set(dataset.factor_names) - set(dataset.identity_names)
  assert isinstance(dataset, identity.IdentityDataset)
  for split in identity.SPLITS:
    arrays = dataset.arrays(split)
    count = len(arrays['images'])
    assert count > 0
    assert arrays['images'].shape == (count, *dataset.sample_shape)
    assert arrays['images'].dtype == np.float32
    assert arrays['images'].min() >= -1 and arrays['images'].max() <= 1
    assert arrays['identity'].shape == (count, num_attributes)
    assert arrays['identity'].dtype == np.int32
    assert np.all(arrays['identity'] >= 0)
    assert np.all(arrays['identity'] < np.asarray(dataset.identity_sizes))
    assert arrays['factors'].shape == (count, len(dataset.factor_names))
    assert arrays['factors'].dtype == np.float32
    np.testing.assert_array_equal(arrays['factors'][:, :num_attributes], arrays['identity'])
    discrete = arrays['factors'][:, np.asarray(dataset.factor_discrete)]
    np.testing.assert_array_equal(discrete, np.round(discrete))
    if dataset.renders:
      assert arrays['pose'].shape == (count, len(dataset.pose_names))
      pose_columns = [dataset.factor_index(name) for name in dataset.pose_names]
      np.testing.assert_array_equal(arrays['factors'][:, pose_columns], arrays['pose'])
    for array in arrays.values():
      assert not array.flags.writeable
    assert dataset.arrays(split) is arrays  # cached


@pytest.mark.parametrize('fixture', _ALL_SETS)
def test_train_batch_shapes_sharding_and_identities(fixture, request):
  dataset = request.getfixturevalue(fixture)
  batch = dataset.train_batch(3)
  size, num_attributes = dataset.batch_size, len(dataset.identity_sizes)
  assert set(batch) == {'y1', 'y1_same', 'y2', 'id1', 'id2'}
  for name in ('y1', 'y1_same', 'y2'):
    assert batch[name].shape == (size, *dataset.sample_shape)
    assert batch[name].dtype == np.float32
    assert batch[name].sharding == _sharding()
  for name in ('id1', 'id2'):
    assert batch[name].shape == (size, num_attributes) and batch[name].dtype == np.int32
  host = _host(batch)
  assert host['y1'].min() >= -1 and host['y1'].max() <= 1
  # Another identity: at least one attribute differs.
  assert np.all(np.any(host['id1'] != host['id2'], axis=-1))
  # y1 and y1_same are two images (the fake and real identities here all have several).
  assert np.all(np.any(host['y1'] != host['y1_same'], axis=(1, 2, 3)))
  train_identities = {tuple(row) for row in dataset.arrays('train')['identity']}
  if dataset.name in ('digits', 'mnist', 'dsprites'):  # arrays('train') is the whole split
    assert {tuple(row) for row in host['id1']} <= train_identities


@pytest.mark.parametrize('fixture', ['mnist', 'norb', 'dsprites', 'shapes3d'])
def test_served_images_show_the_claimed_identities(fixture, request):
  dataset = request.getfixturevalue(fixture)
  decode = _DECODERS[dataset.name]
  for step in (0, 5):
    batch = _host(dataset.train_batch(step))
    np.testing.assert_array_equal(decode(batch['y1']), batch['id1'])
    np.testing.assert_array_equal(decode(batch['y1_same']), batch['id1'])
    np.testing.assert_array_equal(decode(batch['y2']), batch['id2'])
  for split in identity.SPLITS:
    arrays = dataset.arrays(split)
    np.testing.assert_array_equal(decode(arrays['images']), arrays['identity'])


@pytest.mark.parametrize('fixture', ['digits', 'mnist'])
def test_served_images_are_rows_of_the_training_split(fixture, request):
  dataset = request.getfixturevalue(fixture)
  table = dataset.arrays('train')
  for step in (0, 9):
    indices = dataset.train_indices(step)
    batch = _host(dataset.train_batch(step))
    for name in ('y1', 'y1_same', 'y2'):
      np.testing.assert_array_equal(batch[name], table['images'][indices[name]])
    np.testing.assert_array_equal(batch['id1'], table['identity'][indices['y1']])
    np.testing.assert_array_equal(table['identity'][indices['y1_same']],
                                  table['identity'][indices['y1']])
    np.testing.assert_array_equal(batch['id2'], table['identity'][indices['y2']])
    assert np.all(indices['y1_same'] != indices['y1'])
  # Every served image is found in the split with the claimed label (identical 8x8 digits may
  # occur more than once, so any of the matching rows must carry it).
  flat = table['images'].reshape(len(table['images']), -1)
  batch = _host(dataset.train_batch(4))
  for image, label in zip(batch['y1_same'].reshape(dataset.batch_size, -1), batch['id1'][:, 0]):
    matches = np.all(flat == image, axis=1)
    assert matches.any() and label in table['identity'][matches, 0]


@pytest.mark.parametrize('fixture', _ALL_SETS)
def test_batches_are_a_function_of_seed_and_step(fixture, request):
  dataset = request.getfixturevalue(fixture)
  first = _host(dataset.train_batch(6))
  dataset.train_batch(2)  # another step in between changes nothing
  again = _host(dataset.train_batch(6))
  for name in first:
    np.testing.assert_array_equal(again[name], first[name])
  other = _host(dataset.train_batch(7))
  assert not np.array_equal(other['y1'], first['y1'])


def test_a_new_instance_and_another_seed(digits, toy):
  again = identity_sets.DigitPairs.from_config(_config(), _sharding())
  reseeded = identity_sets.DigitPairs.from_config(_config(seed=1), _sharding())
  for step in (0, 11):
    for name, value in _host(digits.train_batch(step)).items():
      np.testing.assert_array_equal(np.asarray(again.train_batch(step)[name]), value)
  assert not np.array_equal(reseeded.train_indices(0)['y1'], digits.train_indices(0)['y1'])
  config = _config(batch_size=4, image_size=_TOY_SIZE, num_eval_images=6)
  toy_again = identity_sets.ToyPairs.from_config(config, _sharding())
  for name, value in toy.train_params(3).items():
    np.testing.assert_array_equal(toy_again.train_params(3)[name], value)
  reseeded = identity_sets.ToyPairs.from_config(
      _config(seed=5, batch_size=4, image_size=_TOY_SIZE, num_eval_images=6), _sharding())
  assert not np.array_equal(reseeded.train_params(3)['pose1'], toy.train_params(3)['pose1'])


def test_each_process_takes_its_block_of_rows(digits, dsprites, toy, monkeypatch):
  whole = {name: dataset.train_indices(8) for name, dataset in
           (('digits', digits), ('dsprites', dsprites))}
  whole_toy = toy.train_params(8)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    for name, dataset in (('digits', digits), ('dsprites', dsprites)):
      half = dataset.batch_size // 2
      rows = slice(index * half, (index + 1) * half)
      for key, value in dataset.train_indices(8).items():
        np.testing.assert_array_equal(value, whole[name][key][rows])
    half = toy.batch_size // 2
    for key, value in toy.train_params(8).items():
      np.testing.assert_array_equal(value, whole_toy[key][index * half:(index + 1) * half])


# ------------------------------------------------------------------------------------------
# In-memory pairing.


class _Synthetic(identity_sets.InMemoryPairs):
  """A table of `identities` (`[N]`) whose image `i` holds `i`, for timing and edge cases."""

  name = 'synthetic'
  sample_shape = (32, 32, 1)
  identity_names = ('id',)
  factor_names = ('id',)
  factor_discrete = (True,)
  probe_names = ('id',)
  pose_names = ()

  def __init__(self, identities, *, batch_size=64, seed=0, num_eval_images=None):
    self._identities = np.asarray(identities, np.int32)
    self.identity_sizes = (int(self._identities.max()) + 1,)
    super().__init__(seed=seed, batch_size=batch_size, sharding=_sharding(),
                     num_eval_images=num_eval_images)

  def _load_tables(self):
    count = len(self._identities)
    images = np.broadcast_to(np.arange(count, dtype=np.float32)[:, None, None, None],
                             (count, *self.sample_shape))
    table = identity_sets.SplitTable(images=images, identity=self._identities[:, None],
                                     factors=self._identities[:, None].astype(np.float32),
                                     scale=1 / count)
    return {'train': table, 'test': table}


def test_pairs_of_a_large_table_are_drawn_fast():
  dataset = _Synthetic(np.arange(100_000) % 1000, batch_size=64)
  table = dataset.arrays('train')['images']
  times = []
  for step in range(30):
    start = time.perf_counter()
    indices = dataset.train_indices(step)
    for rows in indices.values():
      table[rows].astype(np.float32)
    times.append(time.perf_counter() - start)
  # The host work of a step; `make_global_batch` adds its own transfer.
  assert np.median(times) < 5e-3, times
  batch = dataset.train_batch(0)
  np.testing.assert_array_equal(np.asarray(batch['y1']), table[dataset.train_indices(0)['y1']])


def test_single_image_identities_pair_with_themselves():
  # Identity 0 has one image, identity 1 three, identity 2 one.
  dataset = _Synthetic([1, 0, 1, 2, 1], batch_size=64)
  ident = dataset.arrays('train')['identity'][:, 0]
  for step in range(5):
    indices = dataset.train_indices(step)
    single = np.isin(ident[indices['y1']], [0, 2])
    assert single.any() and not single.all()
    np.testing.assert_array_equal(indices['y1_same'][single], indices['y1'][single])
    assert np.all(indices['y1_same'][~single] != indices['y1'][~single])
    np.testing.assert_array_equal(ident[indices['y1_same']], ident[indices['y1']])
    assert np.all(ident[indices['y2']] != ident[indices['y1']])
  # Images are `stored * scale + offset`.
  np.testing.assert_allclose(dataset.arrays('train')['images'][:, 0, 0, 0], np.arange(5) / 5)


def test_evaluation_sample_is_fixed_whatever_the_seed():
  identities = np.arange(1000) % 7
  first = _Synthetic(identities, seed=0, num_eval_images=50)
  other = _Synthetic(identities, seed=4, num_eval_images=50)
  rows = {}
  for split in identity.SPLITS:
    # Image i holds i / 1000: the rows the sample took, which are distinct and ascending.
    rows[split] = np.round(first.arrays(split)['images'][:, 0, 0, 0] * 1000).astype(int)
    assert len(rows[split]) == 50 and np.all(np.diff(rows[split]) > 0)
    np.testing.assert_array_equal(first.arrays(split)['identity'][:, 0],
                                  identities[rows[split]])
    np.testing.assert_array_equal(other.arrays(split)['images'], first.arrays(split)['images'])
  assert not np.array_equal(rows['train'], rows['test'])
  assert not np.array_equal(first.train_indices(0)['y1'], other.train_indices(0)['y1'])
  whole = _Synthetic(identities, num_eval_images=1000)
  assert len(whole.arrays('test')['images']) == 1000


def test_draws_cover_every_identity_in_proportion(digits):
  table = digits.arrays('train')['identity'][:, 0]
  shares = np.bincount(table, minlength=10) / len(table)
  draws = [digits.train_indices(step) for step in range(200)]
  y1 = table[np.concatenate([d['y1'] for d in draws])]
  y2 = table[np.concatenate([d['y2'] for d in draws])]
  same = np.concatenate([d['y1_same'] for d in draws])
  assert set(y1) == set(y2) == set(range(10))
  # 3200 draws: a share of 0.1 has a standard deviation of 0.005.
  np.testing.assert_allclose(np.bincount(y1, minlength=10) / len(y1), shares, atol=0.03)
  # y2 given y1 = c follows the shares of the other classes.
  for c in (0, 7):
    expected = np.where(np.arange(10) == c, 0, shares) / (1 - shares[c])
    observed = np.bincount(y2[y1 == c], minlength=10) / np.sum(y1 == c)
    np.testing.assert_allclose(observed, expected, atol=0.06)
  # y1_same is spread over the class, not stuck on a few images.
  assert len(np.unique(same)) > 0.8 * len(table)


# ------------------------------------------------------------------------------------------
# Dataset specifics.


def test_digits_are_the_image_datasets_split(digits):
  from uncertainty_jax.data import images  # pylint: disable=g-import-not-at-top
  source = images.Digits(seed=0, batch_size=16, sharding=_sharding())
  assert digits.sample_shape == (8, 8, 1)
  assert [len(digits.arrays(s)['images']) for s in identity.SPLITS] == [1437, 360]
  for split in identity.SPLITS:
    np.testing.assert_array_equal(digits.arrays(split)['images'], source.arrays(split)['images'])
    np.testing.assert_array_equal(digits.arrays(split)['identity'][:, 0],
                                  source.arrays(split)['labels'])


def test_mnist_is_padded_with_the_background(mnist):
  assert mnist.sample_shape == (32, 32, 1)
  for split in identity.SPLITS:
    raw, labels = _mnist_records(split)
    arrays = mnist.arrays(split)
    np.testing.assert_allclose(arrays['images'][:, 2:30, 2:30], raw / 127.5 - 1, atol=1e-6)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(arrays['images'][:, border] == -1)
    np.testing.assert_array_equal(arrays['identity'][:, 0], labels)


def test_smallnorb_identities_factors_and_disjoint_splits(norb):
  assert norb.sample_shape == (_NORB_SIZE, _NORB_SIZE, 1)
  identities = {}
  for split in identity.SPLITS:
    arrays = norb.arrays(split)
    assert len(arrays['images']) == 300  # num_eval_images of 24300
    cells = _decode_norb(arrays['images'])
    expected = np.stack([cells[:, 0], cells[:, 1], 20.0 * cells[:, 2], 30.0 + 5.0 * cells[:, 3],
                         cells[:, 4]], axis=-1)
    np.testing.assert_array_equal(arrays['factors'], expected)
    identities[split] = set(arrays['identity'][:, 0])
    assert np.all(np.isin(arrays['identity'][:, 0] % 10, smallnorb.SPLIT_INSTANCES[split]))
  assert not identities['train'] & identities['test']
  served = np.concatenate([_host(norb.train_batch(s))['id1'][:, 0] for s in range(30)])
  assert set(served) <= {c * 10 + i for c in range(5) for i in smallnorb.TRAIN_INSTANCES}


def _record_index(factors):
  """Fake dSprites factors `[N, 5]` -> the record numbers they were made from."""
  shape = factors[:, 0].astype(np.int64)
  scale = np.round((factors[:, 1] - 0.5) / 0.1).astype(np.int64)
  orientation = np.round(factors[:, 2] / (2 * np.pi / 40)).astype(np.int64)
  return shape + 3 * scale + 18 * orientation


def test_dsprites_reads_the_first_records_and_holds_out_a_fixed_tenth(dsprites):
  assert dsprites.sample_shape == (_SPRITE_SIZE, _SPRITE_SIZE, 1)
  train = _record_index(dsprites.arrays('train')['factors'])
  test = _record_index(dsprites.arrays('test')['factors'])
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(500))
  assert 25 <= len(test) <= 75
  labels, values = _dsprites_labels(_NUM_DSPRITES)
  factors = dsprites.arrays('train')['factors']
  np.testing.assert_allclose(factors[:, 3], values['value_x_position'][train], atol=1e-7)
  np.testing.assert_allclose(factors[:, 4], values['value_y_position'][train], atol=1e-7)
  # Area averaging: 4x4 block means of the binary fakes.
  blocks = _dsprites_images(labels)[train].reshape(-1, 16, 4, 16, 4, 1).mean(axis=(2, 4))
  np.testing.assert_allclose(dsprites.arrays('train')['images'], 2 * blocks - 1, atol=1e-6)
  # A record keeps its split when more records are read.
  config = _config(image_size=_SPRITE_SIZE, num_images=_NUM_DSPRITES, num_eval_images=1000)
  more = _mocked(lambda: identity_sets.DSpritesPairs.from_config(config, _sharding()))
  more_test = _record_index(more.arrays('test')['factors'])
  np.testing.assert_array_equal(more_test[more_test < 500], test)


def test_shapes3d_two_attribute_identities(shapes3d):
  assert shapes3d.sample_shape == (_SPRITE_SIZE, _SPRITE_SIZE, 3)
  assert shapes3d.identity_sizes == (4, 10)
  arrays = shapes3d.arrays('train')
  assert len(arrays['images']) == 64  # num_eval_images
  labels, values = _shapes3d_labels(_NUM_SHAPES3D)
  # Channel 2 of the fakes is (37 i) mod 256, which names record i among those of its identity.
  codes = _codes(arrays['images'][:, 0, 0, 2])
  candidates = np.arange(_NUM_SHAPES3D)
  for row, code in enumerate(codes):
    match = candidates[((candidates * 37) % 256 == code)
                       & (labels['label_shape'] == arrays['identity'][row, 0])
                       & (labels['label_object_hue'] == arrays['identity'][row, 1])]
    assert len(match) == 1
    expected = [values[f'value_{n}'][match[0]] for n in shapes3d.factor_names[2:]]
    np.testing.assert_allclose(arrays['factors'][row, 2:], expected, atol=1e-6)
  batch = _host(shapes3d.train_batch(1))
  # Identities differing in one attribute only still count as different.
  assert np.all(np.any(batch['id1'] != batch['id2'], axis=-1))


def test_toys_identities_poses_and_renders(toy):
  train_ids, test_ids = toy.split_identities['train'], toy.split_identities['test']
  np.testing.assert_array_equal(
      train_ids, [c * 10 + i for c in range(5) for i in toys.TRAIN_INSTANCES])
  assert not set(train_ids) & set(test_ids) and len(set(test_ids)) == 25
  for split, allowed in (('train', train_ids), ('test', test_ids)):
    arrays = toy.arrays(split)
    assert np.all(np.isin(arrays['identity'][:, 0], allowed))
    np.testing.assert_array_equal(arrays['factors'][:, 1], arrays['identity'][:, 0] // 10)
  test = toy.arrays('test')
  np.testing.assert_allclose(toy.render(test['identity'], test['pose']), test['images'],
                             atol=1e-6)
  # `toys.render_batch` of the same rows, padded to the 64 rows `render` compiles for.
  rows = np.arange(64) % len(test['pose'])
  ids, pose = test['identity'][rows, 0], test['pose'][rows]
  expected = toys.render_batch(ids // 10, ids % 10, pose[:, 0], pose[:, 1],
                               pose[:, 2].astype(np.int32), size=_TOY_SIZE)
  np.testing.assert_allclose(test['images'], np.asarray(expected)[:len(test['pose'])], atol=1e-5)
  params = [toy.train_params(step) for step in range(40)]
  ids = np.concatenate([np.stack([p['id1'], p['id2']], -1) for p in params])
  assert np.all(np.isin(ids, train_ids)) and np.all(ids[:, 0] != ids[:, 1])
  assert len(np.unique(ids)) > 20  # of 25 identities, 320 draws
  poses = np.concatenate([p[k] for p in params for k in ('pose1', 'pose1_same', 'pose2')])
  assert poses[:, 0].min() >= 0 and poses[:, 0].max() < 360
  assert poses[:, 1].min() >= 30 and poses[:, 1].max() <= 70
  assert set(poses[:, 2]) == set(range(toys.NUM_LIGHTS))
  # The batch renders exactly these identities and poses.
  batch = _host(toy.train_batch(2))
  np.testing.assert_array_equal(batch['id1'][:, 0], params[2]['id1'])
  np.testing.assert_array_equal(batch['id2'][:, 0], params[2]['id2'])
  for name, pose, ids in (('y1', 'pose1', 'id1'), ('y1_same', 'pose1_same', 'id1'),
                          ('y2', 'pose2', 'id2')):
    np.testing.assert_allclose(batch[name], toy.render(params[2][ids][:, None], params[2][pose]),
                               atol=1e-4)


def test_toys_colour_and_defaults():
  color = identity_sets.ToyPairs.from_config(_config(color=True), _sharding())
  assert color.sample_shape == (32, 32, 3)
  gray = identity_sets.ToyPairs.from_config(_config(), _sharding())
  assert gray.sample_shape == (32, 32, 1) and gray.num_eval_images == 2048


# ------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize('fixture', ['digits', 'toy'])
def test_bad_split_and_step(fixture, request):
  dataset = request.getfixturevalue(fixture)
  with pytest.raises(ValueError, match=re.escape("split='valid': expected one of")):
    dataset.arrays('valid')
  for step in (1.5, -1, True, 2**32):
    with pytest.raises(ValueError, match=re.escape(f'step={step!r}: expected an integer')):
      dataset.train_batch(step)


@pytest.mark.parametrize('build, match', [
    (lambda: identity_sets.DigitPairs(seed=-1, batch_size=8, sharding=_sharding()),
     'seed=-1: expected a non-negative integer'),
    (lambda: identity_sets.DigitPairs(seed=0.5, batch_size=8, sharding=_sharding()),
     'seed=0.5: expected a non-negative integer'),
    (lambda: identity_sets.DigitPairs(seed=0, batch_size=0, sharding=_sharding()),
     'batch_size=0: expected a positive integer'),
    (lambda: identity_sets.ToyPairs(seed='a', batch_size=8, sharding=_sharding()),
     "seed='a': expected a non-negative integer"),
    (lambda: identity_sets.ToyPairs(seed=0, batch_size=8, sharding=_sharding(), image_size=0),
     'image_size=0: expected a positive integer'),
    (lambda: identity_sets.ToyPairs(seed=0, batch_size=8, sharding=_sharding(), color='yes'),
     "color='yes': expected a bool"),
    (lambda: identity_sets.DSpritesPairs(seed=0, batch_size=8, sharding=_sharding(),
                                         image_size=48),
     'image_size=48: expected a divisor of 64'),
    (lambda: identity_sets.Shapes3DPairs(seed=0, batch_size=8, sharding=_sharding(),
                                         num_images=0),
     'num_images=0: expected a positive integer'),
    (lambda: identity_sets.SmallNorbPairs(seed=0, batch_size=8, sharding=_sharding(),
                                          image_size=128),
     'image_size=128: expected at most 96'),
    (lambda: identity_sets.SmallNorbPairs(seed=0, batch_size=8, sharding=_sharding(),
                                          data_dir=None),
     'data_dir=None: expected a path string'),
])
def test_bad_arguments_are_named(build, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    build()


def test_batch_size_not_divisible_by_the_process_count(monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  for cls in (identity_sets.DigitPairs, identity_sets.ToyPairs):
    with pytest.raises(ValueError, match=re.escape(
        'batch_size=3: expected a multiple of the process count 2')):
      cls(seed=0, batch_size=3, sharding=_sharding())


def test_a_single_training_identity_is_refused():
  with pytest.raises(ValueError, match=re.escape(
      'dsprites: the training split has 1 identity; expected at least 2')):
    _mocked(lambda: identity_sets.DSpritesPairs(seed=0, batch_size=8, sharding=_sharding(),
                                                image_size=_SPRITE_SIZE),
            as_dataset_fn=_one_shape_as_dataset)
  with pytest.raises(ValueError, match=re.escape('synthetic: the training split has 1 identity')):
    _Synthetic([0, 0, 0])


def test_toys_render_checks_its_arguments(toy):
  with pytest.raises(ValueError, match=re.escape('identity of shape (2,): expected [N, 1]')):
    toy.render(np.array([1, 2]), np.zeros((2, 3)))
  with pytest.raises(ValueError, match=re.escape('pose of shape (1, 3): expected [1, 3]')):
    toy.render(np.array([[1]]), np.array([[0.0, 40.0, 6.0]]))
