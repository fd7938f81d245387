"""Tests of uncertainty_jax.data.rigid_triplets: the rigid-motion renderer and the dataset."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from skimage import transform as sktransform

from uncertainty_jax.data import moving_photos as mp
from uncertainty_jax.data import rigid_triplets as rt

_SIZE = 32
_TOP, _LEFT, _PHOTO = 40, 50, 1


@pytest.fixture(scope='module')
def photos():
  return mp.load_photos()


@pytest.fixture(scope='module')
def render(photos):
  """Renders photo `_PHOTO` from `(_TOP, _LEFT)` under `(dy, dx, log_scale, angle)` at `taus`."""
  jitted = jax.jit(functools.partial(rt.render_frames, image_size=_SIZE))

  def call(dy=0.0, dx=0.0, log_scale=0.0, angle=0.0, taus=(1.0,), top=_TOP, left=_LEFT):
    transform = rt.RigidTransform(*(np.float32(v) for v in (dy, dx, log_scale, angle)))
    return np.asarray(jitted(photos[_PHOTO], top, left, transform, np.asarray(taus, np.float32)))

  return call


def _crop(photos, top=_TOP, left=_LEFT, photo=_PHOTO):
  return photos[photo, top:top + _SIZE, left:left + _SIZE]


def _best_shift(before, after, radius=4):
  """The integer `(dy, dx)` with `after[i, j] ~ before[i - dy, j - dx]` on the overlap."""
  errors = {}
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      shifted = np.roll(before, (dy, dx), axis=(0, 1))
      inner = (slice(radius, -radius), slice(radius, -radius))
      errors[(dy, dx)] = np.mean(np.square(shifted[inner] - after[inner]))
  return min(errors, key=errors.get)


class TestRenderFrames:

  def test_integer_translation_is_shifted_crop(self, render, photos):
    frame = render(dy=3.0, dx=-2.0)[0]
    # Content moves down 3 and left 2: frame[i, j] = photo[top + i - 3, left + j + 2].
    np.testing.assert_array_equal(frame, _crop(photos, _TOP - 3, _LEFT + 2))

  def test_no_rotation_unit_scale_is_identity(self, render, photos):
    frames = render(taus=(0.0, 0.5, 1.0))
    for frame in frames:
      np.testing.assert_array_equal(frame, _crop(photos))

  def test_tau_zero_is_untransformed_crop(self, render, photos):
    frame = render(dy=2.7, dx=-3.1, log_scale=0.2, angle=0.5, taus=(0.0,))[0]
    np.testing.assert_allclose(frame, _crop(photos), atol=1e-6)

  def test_counterclockwise_quarter_turn_is_rot90(self, render, photos):
    # An even crop side puts the centre between pixels, so a quarter turn maps pixels to pixels.
    frame = render(angle=math.pi / 2)[0]
    np.testing.assert_allclose(frame, np.rot90(_crop(photos)), atol=1e-5)

  @pytest.mark.parametrize('tau', [0.5, 1.0])
  def test_matches_skimage_warp(self, render, photos, tau):
    dy, dx, log_scale, angle = 1.7, -2.3, 0.15, 0.4
    frame = render(dy, dx, log_scale, angle, taus=(tau,))[0]
    half = (_SIZE - 1) / 2
    # skimage works in (x, y) = (column, row) and turns clockwise on screen for a positive
    # rotation (SimilarityTransform docs), the opposite of the renderer's counterclockwise angle.
    to_centre = sktransform.EuclideanTransform(translation=(-(_LEFT + half), -(_TOP + half)))
    motion = sktransform.SimilarityTransform(scale=math.exp(tau * log_scale),
                                             rotation=-tau * angle)
    to_frame = sktransform.EuclideanTransform(translation=(half + tau * dx, half + tau * dy))
    forward = to_centre + motion + to_frame
    expected = sktransform.warp(photos[_PHOTO].astype(np.float64), forward.inverse,
                                output_shape=(_SIZE, _SIZE), order=1)
    np.testing.assert_allclose(frame, expected, atol=1e-4)

  def test_translation_moves_by_equal_steps(self, render, photos):
    frames = render(dy=-6.0, dx=3.0, taus=rt.TRIPLET_TAUS)
    first, second = _best_shift(frames[0], frames[1]), _best_shift(frames[1], frames[2])
    assert first == second == (-2, 1)
    # Each step is an exact shift of the one before.
    np.testing.assert_allclose(frames[1][:-2, 1:], frames[0][2:, :-1], atol=1e-5)
    np.testing.assert_allclose(frames[2][:-2, 1:], frames[1][2:, :-1], atol=1e-5)
    np.testing.assert_allclose(frames[2], _crop(photos, _TOP + 6, _LEFT - 3), atol=1e-5)

  def test_rotation_turns_by_equal_steps(self, render):
    frames = render(angle=3 * math.pi / 2, taus=rt.TRIPLET_TAUS)
    np.testing.assert_allclose(frames[1], np.rot90(frames[0]), atol=1e-4)
    np.testing.assert_allclose(frames[2], np.rot90(frames[1]), atol=1e-4)


class TestSampleExamples:

  @pytest.fixture(scope='class')
  def examples(self, photos):
    sample = jax.jit(functools.partial(rt.sample_examples, num_photos=photos.shape[0],
                                       photo_size=photos.shape[1], image_size=_SIZE))
    return jax.device_get(sample(jax.random.key(3), jnp.arange(512)))

  def test_parameter_ranges(self, examples, photos):
    transform = examples['transform']
    assert set(np.unique(examples['photo'])) == set(range(photos.shape[0]))
    for name, bound in (('dy', rt.DEFAULT_MAX_TRANSLATION), ('dx', rt.DEFAULT_MAX_TRANSLATION),
                        ('log_scale', rt.DEFAULT_MAX_LOG_SCALE),
                        ('angle', rt.DEFAULT_MAX_ROTATION)):
      values = np.asarray(getattr(transform, name))
      assert np.all(np.abs(values) <= bound) and np.max(np.abs(values)) > 0.9 * bound, name

  def test_every_sampled_point_inside_photo(self, examples, photos):
    # The sampling map is affine, so its extremes over the frame are at the corner pixels.
    half = (_SIZE - 1) / 2
    corners = np.array([[-half, -half], [-half, half], [half, -half], [half, half]])
    transform = examples['transform']
    for tau in np.linspace(0.0, 1.0, 11):
      scale = np.exp(tau * transform.log_scale)[:, None]
      cos, sin = np.cos(tau * transform.angle)[:, None], np.sin(tau * transform.angle)[:, None]
      ry = corners[None, :, 0] - tau * transform.dy[:, None]
      rx = corners[None, :, 1] - tau * transform.dx[:, None]
      source_y = examples['top'][:, None] + half + (cos * ry + sin * rx) / scale
      source_x = examples['left'][:, None] + half + (cos * rx - sin * ry) / scale
      for source in (source_y, source_x):
        assert source.min() >= 0 and source.max() <= photos.shape[1] - 1

  def test_rows_depend_only_on_index(self, examples, photos):
    one = rt.sample_examples(jax.random.key(3), jnp.array([17]), num_photos=photos.shape[0],
                             photo_size=photos.shape[1], image_size=_SIZE)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], one),
                                jax.tree.map(lambda x: x[17], examples))

  def test_required_photo_size(self):
    size = rt.required_photo_size(_SIZE)
    assert size <= mp.PHOTO_SIZE  # The default ranges fit the default photos.
    kwargs = dict(key=jax.random.key(0), indices=jnp.arange(2), num_photos=2, image_size=_SIZE)
    rt.sample_examples(photo_size=size, **kwargs)
    with pytest.raises(ValueError, match=f'^photo_size={size - 1}:'):
      rt.sample_examples(photo_size=size - 1, **kwargs)


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


_NUM_TEST = 6


@pytest.fixture(scope='module')
def dataset():
  return rt.RigidTriplets(0, 4, _sharding(), num_test=_NUM_TEST)


class TestRigidTriplets:

  def test_train_batch(self, dataset):
    batch = dataset.train_batch(3)
    frames, skip = batch['frames'], batch['skip']
    chex.assert_shape(frames, (4, 3, _SIZE, _SIZE, 3))
    assert frames.dtype == jnp.float32 and skip.dtype == jnp.int32
    assert frames.sharding.is_equivalent_to(dataset.sharding, frames.ndim)
    frames = np.asarray(frames)
    assert frames.min() >= -1 and frames.max() <= 1 and frames.std() > 0.1
    np.testing.assert_array_equal(np.asarray(skip), np.zeros(4, np.int32))
    # Successive frames of a triplet differ: everything moves.
    assert np.all(np.abs(np.diff(frames, axis=1)).mean(axis=(2, 3, 4)) > 1e-3)

  def test_train_batch_is_the_keyed_render(self, dataset, photos):
    render = jax.jit(functools.partial(rt.render_examples, image_size=_SIZE))
    expected = render(jax.random.fold_in(dataset.train_key, 5), jnp.arange(4),
                      jnp.asarray(photos), jnp.asarray(rt.TRIPLET_TAUS))
    np.testing.assert_allclose(dataset.train_batch(5)['frames'], expected, atol=1e-6)

  def test_deterministic_in_seed_and_step(self, dataset):
    first = np.asarray(dataset.train_batch(7)['frames'])
    np.testing.assert_array_equal(first, dataset.train_batch(7)['frames'])
    again = rt.RigidTriplets(0, 4, _sharding(), num_test=_NUM_TEST)
    np.testing.assert_array_equal(first, again.train_batch(7)['frames'])
    assert not np.allclose(first, dataset.train_batch(8)['frames'])
    other_seed = rt.RigidTriplets(1, 4, _sharding(), num_test=_NUM_TEST)
    assert not np.allclose(first, other_seed.train_batch(7)['frames'])

  def test_rows_do_not_depend_on_batch_size(self, dataset):
    small = rt.RigidTriplets(0, 2, _sharding(), num_test=_NUM_TEST)
    np.testing.assert_array_equal(small.train_batch(2)['frames'],
                                  np.asarray(dataset.train_batch(2)['frames'])[:2])

  def test_test_set_fixed(self, dataset):
    batches = list(dataset.test_batches(4))
    assert [len(b['frames']) for b in batches] == [4, 2]
    frames = np.concatenate([b['frames'] for b in batches])
    chex.assert_shape(frames, (_NUM_TEST, 3, _SIZE, _SIZE, 3))
    assert frames.dtype == np.float32 and frames.min() >= -1 and frames.max() <= 1
    assert not batches[0]['frames'].flags.writeable
    for b in batches:
      np.testing.assert_array_equal(b['skip'], np.zeros(len(b['frames']), np.int32))
    again = np.concatenate([b['frames'] for b in dataset.test_batches(_NUM_TEST)])
    np.testing.assert_array_equal(frames, again)
    # A separate key: not the first training examples.
    assert not np.allclose(frames[:4], dataset.train_batch(0)['frames'])

  def test_trajectories(self, dataset, photos):
    trajectories = dataset.test_trajectories(_NUM_TEST)
    chex.assert_shape(trajectories, (_NUM_TEST, 7, _SIZE, _SIZE, 3))
    assert trajectories.dtype == np.float32
    triplets = np.concatenate([b['frames'] for b in dataset.test_batches(_NUM_TEST)])
    t = np.asarray(rt.TRAJECTORY_TIMES)
    np.testing.assert_allclose(trajectories[:, np.isin(t, (1, 2, 3))], triplets, atol=1e-6)
    # t = 0 is the still crop the example was cut from.
    examples = jax.device_get(rt.sample_examples(
        dataset.test_key, jnp.arange(_NUM_TEST), num_photos=photos.shape[0],
        photo_size=photos.shape[1], image_size=_SIZE))
    for i in range(_NUM_TEST):
      crop = _crop(photos, examples['top'][i], examples['left'][i], examples['photo'][i])
      np.testing.assert_allclose(trajectories[i, 0], crop, atol=1e-6)
    np.testing.assert_array_equal(dataset.test_trajectories(2), trajectories[:2])

  def test_grayscale_is_mean_of_rgb(self, dataset):
    gray = rt.RigidTriplets(0, 4, _sharding(), channels=1, num_test=_NUM_TEST)
    frames = np.asarray(gray.train_batch(1)['frames'])
    chex.assert_shape(frames, (4, 3, _SIZE, _SIZE, 1))
    rgb = np.asarray(dataset.train_batch(1)['frames'])
    np.testing.assert_allclose(frames, rgb.mean(axis=-1, keepdims=True), atol=1e-5)

  def test_larger_ranges_grow_the_photos(self):
    big = rt.RigidTriplets(0, 2, _sharding(), num_test=2, max_log_scale=1.0)
    assert big.photo_size == rt.required_photo_size(_SIZE, rt.DEFAULT_MAX_TRANSLATION, 1.0)
    assert big.photo_size > mp.PHOTO_SIZE
    frames = np.concatenate([b['frames'] for b in big.test_batches(2)])
    assert frames.min() >= -1 and frames.max() <= 1

  def test_from_config(self):
    config = ml_collections.ConfigDict(dict(seed=3, batch_size=2, image_size=16, channels=1,
                                            num_test_clips=5))
    dataset = rt.RigidTriplets.from_config(config, _sharding())
    assert (dataset.seed, dataset.batch_size, dataset.image_size, dataset.channels,
            dataset.num_test) == (3, 2, 16, 1, 5)
    assert dataset.max_rotation == rt.DEFAULT_MAX_ROTATION
    chex.assert_shape(dataset.train_batch(0)['frames'], (2, 3, 16, 16, 1))
    np.testing.assert_array_equal(rt.from_config(config, _sharding()).train_batch(0)['frames'],
                                  dataset.train_batch(0)['frames'])

  @pytest.mark.parametrize('field,value', [
      ('seed', 1.5), ('batch_size', 0), ('sharding', None), ('image_size', 0),
      ('channels', 2), ('channels', True), ('num_test', 0), ('max_translation', -1.0),
      ('max_log_scale', float('nan')), ('max_rotation', 4.0)])
  def test_bad_arguments(self, field, value):
    kwargs = dict(seed=0, batch_size=2, sharding=_sharding(), num_test=2)
    kwargs[field] = value
    with pytest.raises(ValueError, match=f'^{field}='):
      rt.RigidTriplets(**kwargs)

  def test_bad_calls(self, dataset):
    with pytest.raises(ValueError, match='^step='):
      dataset.train_batch(-1)
    with pytest.raises(ValueError, match='^batch_size='):
      next(dataset.test_batches(0))
    with pytest.raises(ValueError, match='^num='):
      dataset.test_trajectories(_NUM_TEST + 1)
    with pytest.raises(ValueError, match='^num='):
      dataset.test_trajectories(0)
