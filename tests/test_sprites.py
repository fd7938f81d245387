"""Tests of uncertainty_jax.data.sprites (chapter 5's procedural Sprites).

Expected values come from numpy: the split rule recomputed from its definition, images shifted
with `np.roll` and mirrored with `np.flip`, the background colour, and renders of the poses and
identities the dataset reports.
"""

import itertools

import jax
import ml_collections
import numpy as np
import pytest

from uncertainty_jax.data import identity
from uncertainty_jax.data import sprites

_SIZE = 32
# Every direct render in this module has this many rows, so it compiles once per size.
_ROWS = 64
_BATCH = 4
_NUM_EVAL = 16
_BACKGROUND = 2 * np.asarray(sprites.BACKGROUND, np.float32) - 1
# A training identity: tan male, bald, leather, bare arms, trousers, no weapon.
_BASE = np.array([1, 0, 0, 1, 0, 1, 0], np.int32)


def _render(identities, poses, size=_SIZE):
  """`sprites.render` padded to `_ROWS` rows; returns numpy `[n, S, S, 3]`."""
  identities, poses = np.asarray(identities, np.int32), np.asarray(poses, np.float32)
  count = len(identities)
  assert count <= _ROWS
  pad = _ROWS - count
  images = sprites.render(np.concatenate([identities, np.repeat(identities[:1], pad, 0)]),
                          np.concatenate([poses, np.repeat(poses[:1], pad, 0)]), size=size)
  return np.asarray(images)[:count]


def _pose(x=0.5, y=0.82, facing=0.0, phase=0.0, attack=0.0):
  return np.array([x, y, facing, phase, attack], np.float32)


def _mask(images):
  """`[n, S, S]` pixels that show the character: anything but the plain background."""
  return np.any(np.abs(images - _BACKGROUND) > 1e-4, axis=-1)


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


class TestIdentities:

  def test_split_follows_the_rule_and_partitions_every_combination(self):
    everything = np.array(list(itertools.product(*(range(n) for n in sprites.IDENTITY_SIZES))))
    is_test = (everything @ np.array(sprites.SPLIT_WEIGHTS)) % sprites.SPLIT_MODULUS == 0
    train, test = sprites.train_identities(), sprites.test_identities()
    assert train.dtype == np.int32 and test.dtype == np.int32
    np.testing.assert_array_equal(np.sort(sprites.identity_index(train)),
                                  np.sort(sprites.identity_index(everything[~is_test])))
    np.testing.assert_array_equal(np.sort(sprites.identity_index(test)),
                                  np.sort(sprites.identity_index(everything[is_test])))
    assert not set(sprites.identity_index(train)) & set(sprites.identity_index(test))
    assert len(train) + len(test) == sprites.NUM_IDENTITIES == len(everything)
    assert 0.1 < len(test) / len(everything) < 0.2

  def test_every_value_is_seen_in_training_and_test_neighbours_are_training(self):
    train, test = sprites.train_identities(), sprites.test_identities()
    for a, size in enumerate(sprites.IDENTITY_SIZES):
      assert set(train[:, a]) == set(range(size)), sprites.IDENTITY_NAMES[a]
    train_set = set(sprites.identity_index(train).tolist())
    for row in test[::50]:
      for a, size in enumerate(sprites.IDENTITY_SIZES):
        for value in set(range(size)) - {row[a]}:
          neighbour = row.copy()
          neighbour[a] = value
          assert int(sprites.identity_index(neighbour)) in train_set

  def test_identity_arrays_are_read_only(self):
    with pytest.raises(ValueError):
      sprites.train_identities()[0, 0] = 1


class TestRender:

  def test_shape_range_and_frame_margin(self):
    """Poses at the corners of `POSE_RANGES` keep even the largest figures off the border."""
    poses = np.array(list(itertools.product(
        sprites.POSE_RANGES[0], sprites.POSE_RANGES[1], (0.0, 1.0), (0.0, 0.3125),
        (0.0, 0.2, 0.7, 1.0))), np.float32)
    identities = np.tile([3, 1, 4, 3, 3, 3, 0], (len(poses), 1))
    # Weapons and hair styles cycle over the corner poses.
    identities[:, 6] = np.arange(len(poses)) % 5
    identities[:, 2] = np.arange(len(poses)) // 5 % 5
    for start in range(0, len(poses), _ROWS):
      images = _render(identities[start:start + _ROWS], poses[start:start + _ROWS], size=16)
      assert images.shape[1:] == (16, 16, 3) and images.dtype == np.float32
      assert images.min() >= -1 and images.max() <= 1
      border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
      np.testing.assert_allclose(border, np.broadcast_to(_BACKGROUND, border.shape), atol=1e-6)
      assert _mask(images).sum(axis=(1, 2)).min() > 20

  def test_each_attribute_value_changes_the_image_where_it_should(self):
    changes = [(a, v) for a, size in enumerate(sprites.IDENTITY_SIZES) for v in range(size)
               if v != _BASE[a]]
    identities = np.tile(_BASE, (len(changes) + 1, 1))
    for row, (a, v) in enumerate(changes, start=1):
      identities[row, a] = v
    pose = _pose(phase=0.1, attack=0.3)
    images = _render(identities, np.tile(pose, (len(identities), 1)))
    base = images[0]
    rows = np.nonzero(_mask(base[None])[0].any(axis=1))[0]
    top, height = rows.min(), rows.max() + 1 - rows.min()
    hand = sprites.hand_position(pose[None], size=_SIZE)[0]
    grid_rows, grid_cols = np.mgrid[:_SIZE, :_SIZE] + 0.5
    # Rows of the figure, as fractions of its height from the top of the head, where a change of
    # the attribute may show.
    bands = {'hair': (0.0, 0.45), 'armour': (0.15, 0.85), 'gender': (0.15, 0.9),
             'arm': (0.15, 0.8), 'greaves': (0.45, 1.0)}
    for (a, v), image in zip(changes, images[1:]):
      name = sprites.IDENTITY_NAMES[a]
      changed = np.abs(image - base).max(axis=-1) > 1e-3
      assert changed.sum() >= 3 and np.abs(image - base).max() > 0.2, (name, v)
      if name in bands:
        low, high = bands[name]
        changed_rows = np.nonzero(changed.any(axis=1))[0]
        assert changed_rows.min() >= top + low * height - 1, (name, v)
        assert changed_rows.max() <= top + high * height, (name, v)
      if name == 'weapon':
        distance = np.hypot(grid_cols - hand[0], grid_rows - hand[1])
        assert distance[changed].max() <= sprites.WEAPON_REACH * _SIZE + 1.5, v

  def test_hand_position_is_on_the_hand(self):
    poses = np.array([_pose(attack=a, phase=p, facing=f) for a, p, f in
                      [(0.0, 0.0, 0.0), (0.5, 0.3, 1.0), (1.0, 0.7, 0.0)]])
    identities = np.tile(_BASE, (len(poses), 1))
    images = _render(identities, poses, size=64)
    skin = 2 * sprites._SKIN[_BASE[0]] - 1
    hands = sprites.hand_position(poses, size=64)
    for image, (column, row) in zip(images, hands):
      np.testing.assert_allclose(image[int(row), int(column)], skin, atol=1e-5)
    # Raising the weapon arm lifts the hand.
    assert hands[0, 1] > hands[1, 1] > hands[2, 1]

  def test_position_shifts_are_rolls(self):
    base_pose = _pose(x=0.5, y=0.82, phase=0.4, attack=0.5)
    poses = [base_pose]
    for dx, dy in ((3, 0), (-4, 0), (0, 2), (0, -2)):
      poses.append(base_pose + np.array([dx / _SIZE, dy / _SIZE, 0, 0, 0], np.float32))
    identities = np.tile([2, 1, 2, 3, 1, 2, 1], (len(poses), 1))
    images = _render(identities, np.array(poses))
    for (dx, dy), image in zip(((3, 0), (-4, 0), (0, 2), (0, -2)), images[1:]):
      expected = np.roll(images[0], (dy, dx), axis=(0, 1))
      np.testing.assert_allclose(image, expected, atol=2e-3)

  def test_facing_mirrors_about_the_axis(self):
    poses = []
    for shift in (0, 2):
      for facing in (0.0, 1.0):
        poses.append(_pose(x=0.5 + shift / _SIZE, facing=facing, phase=0.2, attack=0.8))
    identities = np.tile([0, 1, 3, 2, 2, 0, 3], (len(poses), 1))
    images = _render(identities, np.array(poses))
    np.testing.assert_allclose(images[1], np.flip(images[0], axis=1), atol=2e-3)
    # About column 16 + 2: the flip about the image centre, moved by twice the shift.
    np.testing.assert_allclose(images[3], np.roll(np.flip(images[2], axis=1), 4, axis=1),
                               atol=2e-3)
    assert np.abs(images[1] - images[0]).max() > 0.5

  def test_walk_phase_is_periodic_and_moves_the_legs(self):
    identities = np.tile(_BASE, (3, 1))
    images = _render(identities, np.array([_pose(phase=0.2), _pose(phase=1.2), _pose(phase=0.7)]))
    np.testing.assert_allclose(images[0], images[1], atol=2e-3)
    changed = np.abs(images[2] - images[0]).max(axis=-1) > 1e-3
    rows = np.nonzero(_mask(images[:1])[0].any(axis=1))[0]
    lower = rows.min() + (rows.max() - rows.min()) // 2
    assert changed[lower:].sum() > 10

  def test_size_64_draws_the_same_figure(self):
    identities = np.tile([3, 0, 1, 2, 3, 3, 2], (2, 1))
    poses = np.array([_pose(x=0.4, phase=0.6, attack=0.4), _pose(x=0.6, facing=1.0)])
    small, large = _render(identities, poses), _render(identities, poses, size=64)
    assert large.shape == (2, 64, 64, 3)
    pooled = large.reshape(2, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 0.05
    overlap = (_mask(pooled) & _mask(small)).sum() / (_mask(pooled) | _mask(small)).sum()
    assert overlap > 0.8

  def test_jit_with_traced_inputs(self):
    identities = np.tile(_BASE, (_ROWS, 1))
    poses = np.tile(_pose(), (_ROWS, 1))
    traced = jax.jit(lambda i, p: sprites.render(i, p, size=_SIZE))(identities, poses)
    np.testing.assert_allclose(np.asarray(traced), _render(identities, poses), atol=1e-5)


@pytest.fixture(scope='module')
def dataset():
  return sprites.Sprites(3, _BATCH, _sharding(), num_eval_images=_NUM_EVAL)


@pytest.fixture(scope='module')
def batch(dataset):
  return dataset.train_batch(5)


class TestSprites:

  def test_attributes(self, dataset):
    assert isinstance(dataset, identity.IdentityDataset)
    assert dataset.name == 'sprites' and dataset.renders
    assert dataset.sample_shape == (_SIZE, _SIZE, 3)
    assert dataset.factor_names == sprites.IDENTITY_NAMES + sprites.POSE_NAMES
    assert dataset.factor_discrete == (True,) * 7 + (False, False, True, False, False)
    assert dataset.probe_names == sprites.IDENTITY_NAMES
    assert dataset.pose_names == sprites.POSE_NAMES
    assert dataset.factor_index('facing') == 9

  def test_train_batch_shapes_and_sharding(self, dataset, batch):
    assert set(batch) == {'y1', 'y1_same', 'y2', 'id1', 'id2'}
    for name in ('y1', 'y1_same', 'y2'):
      assert batch[name].shape == (_BATCH, _SIZE, _SIZE, 3)
      assert batch[name].dtype == np.float32
      assert batch[name].sharding.is_equivalent_to(dataset.sharding, 4)
      values = np.asarray(batch[name])
      assert values.min() >= -1 and values.max() <= 1
    for name in ('id1', 'id2'):
      assert batch[name].shape == (_BATCH, 7) and batch[name].dtype == np.int32

  def test_train_batch_renders_its_identities_and_poses(self, dataset, batch):
    rows = dataset.train_rows(5)
    np.testing.assert_array_equal(np.asarray(batch['id1']), rows['id1'])
    np.testing.assert_array_equal(np.asarray(batch['id2']), rows['id2'])
    assert np.all(np.any(rows['id1'] != rows['id2'], axis=1))
    train = set(sprites.identity_index(sprites.train_identities()).tolist())
    for ids in (rows['id1'], rows['id2']):
      assert set(sprites.identity_index(ids).tolist()) <= train
    for name, ids, k in (('y1', rows['id1'], 0), ('y1_same', rows['id1'], 1),
                         ('y2', rows['id2'], 2)):
      np.testing.assert_allclose(np.asarray(batch[name]), dataset.render(ids, rows['poses'][:, k]),
                                 atol=1e-5)
    assert np.all(np.abs(np.asarray(batch['y1']) - np.asarray(batch['y1_same'])).max(
        axis=(1, 2, 3)) > 0)

  def test_train_batch_is_a_function_of_seed_and_step(self, dataset, batch):
    again = sprites.Sprites(3, _BATCH, _sharding(), num_eval_images=_NUM_EVAL)
    other_step = dataset.train_batch(6)
    same = again.train_batch(5)
    for name in batch:
      np.testing.assert_array_equal(np.asarray(same[name]), np.asarray(batch[name]))
    assert np.abs(np.asarray(other_step['y1']) - np.asarray(batch['y1'])).max() > 0.1
    np.testing.assert_array_equal(np.asarray(dataset.train_batch(5)['y2']),
                                  np.asarray(batch['y2']))
    other_seed = sprites.Sprites(4, _BATCH, _sharding()).train_rows(5)
    assert np.any(other_seed['poses'] != dataset.train_rows(5)['poses'])
    # Rows do not depend on the batch size they are requested with.
    larger = sprites.Sprites(3, 2 * _BATCH, _sharding()).train_rows(5)
    smaller = dataset.train_rows(5)
    for name in smaller:
      np.testing.assert_array_equal(larger[name][:_BATCH], smaller[name])

  def test_pose_draws_cover_the_declared_ranges(self):
    poses = np.asarray(sprites.sample_poses(jax.random.key(1), 2000))
    for column, (low, high) in enumerate(sprites.POSE_RANGES):
      if sprites.POSE_NAMES[column] == 'facing':
        assert set(np.unique(poses[:, column])) == {0.0, 1.0}
        continue
      assert poses[:, column].min() >= low and poses[:, column].max() <= high
      assert poses[:, column].min() < low + 0.05 * (high - low)
      assert poses[:, column].max() > high - 0.05 * (high - low)

  @pytest.mark.parametrize('split', ['train', 'test'])
  def test_arrays(self, dataset, split):
    arrays = dataset.arrays(split)
    assert set(arrays) == {'images', 'identity', 'factors', 'pose'}
    assert arrays['images'].shape == (_NUM_EVAL, _SIZE, _SIZE, 3)
    assert arrays['images'].dtype == np.float32
    assert arrays['images'].min() >= -1 and arrays['images'].max() <= 1
    assert arrays['identity'].shape == (_NUM_EVAL, 7) and arrays['identity'].dtype == np.int32
    assert arrays['pose'].shape == (_NUM_EVAL, len(sprites.POSE_NAMES))
    np.testing.assert_array_equal(
        arrays['factors'], np.concatenate([arrays['identity'], arrays['pose']], axis=1))
    table = sprites.train_identities() if split == 'train' else sprites.test_identities()
    assert set(sprites.identity_index(arrays['identity']).tolist()) <= set(
        sprites.identity_index(table).tolist())
    for value in arrays.values():
      with pytest.raises(ValueError):
        value[0] = 0
    assert dataset.arrays(split) is arrays
    # The swap ground truth: rendering an example's identity and pose gives its image.
    np.testing.assert_allclose(dataset.render(arrays['identity'], arrays['pose']),
                               arrays['images'], atol=1e-5)

  def test_arrays_are_fixed_and_differ_between_splits(self, dataset):
    again = sprites.Sprites(3, _BATCH, _sharding(), num_eval_images=_NUM_EVAL)
    np.testing.assert_array_equal(again.arrays('test')['pose'], dataset.arrays('test')['pose'])
    assert np.any(dataset.arrays('train')['pose'] != dataset.arrays('test')['pose'])
    rows = dataset.train_rows(0)
    continuous = [sprites.POSE_NAMES.index(n) for n in ('x_position', 'walk_phase', 'attack')]
    assert not np.any(np.isin(dataset.arrays('train')['pose'][:, continuous],
                              rows['poses'][..., continuous]))

  def test_from_config(self):
    config = ml_collections.ConfigDict(dict(seed=3, batch_size=_BATCH, image_size=_SIZE))
    built = sprites.Sprites.from_config(config, _sharding())
    assert built.num_eval_images == 1024 and built.batch_size == _BATCH
    config.num_eval_images = 8
    assert sprites.Sprites.from_config(config, _sharding()).num_eval_images == 8


class TestBadInput:

  @pytest.mark.parametrize('kwargs, message', [
      (dict(seed=1.5), r'seed=1.5: expected an integer'),
      (dict(seed=True), r'seed=True: expected an integer'),
      (dict(batch_size=0), r'batch_size=0: expected a positive integer'),
      (dict(image_size=12), r'image_size=12: expected an integer >= 16'),
      (dict(image_size=32.0), r'image_size=32.0: expected an integer >= 16'),
      (dict(num_eval_images=-1), r'num_eval_images=-1: expected a positive integer'),
      (dict(sharding=None), r'sharding=None: expected a jax.sharding.Sharding'),
  ])
  def test_constructor(self, kwargs, message):
    args = dict(seed=0, batch_size=_BATCH, sharding=_sharding())
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
      sprites.Sprites(args.pop('seed'), args.pop('batch_size'), args.pop('sharding'), **args)

  @pytest.mark.parametrize('call, message', [
      (lambda d: d.train_batch(-1), r'step=-1: expected an integer'),
      (lambda d: d.train_batch(1.0), r'step=1.0: expected an integer'),
      (lambda d: d.arrays('valid'), r"split='valid': expected one of"),
      (lambda d: d.render(np.zeros((2, 6), np.int32), np.zeros((2, 5))),
       r'identity: shape \(2, 6\): expected \[N, 7\]'),
      (lambda d: d.render(np.zeros((2, 7), np.int32), np.zeros((3, 5))),
       r'pose: shape \(3, 5\): expected \[N, 5\]'),
      (lambda d: d.render(np.array([[0, 2, 0, 0, 0, 0, 0]]), np.zeros((1, 5))),
       r"identity\[0, 1\]=2: expected an integer in \[0, 2\) for 'gender'"),
      (lambda d: d.render(np.zeros((1, 7), np.float32), np.zeros((1, 5))),
       r'identity: dtype float32: expected integers'),
      (lambda d: d.render(np.zeros((1, 7), np.int32), np.full((1, 5), np.nan)),
       r'pose: expected finite values'),
      (lambda d: sprites.render(np.zeros((1, 7), np.int32), np.zeros((1, 5)), size=8),
       r'size=8: expected an integer >= 16'),
  ])
  def test_calls(self, dataset, call, message):
    with pytest.raises(ValueError, match=message):
      call(dataset)
