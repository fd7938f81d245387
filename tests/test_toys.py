"""Tests of uncertainty_jax.data.toys (the NORB-like renderer) and data.rotations (chapter 3's
rotation triplets).

Expected values come from numpy: object masks are the pixels that differ from `BACKGROUND`, and
reference frames are rendered directly from the poses `start + (t - 1) * velocity`.
"""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from uncertainty_jax.data import rotations
from uncertainty_jax.data import toys

_SIZE = 32
# Every renderer call in this module has this batch size, so it compiles once.
_BATCH = 10
_DATASET_BATCH = 16
_NUM_TEST = 24


def _render(categories, instances, azimuths, elevations, lights, color=False):
  """`render_batch` padded to `_BATCH` rows; returns numpy `[n, S, S, C]`."""
  rows = [np.broadcast_to(np.asarray(v), (len(categories),)) for v in
          (categories, instances, azimuths, elevations, lights)]
  count = len(categories)
  padded = [np.concatenate([r, np.repeat(r[:1], _BATCH - count)]) for r in rows]
  return np.asarray(toys.render_batch(*padded, size=_SIZE, color=color))[:count]


def _mask(images):
  """`[n, S, S]` pixels showing the toy: anything but the plain background."""
  return np.any(images != np.float32(toys.BACKGROUND), axis=-1)


def _distances(images, reference):
  return np.sqrt(np.sum(np.square(images - reference), axis=(1, 2, 3)))


@pytest.fixture(scope='module')
def gallery():
  """Instances 0 and 7 of every category at one pose: `[10, S, S, 1]`, rows (category, instance)."""
  categories = np.repeat(np.arange(toys.NUM_CATEGORIES), 2)
  instances = np.tile([0, 7], toys.NUM_CATEGORIES)
  return categories, instances, _render(categories, instances, 30.0, 45.0, 0)


class TestInstanceParams:

  def test_pure_function_of_category_and_instance(self):
    first = {k: v.copy() for k, v in toys.instance_params(2, 3).items()}
    toys._instance_params.cache_clear()
    again = toys.instance_params(2, 3)
    for name in first:
      np.testing.assert_array_equal(again[name], first[name])
      assert not again[name].flags.writeable

  def test_instances_and_categories_differ(self):
    centers = [toys.instance_params(c, i)['center'] for c in range(5) for i in (0, 1)]
    for a in range(len(centers)):
      for b in range(a + 1, len(centers)):
        assert not np.allclose(centers[a], centers[b]), (a, b)

  def test_every_toy_fits_the_bounding_sphere(self):
    table = toys.all_instance_params()
    assert table['center'].shape == (toys.NUM_CATEGORIES, toys.NUM_INSTANCES, toys.NUM_PARTS, 3)
    for c in range(toys.NUM_CATEGORIES):
      for i in range(toys.NUM_INSTANCES):
        p = toys.instance_params(c, i)
        np.testing.assert_array_equal(table['center'][c, i], p['center'])
        used = p['center'][:, 1] < 10  # parked parts sit far above the toy
        assert used.sum() >= 6
        # Part extents along the toy's axes: |rotation^T| @ (scale * (half + rounding)).
        extent = np.einsum('nji,nj->ni', np.abs(p['rotation']),
                           p['scale'] * (p['half'] + p['rounding'][:, None]))[used]
        low = np.min(p['center'][used] - extent, axis=0)
        high = np.max(p['center'][used] + extent, axis=0)
        np.testing.assert_allclose((low + high) / 2, 0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm((high - low) / 2), 0.95, rtol=1e-4)

  def test_train_and_test_instances_split_norb_style(self):
    assert set(toys.TRAIN_INSTANCES) == {0, 1, 2, 3, 4}
    assert set(toys.TEST_INSTANCES) == {5, 6, 7, 8, 9}

  @pytest.mark.parametrize('category,instance,field', [
      (5, 0, 'category'), (-1, 0, 'category'), (True, 0, 'category'), (1.0, 0, 'category'),
      (0, -1, 'instance'), (0, 2.5, 'instance')])
  def test_bad_arguments(self, category, instance, field):
    with pytest.raises(ValueError, match=field):
      toys.instance_params(category, instance)


class TestRender:

  def test_deterministic_range_and_dtype(self, gallery):
    categories, instances, images = gallery
    again = _render(categories, instances, 30.0, 45.0, 0)
    np.testing.assert_array_equal(again, images)
    assert images.dtype == np.float32 and images.shape == (10, _SIZE, _SIZE, 1)
    assert images.min() >= -1 and images.max() <= 1

  def test_render_matches_render_batch(self, gallery):
    categories, instances, images = gallery
    render = jax.jit(functools.partial(toys.render, size=_SIZE))
    single = render(toys.instance_params(int(categories[3]), int(instances[3])), 30.0, 45.0, 0)
    np.testing.assert_allclose(np.asarray(single), images[3], atol=1e-5)

  def test_every_toy_is_visible_and_inside_the_frame(self, gallery):
    _, _, images = gallery
    coords = (np.arange(_SIZE) + 0.5) / _SIZE * 2 - 1
    radius = np.hypot(*np.meshgrid(coords, coords))
    for mask in _mask(images):
      # The toy lies within the view's unit disc (plus the anti-aliasing ramp).
      assert not mask[radius > 1.1].any()
      rows, cols = np.nonzero(mask)
      assert mask.mean() > 0.04
      assert max(np.ptp(rows), np.ptp(cols)) + 1 >= 0.4 * _SIZE

  def test_categories_and_instances_differ(self, gallery):
    _, _, images = gallery
    for a in range(len(images)):
      for b in range(a + 1, len(images)):
        assert np.mean(np.abs(images[a] - images[b])) > 0.02, (a, b)

  def test_full_turn_gives_the_same_image(self):
    images = _render(np.full(5, 3), np.full(5, 1), [0.0, 360.0, -360.0, 720.0, 1e-3 + 180], 50.0,
                     2)
    for k in (1, 2, 3):
      np.testing.assert_array_equal(images[k], images[0])
    assert not np.array_equal(images[4], images[0])

  @pytest.mark.parametrize('axis', ['azimuth', 'elevation'])
  def test_small_rotations_change_the_image_smoothly(self, axis):
    deltas = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    for category in range(toys.NUM_CATEGORIES):
      azimuths = 40.0 + 70 * category + (deltas if axis == 'azimuth' else 0)
      elevations = 40.0 + (deltas if axis == 'elevation' else 0)
      images = _render(np.full(6, category), np.full(6, 2), azimuths, elevations, 1)
      distance = _distances(images[1:], images[0])
      assert np.all(np.diff(distance) > 0), (category, distance)
      # Half a degree changes the image much less than 8 degrees do (16 times less if linear):
      # edges move by fractions of a pixel, not by whole-pixel jumps.
      assert distance[0] < 0.2 * distance[-1], (category, distance)

  def test_silhouettes_change_with_azimuth_and_elevation(self):
    categories = np.arange(toys.NUM_CATEGORIES)
    # A generic view: from the side, a box's height and width can trade places as it tilts.
    base = _mask(_render(categories, 4, 45.0, 30.0, 0))
    turned = _mask(_render(categories, 4, 135.0, 30.0, 0))
    raised = _mask(_render(categories, 4, 45.0, 70.0, 0))
    for k in categories:
      for other in (turned[k], raised[k]):
        iou = np.sum(base[k] & other) / np.sum(base[k] | other)
        assert iou < 0.8, (k, iou)

  def test_light_changes_shading_not_silhouette(self):
    for category in range(toys.NUM_CATEGORIES):
      images = _render(np.full(6, category), np.full(6, 6), 100.0, 35.0, np.arange(6))
      masks = _mask(images)
      for light in range(1, 6):
        np.testing.assert_array_equal(masks[light], masks[0])
      for a in range(6):
        for b in range(a + 1, 6):
          assert np.abs(images[a] - images[b]).max() > 0.05, (category, a, b)
      # Gray toys are brighter than the background everywhere they show.
      assert np.all(images[masks] > toys.BACKGROUND)

  def test_color_mode(self, gallery):
    categories, instances, gray = gallery
    color = _render(categories, instances, 30.0, 45.0, 0, color=True)
    assert color.shape == (10, _SIZE, _SIZE, 3) and color.dtype == np.float32
    assert color.min() >= -1 and color.max() <= 1
    np.testing.assert_array_equal(_mask(color), _mask(gray))
    spread = np.ptp(color, axis=-1)
    assert np.all(spread.reshape(len(color), -1).max(axis=1) > 0.2)

  @pytest.mark.parametrize('kwargs,field', [
      (dict(size=0), 'size'), (dict(size=4.0), 'size'), (dict(color='yes'), 'color'),
      (dict(supersample=0), 'supersample')])
  def test_bad_render_arguments(self, kwargs, field):
    with pytest.raises(ValueError, match=field):
      toys.render(toys.instance_params(0, 0), 0.0, 30.0, 0, **kwargs)

  @pytest.mark.parametrize('light', [6, -1, 1.5])
  def test_bad_light(self, light):
    with pytest.raises(ValueError, match='light'):
      toys.render(toys.instance_params(0, 0), 0.0, 30.0, light)

  def test_supersampling_averages_the_finer_grid(self, gallery):
    categories, instances, fine = gallery
    coarse = np.asarray(toys.render_batch(categories, instances, 30.0, 45.0, 0,
                                          size=_SIZE // 2, supersample=2))
    pooled = fine.reshape(10, _SIZE // 2, 2, _SIZE // 2, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(coarse, pooled, atol=1e-5)

  @pytest.mark.parametrize('field,value', [
      ('categories', [5]), ('instances', [10]), ('lights', [6]), ('lights', [0.5]),
      ('categories', [[0]])])
  def test_bad_batch_arguments(self, field, value):
    args = dict(categories=[0], instances=[0], azimuths=[0.0], elevations=[30.0], lights=[0])
    args[field] = value
    with pytest.raises(ValueError, match=field):
      toys.render_batch(**args)

  def test_batch_needs_one_batch_size(self):
    with pytest.raises(ValueError, match='one B'):
      toys.render_batch([0, 1], [0, 0], [0.0], [30.0, 30.0], [0, 0])
    with pytest.raises(ValueError, match='one B'):
      toys.render_batch(0, 0, 0.0, 30.0, 0)


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


@pytest.fixture(scope='module')
def skip_dataset():
  return rotations.RotationTriplets(3, _DATASET_BATCH, _sharding(), skip=True, num_test=_NUM_TEST)


@pytest.fixture(scope='module')
def plain_dataset():
  return rotations.RotationTriplets(3, _DATASET_BATCH, _sharding(), num_test=_NUM_TEST)


@pytest.fixture(scope='module')
def skip_batch(skip_dataset):
  return skip_dataset.train_batch(5)


def _poses_at(params, rows, times):
  """Azimuths and elevations of `rows` at `times [len(rows)]`, from numpy."""
  t = np.asarray(times, np.float64)
  return (params['azimuth'][rows] + (t - 1) * params['azimuth_velocity'][rows],
          params['elevation'][rows] + (t - 1) * params['elevation_velocity'][rows])


class TestRotationTriplets:

  def test_train_batch_shapes_range_and_sharding(self, skip_dataset, skip_batch):
    frames, skip = skip_batch['frames'], skip_batch['skip']
    assert frames.shape == (_DATASET_BATCH, 3, _SIZE, _SIZE, 1) and frames.dtype == np.float32
    assert skip.shape == (_DATASET_BATCH,) and skip.dtype == np.int32
    assert frames.sharding == skip_dataset.sharding
    frames = np.asarray(frames)
    assert frames.min() >= -1 and frames.max() <= 1
    assert skip_dataset.clip_length == 3 and skip_dataset.test_clip_length == 3

  def test_train_batch_is_a_function_of_the_step(self, skip_dataset, skip_batch):
    again = skip_dataset.train_batch(5)
    np.testing.assert_array_equal(np.asarray(again['frames']), np.asarray(skip_batch['frames']))
    np.testing.assert_array_equal(np.asarray(again['skip']), np.asarray(skip_batch['skip']))
    other = np.asarray(skip_dataset.train_batch(6)['frames'])
    assert np.abs(other - np.asarray(skip_batch['frames'])).mean() > 0.05
    np.testing.assert_array_equal(skip_dataset.train_params(5)['skip'],
                                  np.asarray(skip_batch['skip']))

  def test_frames_are_renders_of_the_trajectory(self, skip_dataset, skip_batch):
    params = skip_dataset.train_params(5)
    skip = params['skip']
    assert 0 < skip.sum() < len(skip)
    frames = np.asarray(skip_batch['frames'])
    rows = np.arange(_BATCH)
    # Frame 3 at t = 3 + s: t = 4 where s = 1.
    for frame, times in ((0, np.ones(_BATCH)), (2, 3 + skip[:_BATCH])):
      azimuth, elevation = _poses_at(params, rows, times)
      expected = _render(params['category'][rows], params['instance'][rows], azimuth, elevation,
                         params['light'][rows])
      np.testing.assert_allclose(frames[rows, frame], expected, atol=1e-5)
    # With s = 1 the third frame is not the one at t = 3.
    row = int(np.argmax(skip))
    azimuth, elevation = _poses_at(params, [row], [3.0])
    at_three = _render(params['category'][[row]], params['instance'][[row]], azimuth, elevation,
                       params['light'][[row]])
    assert np.abs(at_three[0] - frames[row, 2]).max() > 0.1

  def test_trajectories_stay_in_range_with_allowed_velocities(self, skip_dataset):
    params = skip_dataset.train_params(0)
    assert set(np.abs(params['azimuth_velocity'])) == {20.0}
    assert set(params['elevation_velocity']) <= {-5.0, 0.0, 5.0}
    assert np.all((params['azimuth'] >= 0) & (params['azimuth'] < 360))
    for t in (0.0, 4.0):
      _, elevation = _poses_at(params, slice(None), np.full(_DATASET_BATCH, t))
      assert np.all((elevation >= 30 - 1e-4) & (elevation <= 70 + 1e-4))

  def test_training_and_test_instances_are_disjoint(self, skip_dataset):
    train = np.concatenate([skip_dataset.train_params(s)['instance'] for s in range(8)])
    assert set(train) == set(toys.TRAIN_INSTANCES)
    test = skip_dataset.test_params['instance']
    assert set(test) <= set(toys.TEST_INSTANCES) and len(set(test)) >= 3
    categories = np.concatenate([skip_dataset.train_params(s)['category'] for s in range(8)])
    assert set(categories) == set(range(toys.NUM_CATEGORIES))

  def test_skip_rate_is_one_half(self, skip_dataset, plain_dataset):
    steps = range(64)
    skip = np.concatenate([skip_dataset.train_params(s)['skip'] for s in steps])
    # Binomial(n, 1/2): four standard deviations.
    assert abs(skip.mean() - 0.5) < 4 * np.sqrt(0.25 / len(skip))
    assert set(skip) == {0, 1}
    assert not np.concatenate([plain_dataset.train_params(s)['skip'] for s in range(4)]).any()
    assert not plain_dataset.test_params['skip'].any()

  def test_test_set_is_fixed(self, skip_dataset):
    first = list(skip_dataset.test_batches(10))
    assert [b['frames'].shape[0] for b in first] == [10, 10, 4]
    assert first[0]['frames'].shape[1:] == (3, _SIZE, _SIZE, 1)
    again = list(skip_dataset.test_batches(_NUM_TEST))
    np.testing.assert_array_equal(np.concatenate([b['frames'] for b in first]),
                                  again[0]['frames'])
    np.testing.assert_array_equal(np.concatenate([b['skip'] for b in first]),
                                  skip_dataset.test_params['skip'])

  def test_trajectories_hold_the_triplets(self, plain_dataset):
    triplets = next(plain_dataset.test_batches(_NUM_TEST))['frames']
    trajectories = plain_dataset.test_trajectories(4)
    assert trajectories.shape == (4, 7, _SIZE, _SIZE, 1)
    np.testing.assert_allclose(trajectories[:, 2::2], triplets[:4], atol=1e-6)
    # t = 0 and the half steps are new poses, between and before the triplet's.
    for k in (0, 1, 3, 5):
      assert np.abs(trajectories[:, k] - trajectories[:, k + 1]).max() > 0.05

  def test_from_config(self):
    config = ml_collections.ConfigDict(dict(seed=1, batch_size=4, image_size=16, skip=True,
                                            num_test_clips=8, elevation_range=(20.0, 80.0)))
    dataset = rotations.RotationTriplets.from_config(config, _sharding())
    assert (dataset.batch_size, dataset.image_size, dataset.skip, dataset.num_test) == (
        4, 16, True, 8)
    assert dataset.elevation_steps == (-5.0, 0.0, 5.0) and dataset.azimuth_step == 20.0
    assert dataset.elevation_range == (20.0, 80.0) and dataset.supersample == 1

  @pytest.mark.parametrize('field,value', [
      ('seed', 'a'), ('batch_size', 0), ('image_size', -2), ('skip', 1),
      ('azimuth_step', -1.0), ('azimuth_step', float('nan')), ('elevation_steps', ()),
      ('elevation_steps', 'abc'), ('elevation_range', (70.0, 30.0)),
      ('elevation_range', (30.0, 40.0)), ('num_test', 0), ('supersample', 0),
      ('sharding', None)])
  def test_bad_arguments(self, field, value):
    args = dict(seed=0, batch_size=4, sharding=_sharding())
    args[field] = value
    with pytest.raises(ValueError, match=field):
      rotations.RotationTriplets(**args)

  def test_bad_call_arguments(self, plain_dataset):
    with pytest.raises(ValueError, match='step'):
      plain_dataset.train_batch(-1)
    with pytest.raises(ValueError, match='batch_size'):
      next(plain_dataset.test_batches(0))
    for num in (0, _NUM_TEST + 1):
      with pytest.raises(ValueError, match='num'):
        plain_dataset.test_trajectories(num)
