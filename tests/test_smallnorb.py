"""Tests of the smallNORB triplets on a complete fake grid served through tfds mock_data.

Every fake image encodes its cell and is constant on 12 x 12 blocks apart from a fixed texture:
in the top half, the first five block columns hold `10 + 13 * label` for the category,
instance, lighting, elevation and azimuth; the bottom half holds cell-dependent grey levels plus
a texture that varies inside each block. With `image_size` 8 the area resize maps each block to
one pixel, so a frame's cell can be read back from its first row, and frames are compared with
the numpy block means of the fake images of the expected cells.
"""

import re

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from uncertainty_jax.data import smallnorb

_SIZE = 8
_BLOCK = smallnorb.NATIVE_SIZE // _SIZE
_BATCH = 256
_NUM_TEST = 64
_LABEL_KEYS = ('label_category', 'instance', 'label_lighting', 'label_elevation',
               'label_azimuth')
# Added to the bottom half of every fake image: a pattern that varies inside each block.
_Y, _X = np.mgrid[:smallnorb.NATIVE_SIZE, :smallnorb.NATIVE_SIZE]
_TEXTURE = tf.constant(np.where(_Y >= smallnorb.NATIVE_SIZE // 2,
                                (_X * 7 + _Y * 13 + (_X * _Y) % 17 * 5) % 32, 0), tf.uint8)
# The cell `_drop_cell_as_dataset` leaves out: (category, instance, lighting, elevation, azimuth).
_DROPPED = (2, 7, 3, 4, 11)


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _fake_images(labels):
  """`[N, 5]` int cells (category, instance, lighting, elevation, azimuth) -> `[N, 96, 96, 1]`
  uint8 fake images (see the module docstring)."""
  labels = tf.cast(labels, tf.int32)
  n = tf.shape(labels)[0]
  codes = tf.concat([10 + 13 * labels, tf.fill([n, 3], 128)], axis=1)  # [N, 8]
  cell = (labels[:, 0] * 7 + labels[:, 1] * 11 + labels[:, 2] * 13 + labels[:, 3] * 17
          + labels[:, 4] * 19)
  i, j = tf.range(4)[None, :, None], tf.range(8)[None, None, :]
  lower = 20 + (cell[:, None, None] * 29 + i * 7 + j * 13) % 200  # [N, 4, 8]
  blocks = tf.cast(tf.concat([tf.repeat(codes[:, None, :], 4, axis=1), lower], axis=1),
                   tf.uint8)  # [N, 8, 8]
  images = tf.repeat(tf.repeat(blocks, _BLOCK, axis=1), _BLOCK, axis=2)
  return (images + _TEXTURE)[..., None]


def _expected_frames(cells):
  """`[..., 5]` cells -> `[..., S, S, 1]`: numpy block means of their fake images in [-1, 1]."""
  cells = np.asarray(cells)
  images = _fake_images(cells.reshape(-1, 5)).numpy().astype(np.float64)
  means = images.reshape(-1, _SIZE, _BLOCK, _SIZE, _BLOCK).mean(axis=(2, 4))
  return (means / 127.5 - 1).reshape(cells.shape[:-1] + (_SIZE, _SIZE, 1))


def _decode(frames):
  """`[..., S, S, 1]` frames -> `[..., 5]` the cells their label blocks encode."""
  values = np.round((np.asarray(frames)[..., 0, :5, 0] + 1) * 127.5).astype(np.int64)
  labels, remainder = np.divmod(values - 10, 13)
  assert np.all(remainder == 0), 'a label block is not a code: the frame mixes cells'
  return labels


def _cells(params, elevations, azimuths):
  """`[n, T, 5]` cells of trajectories (`[n]` arrays) at grid indices `[n, T]`."""
  fixed = np.stack([params['category'], params['instance'], params['lighting']], axis=-1)
  fixed = np.broadcast_to(fixed[:, None], elevations.shape + (3,))
  return np.concatenate([fixed, elevations[..., None], azimuths[..., None]], axis=-1)


def _trajectory_cells(params, times):
  """`[n, T, 5]` cells at integer `times` (`[T]` or `[n, T]`), from the definition
  `e + (t - 1) ve`, `(a + (t - 1) va) mod 18`."""
  steps = np.broadcast_to(np.asarray(times) - 1, (len(params['skip']), np.shape(times)[-1]))
  elevations = params['elevation'][:, None] + steps * params['elevation_velocity'][:, None]
  azimuths = (params['azimuth'][:, None] + steps * params['azimuth_velocity'][:, None]) % 18
  return _cells(params, elevations, azimuths)


def _grid(split):
  """Every cell of a split, `[24300, 5]`, in a fixed shuffled order."""
  axes = (range(smallnorb.NUM_CATEGORIES), smallnorb.SPLIT_INSTANCES[split],
          range(smallnorb.NUM_LIGHTINGS), range(smallnorb.NUM_ELEVATIONS),
          range(smallnorb.NUM_AZIMUTHS))
  cells = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 5)
  return cells[np.random.default_rng(len(split)).permutation(len(cells))]


def _records(builder, decoders, cells):
  """Decoded records of `cells` with the builder's features, or the subset `decoders` asks for
  (`tfds.decode.PartialDecoding`), as TFDS serves them."""
  names = list(builder.info.features.keys())
  if isinstance(decoders, tfds.decode.PartialDecoding):
    names = list(decoders.extract_features(builder.info.features).keys())

  def examples(labels):
    record = {key: tf.cast(labels[:, k], tf.int64) for k, key in enumerate(_LABEL_KEYS)}
    record['image'] = _fake_images(labels)
    if 'image2' in names:
      record['image2'] = tf.zeros_like(record['image'])
    return {name: record[name] for name in names}

  return tf.data.Dataset.from_tensor_slices(cells).batch(2048).map(examples).unbatch()


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  del read_config, shuffle_files
  return _records(self, decoders, _grid(str(split)))


def _drop_cell_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  del read_config, shuffle_files
  cells = _grid(str(split))
  return _records(self, decoders, cells[~np.all(cells == _DROPPED, axis=1)])


def _foreign_instance_as_dataset(self, split, decoders=None, read_config=None,
                                 shuffle_files=False):
  del read_config, shuffle_files
  cells = _grid(str(split))
  cells[100, 1] = 0  # a test instance in the training split
  return _records(self, decoders, cells)


def _mock(as_dataset_fn=_fake_as_dataset):
  return tfds.testing.mock_data(as_dataset_fn=as_dataset_fn,
                                policy=tfds.testing.MockPolicy.USE_CODE)


def _make(as_dataset_fn=_fake_as_dataset, **overrides):
  kwargs = dict(seed=0, batch_size=_BATCH, sharding=_sharding(), image_size=_SIZE, skip=True,
                num_test=_NUM_TEST)
  kwargs.update(overrides)
  with _mock(as_dataset_fn):
    return smallnorb.SmallNorbTriplets(**kwargs)


@pytest.fixture(scope='module', name='dataset')
def _dataset():
  return _make()


@pytest.fixture(scope='module', name='plain')
def _plain():
  """Another seed, without the skip."""
  return _make(seed=1, batch_size=64, skip=False, num_test=16)


def _frames(batch):
  return np.asarray(batch['frames'])


class TestTrainBatches:

  def test_shape_dtype_range_and_sharding(self, dataset):
    batch = dataset.train_batch(0)
    assert set(batch) == {'frames', 'skip'}
    assert batch['frames'].shape == (_BATCH, 3, _SIZE, _SIZE, 1)
    assert batch['frames'].dtype == np.float32
    assert batch['skip'].shape == (_BATCH,) and batch['skip'].dtype == np.int32
    assert batch['frames'].sharding == _sharding()
    frames = _frames(batch)
    assert frames.min() >= -1.0 and frames.max() <= 1.0
    assert dataset.clip_length == 3 and dataset.channels == 1

  def test_frames_are_the_images_of_the_trajectory_cells(self, dataset):
    params = dataset.train_params(3)
    batch = dataset.train_batch(3)
    skip = params['skip']
    times = np.stack([np.ones_like(skip), 2 * np.ones_like(skip), 3 + skip], axis=-1)
    np.testing.assert_allclose(_frames(batch), _expected_frames(_trajectory_cells(params, times)),
                               atol=1e-5)
    np.testing.assert_array_equal(np.asarray(batch['skip']), skip)

  def test_frames_move_one_grid_step_per_frame(self, dataset):
    batch = dataset.train_batch(1)
    cells, skip = _decode(_frames(batch)), np.asarray(batch['skip'])  # [B, 3, 5], [B]
    # Category, instance and lighting stay; the pose moves at constant speed.
    assert np.all(cells[:, :, :3] == cells[:, :1, :3])
    elevation_step = cells[:, 1, 3] - cells[:, 0, 3]
    azimuth_step = (cells[:, 1, 4] - cells[:, 0, 4]) % 18
    assert set(np.unique(elevation_step)) == {-1, 0, 1}
    assert set(np.unique(azimuth_step)) == {1, 17}  # +-1 modulo 18
    np.testing.assert_array_equal(cells[:, 2, 3] - cells[:, 1, 3], (1 + skip) * elevation_step)
    np.testing.assert_array_equal((cells[:, 2, 4] - cells[:, 1, 4]) % 18,
                                  ((1 + skip) * np.where(azimuth_step == 1, 1, -1)) % 18)

  def test_deterministic_in_seed_and_step(self, dataset, plain):
    # A second instance (built from a config, with a smaller batch) serves the same rows.
    config = ml_collections.ConfigDict(dict(seed=0, batch_size=8, image_size=_SIZE, skip=True,
                                            num_test_clips=16))
    with _mock():
      again = smallnorb.SmallNorbTriplets.from_config(config, _sharding())
    assert (again.batch_size, again.image_size, again.skip, again.num_test) == (8, _SIZE, True,
                                                                                16)
    for step in (7, 0):
      np.testing.assert_array_equal(_frames(again.train_batch(step)),
                                    _frames(dataset.train_batch(step))[:8])
    np.testing.assert_array_equal(np.concatenate([b['frames'] for b in again.test_batches(16)]),
                                  next(dataset.test_batches(16))['frames'])
    assert not np.array_equal(_frames(dataset.train_batch(0)), _frames(dataset.train_batch(1)))
    assert not np.array_equal(_frames(plain.train_batch(0)), _frames(dataset.train_batch(0))[:64])

  def test_training_uses_training_instances_only(self, dataset):
    instances = np.concatenate([_decode(_frames(dataset.train_batch(s)))[..., 1]
                                for s in range(4)])
    assert set(np.unique(instances)) == set(smallnorb.TRAIN_INSTANCES)
    test_instances = np.concatenate([_decode(b['frames'])[..., 1]
                                     for b in dataset.test_batches(16)])
    assert set(np.unique(test_instances)) == set(smallnorb.TEST_INSTANCES)

  def test_azimuth_wraps_around(self, dataset):
    cells = np.concatenate([_decode(_frames(dataset.train_batch(s))) for s in range(2)])
    forward = (cells[:, 0, 4] == 17) & (cells[:, 1, 4] == 0)
    backward = (cells[:, 0, 4] == 0) & (cells[:, 1, 4] == 17)
    assert forward.any() and backward.any()
    # The wrapped trajectories carry on at the same speed (the third frame may skip a step).
    assert np.all(np.isin(cells[forward, 2, 4], [1, 2]))
    assert np.all(np.isin(cells[backward, 2, 4], [16, 15]))

  def test_elevation_stays_on_the_grid_from_t0_to_t4(self, dataset):
    params = [dataset.train_params(s) for s in range(8)]
    start = np.concatenate([p['elevation'] for p in params])
    velocity = np.concatenate([p['elevation_velocity'] for p in params])
    for elevations in (start - velocity, start, start + 3 * velocity):  # t = 0, 1, 4
      assert elevations.min() >= 0 and elevations.max() <= 8
    # Every start that keeps the grid is drawn: e in 1..5 going up, 3..7 going down, 0..8 level.
    for v, allowed in ((1, range(1, 6)), (-1, range(3, 8)), (0, range(0, 9))):
      assert set(np.unique(start[velocity == v])) == set(allowed)
    np.testing.assert_array_equal(_decode(_frames(dataset.train_batch(5)))[:, 0, 3],
                                  params[5]['elevation'])

  def test_skip_frame_is_the_t4_cell_and_half_the_rows_skip(self, dataset):
    skips = np.concatenate([dataset.train_params(s)['skip'] for s in range(16)])
    # 4096 rows: the standard deviation of the rate is 0.008.
    assert abs(skips.mean() - 0.5) < 0.04
    params = dataset.train_params(0)
    rows = params['skip'] == 1
    assert rows.any() and not rows.all()
    at_4 = _expected_frames(_trajectory_cells(params, np.asarray([4])))[:, 0]
    at_3 = _expected_frames(_trajectory_cells(params, np.asarray([3])))[:, 0]
    third = _frames(dataset.train_batch(0))[:, 2]
    np.testing.assert_allclose(third[rows], at_4[rows], atol=1e-5)
    np.testing.assert_allclose(third[~rows], at_3[~rows], atol=1e-5)

  def test_no_skip_without_skip(self, plain):
    batch = plain.train_batch(0)
    assert not np.asarray(batch['skip']).any()
    assert not np.concatenate([plain.train_params(s)['skip'] for s in range(4)]).any()
    cells = _decode(_frames(batch))
    np.testing.assert_array_equal(cells[:, 2, 3] - cells[:, 1, 3], cells[:, 1, 3] - cells[:, 0, 3])


class TestTestSet:

  def test_batches_are_the_fixed_test_triplets(self, dataset):
    batches = list(dataset.test_batches(24))
    assert [len(b['frames']) for b in batches] == [24, 24, 16]
    frames = np.concatenate([b['frames'] for b in batches])
    assert frames.shape == (_NUM_TEST, 3, _SIZE, _SIZE, 1) and frames.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([b['frames'] for b in dataset.test_batches(64)]),
                                  frames)
    params = dataset.test_params
    skip = params['skip']
    np.testing.assert_array_equal(np.concatenate([b['skip'] for b in batches]), skip)
    assert skip.any() and not skip.all()
    times = np.stack([np.ones_like(skip), 2 * np.ones_like(skip), 3 + skip], axis=-1)
    np.testing.assert_allclose(frames, _expected_frames(_trajectory_cells(params, times)),
                               atol=1e-5)

  def test_trajectories_half_steps_are_means_of_neighbours(self, dataset):
    num = 16
    trajectories = dataset.test_trajectories(num)
    assert trajectories.shape == (num, 7, _SIZE, _SIZE, 1)
    assert trajectories.dtype == np.float32
    assert smallnorb.INTERPOLATION_TIMES == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    assert smallnorb.HALF_STEP == 'mean of neighbours'
    params = {k: v[:num] for k, v in dataset.test_params.items()}
    whole = _expected_frames(_trajectory_cells(params, np.arange(4)))  # t = 0, 1, 2, 3
    np.testing.assert_allclose(trajectories[:, 0::2], whole, atol=1e-5)
    np.testing.assert_allclose(trajectories[:, 1::2], (whole[:, :-1] + whole[:, 1:]) / 2,
                               atol=1e-5)

  def test_trajectories_integer_steps_are_the_test_triplets(self, dataset):
    num = 32
    trajectories = dataset.test_trajectories(num)
    triplets = np.concatenate([b['frames'] for b in dataset.test_batches(num)])[:num]
    np.testing.assert_array_equal(trajectories[:, 2], triplets[:, 0])  # t = 1
    np.testing.assert_array_equal(trajectories[:, 4], triplets[:, 1])  # t = 2
    kept = dataset.test_params['skip'][:num] == 0  # t = 3 unless the triplet skips to t = 4
    assert kept.any() and not kept.all()
    np.testing.assert_array_equal(trajectories[kept, 6], triplets[kept, 2])
    assert not np.array_equal(trajectories[~kept, 6], triplets[~kept, 2])


class TestErrors:

  def test_missing_cell_is_named(self):
    cell = ', '.join(str(v) for v in _DROPPED)
    with pytest.raises(ValueError, match=re.escape(
        f"split 'train' has no image for (category, instance, lighting, elevation, azimuth) = "
        f"({cell}) (1 such cells)")):
      _make(as_dataset_fn=_drop_cell_as_dataset)

  def test_instance_of_the_other_split_is_named(self):
    with pytest.raises(ValueError, match=re.escape("split 'train': a record of instance 0;")):
      _make(as_dataset_fn=_foreign_instance_as_dataset)

  def test_unprepared_dataset_says_how_to_prepare_it(self, tmp_path):
    config = ml_collections.ConfigDict(dict(seed=0, batch_size=8, image_size=_SIZE, skip=False,
                                            num_test_clips=8, tfds_data_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match=re.escape(
        f'`tfds build smallnorb --data_dir={tmp_path}`')):
      smallnorb.SmallNorbTriplets.from_config(config, _sharding())
    assert not any(tmp_path.iterdir())  # nothing was downloaded

  @pytest.mark.parametrize('field, value', [('seed', 1.5), ('batch_size', 0), ('image_size', -1),
                                            ('num_test', 1.5), ('skip', 'yes'),
                                            ('data_dir', None)])
  def test_bad_arguments_are_named(self, field, value):
    kwargs = dict(seed=0, batch_size=8, sharding=_sharding(), image_size=_SIZE)
    kwargs[field] = value
    with pytest.raises(ValueError, match=f'{field}='):
      smallnorb.SmallNorbTriplets(**kwargs)

  def test_too_many_test_trajectories(self, dataset):
    with pytest.raises(ValueError, match='num=65'):
      dataset.test_trajectories(_NUM_TEST + 1)

  def test_half_integer_times_are_not_grid_cells(self, dataset):
    with pytest.raises(ValueError, match='times='):
      smallnorb.grid_cells(dataset.test_params, np.asarray([0.5]))
