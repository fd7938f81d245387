"""Tests of the chapter 6 image datasets (digits, mnist, photo patches, CelebA, LSUN, toy 2-D).

TFDS datasets read records faked with `tfds.testing.mock_data`, encoded by the datasets' real
features; expected images come from numpy (centre crop and an area-averaging matrix).
"""

import functools
import os
import subprocess
import sys
import textwrap

import cv2
import jax
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from skimage import data as skimage_data
from sklearn import datasets as sklearn_datasets
from sklearn import model_selection

from tests.conftest import REPO
from uncertainty_jax import data
from uncertainty_jax.data import images
from uncertainty_jax.data import moving_photos
from uncertainty_jax.data import toy2d


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _config(**fields):
  return ml_collections.ConfigDict(dict(dict(seed=0, batch_size=8), **fields))


def _host(batch):
  return {name: np.asarray(value) for name, value in batch.items()}


def _check_batch(batch, batch_size, sample_shape, labelled):
  assert set(batch) == ({'images', 'labels'} if labelled else {'images'})
  image_batch = batch['images']
  assert isinstance(image_batch, jax.Array)
  assert image_batch.shape == (batch_size, *sample_shape)
  assert image_batch.dtype == np.float32
  assert image_batch.sharding == _sharding()
  if labelled:
    assert batch['labels'].dtype == np.int32 and batch['labels'].shape == (batch_size,)
    assert batch['labels'].sharding == _sharding()


def _check_determinism(make, steps=(0, 1, 5)):
  """Same seed and step: the same batch; other steps differ; a fresh instance resumes exactly."""
  uninterrupted = make()
  served = {step: _host(uninterrupted.train_batch(step)) for step in range(max(steps) + 1)}
  resumed = make()
  for step in reversed(steps):
    for name, value in _host(resumed.train_batch(step)).items():
      np.testing.assert_array_equal(value, served[step][name])
  assert not np.array_equal(served[0]['images'], served[1]['images'])
  return served


class TestRegistry:

  @pytest.mark.parametrize('name, cls', [('digits', images.Digits),
                                         ('photo_patches', images.PhotoPatches),
                                         ('toy2d', toy2d.Toy2D)])
  def test_builds_embedded_datasets(self, name, cls):
    dataset = data.get_image_dataset(_config(dataset=name), _sharding())
    assert type(dataset) is cls and dataset.name == name

  def test_every_name_resolves_to_a_factory(self):
    for name, (module, factory) in data.IMAGE_DATASETS.items():
      target = __import__(module, fromlist=['_'])
      for part in factory.split('.'):
        target = getattr(target, part)
      assert callable(target), name

  def test_unknown_name_lists_valid_ones(self):
    with pytest.raises(ValueError, match="dataset: unknown dataset 'cifar'.*'celeb_a'"):
      data.get_image_dataset(_config(dataset='cifar'), _sharding())


class TestDigits:

  def _make(self, seed=0, batch_size=8):
    return images.Digits(seed=seed, batch_size=batch_size, sharding=_sharding())

  def test_train_batch_shape_range_and_sharding(self):
    batch = self._make().train_batch(0)
    _check_batch(batch, 8, (8, 8, 1), labelled=True)
    values = np.asarray(batch['images'])
    assert values.min() >= -1 and values.max() <= 1
    assert set(np.asarray(batch['labels'])) <= set(range(10))

  def test_split_is_stratified_disjoint_and_independent_of_seed(self):
    raw = sklearn_datasets.load_digits()
    dataset = self._make(seed=0)
    train, test = dataset.source_indices['train'], dataset.source_indices['test']
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])),
                                  np.arange(len(raw.target)))
    expected_train, expected_test = model_selection.train_test_split(
        np.arange(len(raw.target)), test_size=0.2, random_state=0, stratify=raw.target)
    np.testing.assert_array_equal(test, np.sort(expected_test))
    np.testing.assert_array_equal(train, np.sort(expected_train))
    # Stratified: each class keeps its share of the test split to within one image.
    class_counts = np.bincount(raw.target, minlength=10)
    test_counts = np.bincount(raw.target[test], minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * class_counts) <= 1)
    other = self._make(seed=7)
    for split in images.SPLITS:
      for name, value in dataset.arrays(split).items():
        np.testing.assert_array_equal(other.arrays(split)[name], value)

  def test_values_are_the_raw_digits_scaled(self):
    raw = sklearn_datasets.load_digits()
    dataset = self._make()
    for split in images.SPLITS:
      rows = dataset.source_indices[split]
      arrays = dataset.arrays(split)
      assert arrays['images'].dtype == np.float32 and arrays['labels'].dtype == np.int32
      np.testing.assert_allclose(arrays['images'], raw.images[rows][..., None] / 8 - 1,
                                 rtol=0, atol=1e-7)
      np.testing.assert_array_equal(arrays['labels'], raw.target[rows])
    assert dataset.arrays('train')['images'].min() == -1
    assert dataset.arrays('train')['images'].max() == 1

  def test_epochs_follow_the_documented_permutations(self):
    batch_size = 64
    dataset = self._make(seed=3, batch_size=batch_size)
    train = dataset.arrays('train')
    size = len(train['labels'])
    # Two epochs and a bit: some batches straddle an epoch boundary.
    steps = range(2 * size // batch_size + 2)
    served = [_host(dataset.train_batch(step)) for step in steps]
    order = np.concatenate([np.random.default_rng([3, epoch]).permutation(size)
                            for epoch in range(3)])
    for step, batch in zip(steps, served):
      rows = order[step * batch_size:(step + 1) * batch_size]
      np.testing.assert_array_equal(batch['images'], train['images'][rows])
      np.testing.assert_array_equal(batch['labels'], train['labels'][rows])

  def test_determinism_and_resume(self):
    served = _check_determinism(self._make)
    other_seed = _host(self._make(seed=1).train_batch(0))
    assert not np.array_equal(other_seed['images'], served[0]['images'])


# Fake TFDS records: small counts, every split distinct.
_NUM_FAKE = {'train': 6, 'test': 3, 'validation': 3}
_LSUN_SHAPES = [(40, 56), (56, 40), (33, 47), (64, 64), (48, 30), (24, 24)]


def _split_name(split):
  """'train', 'test' or 'validation' from a split string or a `split_for_jax_process` object."""
  name = split if isinstance(split, str) else split.split
  for known in _NUM_FAKE:
    if name.startswith(known):
      return known
  raise AssertionError(f'unexpected split {split!r}')


def _fake_image(rng, shape):
  """A smooth random image (so that JPEG keeps it close to itself) with a random offset."""
  low = rng.uniform(30, 220, (4, 4, 3))
  smooth = cv2.resize(low, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
  return np.clip(smooth + rng.uniform(-20, 20, smooth.shape), 0, 255).astype(np.uint8)


def _examples(builder, split):
  rng = np.random.default_rng(['train', 'test', 'validation'].index(split))
  count = _NUM_FAKE[split]
  features = builder.info.features
  if builder.name == 'mnist':
    return [{'image': rng.integers(0, 256, (28, 28, 1)).astype(np.uint8), 'label': i % 10}
            for i in range(count)]
  if builder.name == 'celeb_a':
    return [{'image': _fake_image(rng, (218, 178)),
             'attributes': {k: bool(i % 2) for k in features['attributes'].keys()},
             'identity': {'Identity_No': i},
             'landmarks': {k: i for k in features['landmarks'].keys()}} for i in range(count)]
  if builder.name == 'lsun':
    return [{'id': f'{split}{i}', 'image': _fake_image(rng, _LSUN_SHAPES[i])}
            for i in range(count)]
  raise AssertionError(f'no fake data for {builder.name}')


_ENCODED = {}


def _encoded_examples(builder, split):
  key = (builder.name, split)
  if key not in _ENCODED:
    _ENCODED[key] = [builder.info.features.encode_example(example)
                     for example in _examples(builder, split)]
  return _ENCODED[key]


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  """`FileReaderBuilder._as_dataset` over `_examples`, decoded by the dataset's real features."""
  del read_config, shuffle_files
  encoded = _encoded_examples(self, _split_name(split))
  # Constant datasets, not `from_generator`: a Python generator still running in tf.data's
  # threads when the interpreter exits can deadlock it.
  ds = functools.reduce(lambda a, b: a.concatenate(b),
                        [tf.data.Dataset.from_tensors(ex) for ex in encoded])
  return ds.map(functools.partial(self.info.features.decode_example, decoders=decoders))


@pytest.fixture(name='fake_tfds')
def _fake_tfds():
  with tfds.testing.mock_data(as_dataset_fn=_fake_as_dataset,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def _area_matrix(size_in, size_out):
  """`[size_out, size_in]`: output pixel i averages input [i s, (i + 1) s), s = in / out."""
  scale = size_in / size_out
  starts, ends = np.arange(size_out) * scale, (np.arange(size_out) + 1) * scale
  pixels = np.arange(size_in)
  overlap = (np.minimum(ends[:, None], pixels[None] + 1)
             - np.maximum(starts[:, None], pixels[None]))
  return np.maximum(overlap, 0) / scale


def _expected_image(encoded_image, size):
  """The stored JPEG, decoded, centre square, area-averaged to `size`, mapped to [-1, 1]."""
  image = tf.io.decode_jpeg(encoded_image, channels=3).numpy().astype(np.float64)
  height, width = image.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = image[top:top + side, left:left + side]
  matrix = _area_matrix(side, size)
  return np.einsum('ij,jkc,lk->ilc', matrix, square, matrix) / 127.5 - 1


_STREAMED = {'celeb_a': (images.CelebA, 'celeb_a', 'test'),
             'lsun_bedroom': (images.LsunBedroom, 'lsun', 'validation')}


@pytest.mark.usefixtures('fake_tfds')
class TestStreamedTfds:

  def _make(self, name, **kwargs):
    kwargs = dict(dict(seed=0, batch_size=4, image_size=8, sharding=_sharding()), **kwargs)
    return _STREAMED[name][0](**kwargs)

  def _expected(self, name, split, rows, size=8):
    builder = tfds.builder(_STREAMED[name][0].tfds_name)
    encoded = _encoded_examples(builder, split)
    return np.stack([_expected_image(encoded[row]['image'], size) for row in rows])

  @pytest.mark.parametrize('name', sorted(_STREAMED))
  def test_batches_are_centre_squares_area_resized_in_stored_order(self, name):
    dataset = self._make(name)
    assert dataset.sample_shape == (8, 8, 3) and dataset.num_classes is None
    served = _check_determinism(lambda: self._make(name), steps=(0, 1, 3))
    _check_batch(dataset.train_batch(0), 4, (8, 8, 3), labelled=False)
    num_train = _NUM_FAKE['train']
    for step in (0, 1, 3):  # 4 records a step: step 1 wraps around the 6 records
      rows = (step * 4 + np.arange(4)) % num_train
      np.testing.assert_allclose(served[step]['images'], self._expected(name, 'train', rows),
                                 rtol=0, atol=2e-5)
      assert served[step]['images'].min() >= -1 and served[step]['images'].max() <= 1

  @pytest.mark.parametrize('name', sorted(_STREAMED))
  def test_arrays_hold_the_first_images_of_the_split(self, name):
    dataset = self._make(name, num_eval_images=2, image_size=12)
    test_split = _STREAMED[name][2]
    test = dataset.arrays('test')
    assert set(test) == {'images'} and test['images'].dtype == np.float32
    np.testing.assert_allclose(test['images'], self._expected(name, test_split, [0, 1], 12),
                               rtol=0, atol=2e-5)
    train = self._make(name, num_eval_images=100, image_size=12).arrays('train')
    np.testing.assert_allclose(train['images'],
                               self._expected(name, 'train', range(_NUM_FAKE['train']), 12),
                               rtol=0, atol=2e-5)

  def test_from_config_reads_image_size_and_data_dir(self, tmp_path):
    config = _config(dataset='celeb_a', image_size=16, data_dir=str(tmp_path), batch_size=2)
    dataset = data.get_image_dataset(config, _sharding())
    assert dataset.data_dir == str(tmp_path)
    assert dataset.train_batch(0)['images'].shape == (2, 16, 16, 3)


@pytest.mark.usefixtures('fake_tfds')
class TestMnist:

  def test_batches_and_arrays(self):
    make = functools.partial(images.Mnist, seed=0, batch_size=4, sharding=_sharding())
    dataset = make()
    _check_batch(dataset.train_batch(0), 4, (28, 28, 1), labelled=True)
    served = _check_determinism(make, steps=(0, 1, 4))
    builder = tfds.builder('mnist')
    for split in images.SPLITS:
      raw = _examples(builder, split)
      arrays = dataset.arrays(split)
      expected = np.stack([ex['image'] for ex in raw]).astype(np.float32) / 127.5 - 1
      np.testing.assert_allclose(arrays['images'], expected, rtol=0, atol=1e-6)
      np.testing.assert_array_equal(arrays['labels'], [ex['label'] for ex in raw])
    train = dataset.arrays('train')
    for step in (0, 4):
      rows = dataset.train_indices(step)
      np.testing.assert_array_equal(served[step]['images'], train['images'][rows])
      np.testing.assert_array_equal(served[step]['labels'], train['labels'][rows])


class TestPhotoPatches:

  def _make(self, seed=0, batch_size=8, **kwargs):
    return images.PhotoPatches(seed=seed, batch_size=batch_size, sharding=_sharding(), **kwargs)

  def test_batch_shape_range_and_sharding(self):
    dataset = self._make(image_size=32)
    assert dataset.sample_shape == (32, 32, 3) and dataset.num_classes is None
    batch = dataset.train_batch(0)
    _check_batch(batch, 8, (32, 32, 3), labelled=False)
    values = np.asarray(batch['images'])
    assert values.min() >= -1 and values.max() <= 1 and values.std() > 0.05

  def test_patches_are_crops_of_the_native_photos(self):
    dataset = self._make(batch_size=8)
    step = 3
    patches = np.asarray(dataset.train_batch(step)['images'])
    params = dataset.patch_params('train', step * 8 + np.arange(8))
    photos = [getattr(skimage_data, name)() for name in moving_photos.PHOTO_NAMES]
    for row in range(8):
      top, left = params['top'][row], params['left'][row]
      crop = photos[params['photo'][row]][top:top + 64, left:left + 64]
      if params['flip'][row]:
        crop = crop[:, ::-1]
      np.testing.assert_array_equal(patches[row], crop.astype(np.float32) / 127.5 - 1)

  def test_patches_are_found_in_a_photo(self):
    # Independent of the drawn positions: template matching locates each patch, then the
    # pixels there must be identical.
    patches = self._make(image_size=48).arrays('test')['images'][:3]
    photos = [getattr(skimage_data, name)() for name in moving_photos.PHOTO_NAMES]
    for patch in patches:
      as_uint8 = np.rint((patch + 1) * 127.5).astype(np.uint8)
      found = False
      for photo in photos:
        for template in (as_uint8, np.ascontiguousarray(as_uint8[:, ::-1])):
          scores = cv2.matchTemplate(photo, template, cv2.TM_SQDIFF)
          top, left = np.unravel_index(np.argmin(scores), scores.shape)
          found |= np.array_equal(photo[top:top + 48, left:left + 48], template)
      assert found

  def test_draws_cover_photos_positions_and_flips(self):
    dataset = self._make()
    params = dataset.patch_params('test', np.arange(700))
    num_photos = len(moving_photos.PHOTO_NAMES)
    counts = np.bincount(params['photo'], minlength=num_photos)
    # Uniform photos: 100 expected each, binomial std ~9.3.
    assert np.all(np.abs(counts - 100) < 40)
    assert 0.4 < params['flip'].mean() < 0.6
    shapes = np.array([photo.shape[:2] for photo in images.native_photos()])
    relative_top = params['top'] / (shapes[params['photo'], 0] - 64)
    assert 0.45 < relative_top.mean() < 0.55 and relative_top.max() <= 1

  def test_arrays_are_the_first_examples_of_each_stream(self):
    dataset = self._make(batch_size=8, num_eval_images=16, image_size=16)
    train = dataset.arrays('train')
    assert set(train) == {'images'} and train['images'].shape == (16, 16, 16, 3)
    first = np.concatenate([np.asarray(dataset.train_batch(s)['images']) for s in (0, 1)])
    np.testing.assert_array_equal(train['images'], first)
    test = dataset.arrays('test')['images']
    assert not np.array_equal(test, train['images'])
    same = self._make(batch_size=4, num_eval_images=16, image_size=16)
    np.testing.assert_array_equal(same.arrays('test')['images'], test)
    other = self._make(seed=1, num_eval_images=16, image_size=16)
    assert not np.array_equal(other.arrays('test')['images'], test)

  def test_determinism_and_resume(self):
    make = functools.partial(self._make, image_size=16)
    served = _check_determinism(make)
    assert not np.array_equal(_host(make(seed=2).train_batch(0))['images'], served[0]['images'])

  def test_from_config(self):
    dataset = images.PhotoPatches.from_config(
        _config(image_size=20, num_eval_images=3), _sharding())
    assert dataset.arrays('test')['images'].shape == (3, 20, 20, 3)
    default = images.PhotoPatches.from_config(_config(), _sharding())
    assert default.sample_shape == (64, 64, 3)


class TestToy2D:

  def test_modes(self):
    ring = toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding(), toy_modes='ring')
    assert ring.modes.shape == (8, 2) and ring.mode_std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring.modes, axis=1), 2.0)
    angles = np.sort(np.mod(np.arctan2(ring.modes[:, 1], ring.modes[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 8, atol=1e-12)
    grid = toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding(), toy_modes='grid')
    assert grid.modes.shape == (25, 2) and grid.mode_std == 0.05
    expected = {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert {tuple(mode) for mode in grid.modes.tolist()} == expected

  @pytest.mark.parametrize('toy_modes', ['ring', 'grid'])
  def test_mode_frequencies_and_spread(self, toy_modes):
    dataset = toy2d.Toy2D.from_config(
        _config(toy_modes=toy_modes, num_eval_images=5000), _sharding())
    arrays = dataset.arrays('test')
    points, labels = arrays['images'], arrays['labels']
    assert points.shape == (5000, 2) and points.dtype == np.float32
    assert labels.dtype == np.int32
    modes, std = dataset.modes, dataset.mode_std
    num_modes = len(modes)
    distances = np.linalg.norm(points[:, None].astype(np.float64) - modes[None], axis=-1)
    # Modes are 2 * sin(pi / 8) ~ 1.53 apart or more, 30 std: the nearest mode is the label.
    np.testing.assert_array_equal(np.argmin(distances, axis=1), labels)
    counts = np.bincount(labels, minlength=num_modes)
    expected = 5000 / num_modes
    sigma = np.sqrt(5000 * (1 / num_modes) * (1 - 1 / num_modes))
    assert np.all(np.abs(counts - expected) < 4.5 * sigma)
    offsets = points - modes[labels]
    np.testing.assert_allclose(offsets.std(axis=0), std, rtol=0.05)
    np.testing.assert_allclose(offsets.mean(axis=0), 0, atol=5 * std / np.sqrt(5000))
    # The nearest-mode distance of a 2-D Gaussian is Rayleigh: mean std * sqrt(pi / 2).
    np.testing.assert_allclose(distances.min(axis=1).mean(), std * np.sqrt(np.pi / 2),
                               rtol=0.05)

  def test_train_batches_continue_the_train_stream(self):
    dataset = toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding(), num_eval_images=12)
    batch = dataset.train_batch(1)
    _check_batch(batch, 4, (2,), labelled=False)
    train = dataset.arrays('train')['images']
    served = np.concatenate([np.asarray(dataset.train_batch(s)['images']) for s in range(3)])
    np.testing.assert_allclose(served, train, rtol=1e-6, atol=1e-6)
    assert not np.allclose(dataset.arrays('test')['images'], train)
    _check_determinism(lambda: toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding()))

  def test_stream_index_carries_past_two_to_the_32(self):
    # Batch 1431655765 of size 3 holds stream points 2^32 - 1, 2^32 and 2^32 + 1.
    dataset = toy2d.Toy2D(seed=0, batch_size=3, sharding=_sharding(), toy_modes='grid')
    points = np.asarray(dataset.train_batch(1431655765)['images'])
    modes = np.asarray(dataset.modes, np.float32)
    for row, index in enumerate([2**32 - 1, 2**32, 2**32 + 1]):
      key = jax.random.fold_in(jax.random.fold_in(dataset.train_key, index // 2**32),
                               index % 2**32)
      mode_key, noise_key = jax.random.split(key)
      mode = int(jax.random.randint(mode_key, (), 0, len(modes)))
      expected = modes[mode] + np.float32(0.05) * np.asarray(jax.random.normal(noise_key, (2,)))
      np.testing.assert_allclose(points[row], expected, rtol=1e-6, atol=1e-6)

  def test_sample_mixture_rows_depend_only_on_key_and_index(self):
    key = jax.random.key(4)
    modes = np.array([[0.0, 0.0], [10.0, 0.0]])
    points, mode_index = toy2d.sample_mixture(key, modes, 0.1, 10)
    assert points.shape == (10, 2) and mode_index.shape == (10,)
    head, head_index = toy2d.sample_mixture(key, modes, 0.1, 4)
    np.testing.assert_array_equal(np.asarray(head), np.asarray(points)[:4])
    np.testing.assert_array_equal(np.asarray(head_index), np.asarray(mode_index)[:4])
    offsets = np.asarray(points) - modes[np.asarray(mode_index)]
    assert np.all(np.abs(offsets) < 0.6)  # 6 std


class TestErrors:

  @pytest.mark.parametrize('make, match', [
      (lambda: images.Digits(seed=0, batch_size=4, sharding=_sharding()).arrays('validation'),
       r"split='validation': expected one of \('train', 'test'\)"),
      (lambda: toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding(), toy_modes='spiral'),
       r"toy_modes='spiral': expected one of \['grid', 'ring'\]"),
      (lambda: images.PhotoPatches(seed=0, batch_size=4, sharding=_sharding(), image_size=301),
       r'image_size=301: expected at most 300'),
      (lambda: images.Digits(seed=0, batch_size=0, sharding=_sharding()),
       r'batch_size=0: expected a positive integer'),
      (lambda: images.PhotoPatches(seed=-1, batch_size=4, sharding=_sharding()),
       r'seed=-1: expected a non-negative integer'),
      (lambda: images.Digits(seed=0, batch_size=4, sharding='data'),
       r"sharding='data': expected a jax.sharding.Sharding"),
      (lambda: images.Digits(seed=0, batch_size=4, sharding=_sharding()).train_batch(-1),
       r'step=-1'),
      (lambda: toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding(), num_eval_images=0),
       r'num_eval_images=0: expected a positive integer'),
      (lambda: images.Mnist(seed=0, batch_size=4, sharding=_sharding(), data_dir=3),
       r'data_dir=3: expected a path string'),
  ])
  def test_bad_input(self, make, match):
    with pytest.raises(ValueError, match=match):
      make()

  def test_batch_size_not_divisible_by_process_count(self, monkeypatch):
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    with pytest.raises(ValueError, match='batch_size=3: expected a multiple of the process count'):
      images.PhotoPatches(seed=0, batch_size=3, sharding=_sharding())

  def test_missing_tfds_dataset_names_it_and_the_fix(self, tmp_path):
    dataset = images.LsunBedroom(seed=0, batch_size=2, sharding=_sharding(),
                                 data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
      dataset.train_batch(0)
    assert "'lsun/bedroom'" in str(err.value) and str(tmp_path) in str(err.value)
    assert 'tfds build' in str(err.value)


_TWO_DEVICES = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from uncertainty_jax.data import images, toy2d
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    assert len(jax.devices()) == 2
    try:
      images.Digits(seed=0, batch_size=3, sharding=sharding)
    except ValueError as error:
      print('ERROR', error)
    out = {}
    for name, dataset in [
        ('digits', images.Digits(seed=0, batch_size=4, sharding=sharding)),
        ('patches', images.PhotoPatches(seed=0, batch_size=4, sharding=sharding, image_size=8)),
        ('toy2d', toy2d.Toy2D(seed=0, batch_size=4, sharding=sharding))]:
      batch = dataset.train_batch(2)['images']
      shards = sorted(batch.addressable_shards, key=lambda shard: shard.index[0].start)
      assert [shard.data.shape[0] for shard in shards] == [2, 2]
      assert len({shard.device for shard in shards}) == 2
      out[name] = np.concatenate([np.asarray(shard.data) for shard in shards])
    np.savez(sys.argv[1], **out)
""")


def test_two_devices_shard_the_same_batches(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  output = tmp_path / 'batches.npz'
  proc = subprocess.run([sys.executable, '-c', _TWO_DEVICES, str(output)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'ERROR batch_size=3: expected a multiple of 2' in proc.stdout
  two = np.load(output)
  one = {'digits': images.Digits(seed=0, batch_size=4, sharding=_sharding()),
         'patches': images.PhotoPatches(seed=0, batch_size=4, sharding=_sharding(), image_size=8),
         'toy2d': toy2d.Toy2D(seed=0, batch_size=4, sharding=_sharding())}
  for name, dataset in one.items():
    np.testing.assert_allclose(two[name], np.asarray(dataset.train_batch(2)['images']),
                               rtol=1e-6, atol=1e-6, err_msg=name)
