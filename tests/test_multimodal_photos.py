"""Tests of uncertainty_jax.data.multimodal_photos: branching futures, rendering, the dataset."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from uncertainty_jax.data import moving_photos as mp
from uncertainty_jax.data import multimodal_photos as mm

_M, _FUTURE, _SIZE, _TEST_SIZE, _CLIPS = 3, 2, 32, 64, 6
_K = len(mm.CONTINUATIONS)
_ARGS = dict(seed=3, num_input_frames=_M, image_size=_SIZE, test_frame_size=_TEST_SIZE,
             num_test_clips=_CLIPS, test_future_frames=_FUTURE)


def _mesh_sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


@pytest.fixture(scope='module')
def dataset():
  return mm.MultimodalPhotos(batch_size=8, sharding=_mesh_sharding(), **_ARGS)


@pytest.fixture(scope='module')
def test_set(dataset):
  return {name: np.concatenate([batch[name] for batch in dataset.test_batches(4)])
          for name in ('frames', 'motion_mask', 'futures', 'mode')}


def _np_velocities(velocity):
  """`[K, 2]` velocities after the branch, from the definitions: left of 'right' is 'up'."""
  dy, dx = velocity
  return np.array([[dy, dx], [-dx, dy], [dx, -dy], [0.0, 0.0]])


def _np_centre(scene, i, mode, t):
  """The centre of clip i's object in frame t under continuation `mode`."""
  position, velocity = scene['obj_position'][i], scene['obj_velocity'][i]
  after = _np_velocities(velocity)[mode]
  return position + (velocity if t < _M else after) * (t - (_M - 1))


def _disc(scene, i, centre, size):
  """`[size, size]` pixels within reach of an object centred at `centre` (edge ramp included)."""
  radius = np.hypot(*scene['obj_half_size'][i]) + 1.0
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  return np.hypot(rows - centre[0], cols - centre[1]) <= radius


def _np_bilinear(photo, y, x):
  """`photo [H, W, C]` sampled bilinearly at float coordinates `y, x [n]`."""
  y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
  fy, fx = (y - y0)[:, None], (x - x0)[:, None]
  return ((1 - fy) * (1 - fx) * photo[y0, x0] + (1 - fy) * fx * photo[y0, x0 + 1]
          + fy * (1 - fx) * photo[y0 + 1, x0] + fy * fx * photo[y0 + 1, x0 + 1])


class TestContinuations:

  def test_velocities_after_the_branch(self):
    velocity = jnp.array([0.0, 3.0])  # moving right
    relative = np.asarray(mm._relative_centres(velocity, num_input_frames=_M, num_frames=_M + 2))
    chex.assert_shape(relative, (_K, _M + 2, 2))
    np.testing.assert_allclose(relative[:, _M], [[0, 3], [-3, 0], [3, 0], [0, 0]])  # up is -y
    for k in range(_K):
      np.testing.assert_allclose(relative[k, :_M], [[0, 3 * (t - _M + 1)] for t in range(_M)])
      np.testing.assert_allclose(relative[k, _M + 1], 2 * relative[k, _M])

  def test_thresholds_draw_the_probabilities(self):
    # Sums within the tolerance of 1, a little short of it.
    probs = (0.25, 0.0, 0.7499995, 0.0)
    mm.check_mode_probs(probs)
    thresholds = mm._mode_thresholds(probs)
    u = np.linspace(0, 1, 4001, endpoint=False)
    drawn = np.sum(u[:, None] >= thresholds, axis=1)
    np.testing.assert_allclose(np.bincount(drawn, minlength=_K) / u.size, probs, atol=1e-3)
    # Neither rounding nor the shortfall reach a mode of probability 0, even just below 1.
    assert np.sum(np.float32(1 - 2**-24) >= thresholds) == 2


class TestTrainBatch:

  def test_shape_dtype_range_sharding(self, dataset):
    frames = dataset.train_batch(0)['frames']
    chex.assert_shape(frames, (8, _M + 1, _SIZE, _SIZE, 3))
    assert frames.dtype == jnp.float32 and frames.sharding == dataset.sharding
    frames = np.asarray(frames)
    assert frames.min() >= -1 and frames.max() <= 1

  def test_deterministic_for_seed_and_step(self, dataset):
    first = np.asarray(dataset.train_batch(5)['frames'])
    np.testing.assert_array_equal(np.asarray(dataset.train_batch(5)['frames']), first)
    assert not np.allclose(np.asarray(dataset.train_batch(6)['frames']), first)
    small = mm.MultimodalPhotos(batch_size=4, sharding=jax.sharding.SingleDeviceSharding(
        jax.devices()[0]), **_ARGS)
    np.testing.assert_array_equal(np.asarray(small.train_batch(5)['frames']), first[:4])

  def test_frames_show_their_continuation(self, dataset):
    """Each training clip is its scene rendered under the scene's continuation; the inputs are
    the same under every continuation, and frame m tells them apart."""
    step = 2
    frames = np.asarray(dataset.train_batch(step)['frames'])
    scenes = dataset._train_scenes(step)
    every = jax.device_get(jax.jit(jax.vmap(functools.partial(
        mm._render_continuations, num_input_frames=_M, num_frames=_M + 1, frame_size=_SIZE,
        motion_threshold=0.5), in_axes=(0, None)))(scenes, dataset._photos))['frames']
    for i, mode in enumerate(scenes['mode']):
      np.testing.assert_allclose(frames[i], every[i, mode], atol=1e-5)
      for k in range(_K):
        np.testing.assert_array_equal(every[i, k, :_M], every[i, 0, :_M])
      rmse = np.sqrt(np.mean((frames[i, _M] - every[i, :, _M])**2, axis=(1, 2, 3)))
      assert np.argmin(rmse) == mode
      assert np.sort(rmse)[1] > 0.01

  @pytest.mark.parametrize('probs', [mm.DEFAULT_MODE_PROBS, (0.1, 0.0, 0.6, 0.3)])
  def test_continuation_frequencies(self, probs):
    batch = 600
    dataset = mm.MultimodalPhotos(batch_size=batch, sharding=_mesh_sharding(), mode_probs=probs,
                                  **_ARGS)
    counts = np.bincount(dataset._train_scenes(0)['mode'], minlength=_K)
    probs = np.asarray(probs)
    # Within 4.5 binomial standard deviations; a probability of 0 is never drawn.
    tolerance = 4.5 * np.sqrt(batch * probs * (1 - probs))
    assert np.all(np.abs(counts - batch * probs) <= tolerance), (counts, batch * probs)
    assert np.all(counts[probs == 0] == 0)

  def test_scenes_fit(self, dataset):
    scenes = dataset._train_scenes(1)
    size = np.asarray(scenes['obj_half_size'])
    assert np.all((size >= 0.5 * _SIZE * mm.OBJECT_SIZE[0] - 1e-4)
                  & (size <= 0.5 * _SIZE * mm.OBJECT_SIZE[1] + 1e-4))
    speed = np.linalg.norm(scenes['obj_velocity'], axis=-1)
    assert np.all((speed >= mm.OBJECT_SPEED[0] - 1e-4) & (speed <= mm.OBJECT_SPEED[1] + 1e-4))
    assert np.all(scenes['obj_photo'] != scenes['bg_photo'])
    last_start = dataset.photo_size - 1 - _SIZE
    for i in range(len(speed)):
      centres = np.array([_np_centre(scenes, i, k, t) for k in range(_K) for t in range(_M + 1)])
      # Every centre, under every continuation, in the frame's middle half; every texture window
      # inside its photo.
      assert np.all((centres >= 0.25 * _SIZE - 1e-3) & (centres <= 0.75 * _SIZE + 1e-3))
      starts = scenes['obj_tex_offset'][i] - centres
      assert np.all((starts >= 0) & (starts <= last_start))
      assert np.all((scenes['bg_offset'][i] >= 0) & (scenes['bg_offset'][i] <= last_start))


class TestTestSet:

  def test_shapes_dtypes_read_only(self, dataset):
    batches = list(dataset.test_batches(4))
    assert [len(batch['mode']) for batch in batches] == [4, 2]
    for batch in batches:
      assert set(batch) == {'frames', 'motion_mask', 'futures', 'mode'}
      chex.assert_shape(batch['frames'], (None, _M + _FUTURE, _TEST_SIZE, _TEST_SIZE, 3))
      chex.assert_shape(batch['motion_mask'], (None, _M + _FUTURE, _TEST_SIZE, _TEST_SIZE))
      chex.assert_shape(batch['futures'], (None, _K, _TEST_SIZE, _TEST_SIZE, 3))
      assert batch['frames'].dtype == batch['futures'].dtype == np.float32
      assert batch['motion_mask'].dtype == bool and batch['mode'].dtype == np.int32
      assert not any(array.flags.writeable for array in batch.values())
      for name in ('frames', 'futures'):
        assert batch[name].min() >= -1 and batch[name].max() <= 1

  def test_deterministic_for_seed(self, test_set):
    again = mm.MultimodalPhotos(batch_size=2, sharding=_mesh_sharding(), **_ARGS)
    batch = next(again.test_batches(_CLIPS))
    for name, array in test_set.items():
      np.testing.assert_array_equal(batch[name], array)
    other = mm.MultimodalPhotos(batch_size=2, sharding=_mesh_sharding(), **{**_ARGS, 'seed': 4})
    assert not np.allclose(next(other.test_batches(_CLIPS))['frames'], test_set['frames'])

  def test_frames_show_the_sampled_future(self, test_set):
    rows = np.arange(_CLIPS)
    np.testing.assert_array_equal(test_set['frames'][:, _M], test_set['futures'][rows,
                                                                                 test_set['mode']])
    # 'stop' keeps the object where it was in the last input frame.
    np.testing.assert_array_equal(test_set['futures'][:, mm.STOP], test_set['frames'][:, _M - 1])

  def test_futures_differ_on_the_object_only(self, dataset, test_set):
    scenes = dataset._test_scenes
    futures = test_set['futures']
    for i in range(_CLIPS):
      discs = [_disc(scenes, i, _np_centre(scenes, i, k, _M), _TEST_SIZE) for k in range(_K)]
      for j in range(_K):
        for k in range(j + 1, _K):
          differ = np.any(futures[i, j] != futures[i, k], axis=-1)
          assert np.all(~differ | discs[j] | discs[k]), (i, j, k)
          # The objects are several pixels apart, so many pixels of them change.
          assert differ.sum() >= 20, (i, j, k, differ.sum())
          assert np.abs(futures[i, j] - futures[i, k]).max() > 0.1

  def test_static_background_and_motion_mask(self, dataset, test_set):
    scenes = dataset._test_scenes
    frames, mask = test_set['frames'], test_set['motion_mask']
    assert not mask[:, 0].any()
    for i, mode in enumerate(test_set['mode']):
      discs = [_disc(scenes, i, _np_centre(scenes, i, mode, t), _TEST_SIZE)
               for t in range(_M + _FUTURE)]
      background = ~np.any(discs, axis=0)
      still = frames[i][:, background]
      np.testing.assert_array_equal(still, np.broadcast_to(still[:1], still.shape))
      for t in range(1, _M + _FUTURE):
        assert np.all(~mask[i, t] | discs[t])
        # Speeds of 2 pixels or more exceed the threshold of 0.5; a stopped object is still.
        assert mask[i, t].any() == (t < _M or mode != mm.STOP), (i, t, mode)

  def test_pixels_are_photo_samples(self, dataset, test_set):
    """Frame m of every future, against numpy bilinear samples of the photos: the background at
    `bg_offset + p`, the object's inside at `tex_offset - centre + p`."""
    scenes, photos = dataset._test_scenes, mp.load_photos(dataset.photo_size)
    rows, cols = np.meshgrid(np.arange(_TEST_SIZE), np.arange(_TEST_SIZE), indexing='ij')
    for i in range(_CLIPS):
      for k in range(_K):
        centre = _np_centre(scenes, i, k, _M)
        outside = ~_disc(scenes, i, centre, _TEST_SIZE)
        inside = (np.hypot(rows - centre[0], cols - centre[1])
                  <= scenes['obj_half_size'][i].min() - 1.5)
        for region, photo, start in (
            (outside, scenes['bg_photo'][i], scenes['bg_offset'][i]),
            (inside, scenes['obj_photo'][i], scenes['obj_tex_offset'][i] - centre)):
          expected = _np_bilinear(photos[photo], start[0] + rows[region], start[1] + cols[region])
          np.testing.assert_allclose(test_set['futures'][i, k][region], expected, atol=1e-5)
        assert inside.sum() >= 4

  def test_motion_mask_is_the_object(self, dataset, test_set):
    """Where the object is wholly in view and moves, the mask has the object's area."""
    scenes, checked = dataset._test_scenes, 0
    for i, mode in enumerate(test_set['mode']):
      (half_y, half_x), corner = scenes['obj_half_size'][i], scenes['obj_corner'][i]
      if scenes['obj_shape'][i] == mp.ROUNDED_RECTANGLE:
        area = 4 * half_y * half_x - (4 - np.pi) * corner**2
        perimeter = 4 * (half_y + half_x) - (8 - 2 * np.pi) * corner
      else:  # Ramanujan's approximation of an ellipse's perimeter
        area = np.pi * half_y * half_x
        perimeter = np.pi * (3 * (half_y + half_x)
                             - np.sqrt((3 * half_y + half_x) * (half_y + 3 * half_x)))
      for t in range(1, _M + _FUTURE):
        if t >= _M and mode == mm.STOP:
          continue
        centre = _np_centre(scenes, i, mode, t)
        reach = np.hypot(half_y, half_x) + 1
        if np.all((centre - reach >= 0) & (centre + reach <= _TEST_SIZE - 1)):
          # Counting pixel centres misses the area by a fraction of the outline; counting every
          # pixel the outline touches would add half the perimeter.
          assert abs(test_set['motion_mask'][i, t].sum() - area) <= 0.3 * perimeter, (i, t)
          checked += 1
    assert checked >= 10

  def test_inputs_do_not_depend_on_the_continuation(self, dataset, test_set):
    scenes = {name: value[:2] for name, value in dataset._test_scenes.items()}
    every = jax.device_get(jax.vmap(functools.partial(
        mm._render_continuations, num_input_frames=_M, num_frames=_M + _FUTURE,
        frame_size=_TEST_SIZE, motion_threshold=0.5), in_axes=(0, None))(
            scenes, jnp.asarray(mp.load_photos(dataset.photo_size))))
    for i in range(2):
      for k in range(_K):
        np.testing.assert_array_equal(every['frames'][i, k, :_M], every['frames'][i, 0, :_M])
        np.testing.assert_array_equal(every['motion_mask'][i, k, :_M],
                                      every['motion_mask'][i, 0, :_M])
      np.testing.assert_allclose(every['frames'][i, :, _M], test_set['futures'][i], atol=1e-5)

  def test_texture_moves_with_the_object(self, dataset):
    """With whole-pixel velocities, the object's inside is the previous frame's, shifted."""
    scenes = {name: np.array(value[:3]) for name, value in dataset._test_scenes.items()}
    # Truncation shrinks every displacement towards 0, so texture windows stay in their photos;
    # speeds of 2 or more leave a component of at least 1.
    scenes['obj_velocity'] = np.trunc(scenes['obj_velocity'])
    every = jax.device_get(jax.vmap(functools.partial(
        mm._render_continuations, num_input_frames=_M, num_frames=_M + _FUTURE,
        frame_size=_TEST_SIZE, motion_threshold=0.5), in_axes=(0, None))(
            scenes, jnp.asarray(mp.load_photos(dataset.photo_size))))['frames']
    rows, cols = np.meshgrid(np.arange(_TEST_SIZE), np.arange(_TEST_SIZE), indexing='ij')
    for i in range(3):
      radius = scenes['obj_half_size'][i].min() - 1.5  # inside every shape's inscribed circle
      for k in range(_K):
        for t in range(1, _M + _FUTURE):
          centre = _np_centre(scenes, i, k, t)
          shift = np.rint(centre - _np_centre(scenes, i, k, t - 1)).astype(int)
          inside = np.hypot(rows - centre[0], cols - centre[1]) <= radius
          src_y, src_x = rows - shift[0], cols - shift[1]
          inside &= (src_y >= 0) & (src_y < _TEST_SIZE) & (src_x >= 0) & (src_x < _TEST_SIZE)
          assert inside.sum() >= 4
          np.testing.assert_allclose(every[i, k, t][inside],
                                     every[i, k, t - 1][src_y[inside], src_x[inside]],
                                     atol=1e-5)


class TestArguments:

  def test_from_config(self):
    config = ml_collections.ConfigDict(dict(
        seed=1, batch_size=2, num_input_frames=2, image_size=16, test_frame_size=16,
        num_test_clips=3, test_future_frames=1))
    dataset = mm.MultimodalPhotos.from_config(config, _mesh_sharding())
    assert (dataset.batch_size, dataset.image_size, dataset.motion_threshold,
            dataset.mode_probs) == (2, 16, 0.5, mm.DEFAULT_MODE_PROBS)
    config.motion_threshold = 0.25
    config.mode_probs = (0.0, 0.5, 0.5, 0.0)
    dataset = mm.MultimodalPhotos.from_config(config, _mesh_sharding())
    assert (dataset.motion_threshold, dataset.mode_probs) == (0.25, (0.0, 0.5, 0.5, 0.0))

  def test_photo_size_grows_for_large_frames(self):
    dataset = mm.MultimodalPhotos(batch_size=2, sharding=_mesh_sharding(),
                                  **{**_ARGS, 'test_frame_size': 160})
    assert dataset.photo_size == mm.required_photo_size(160, _M, _FUTURE) > mp.PHOTO_SIZE

  @pytest.mark.parametrize('field, value', [
      ('seed', 'a'), ('batch_size', 0), ('num_input_frames', 0), ('image_size', 0),
      ('image_size', 2.5), ('test_frame_size', 8), ('num_test_clips', 0),
      ('test_future_frames', 0), ('motion_threshold', -0.1), ('sharding', None),
      ('mode_probs', (0.5, 0.5)), ('mode_probs', (0.4, 0.4, 0.4, -0.2)),
      ('mode_probs', (0.3, 0.3, 0.3, 0.3)), ('mode_probs', 'abcd')])
  def test_bad_arguments(self, field, value):
    kwargs = dict(_ARGS, batch_size=2, sharding=_mesh_sharding())
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
      mm.MultimodalPhotos(**kwargs)

  def test_bad_step_and_batch_size(self, dataset):
    with pytest.raises(ValueError, match='step'):
      dataset.train_batch(-1)
    with pytest.raises(ValueError, match='batch_size'):
      next(dataset.test_batches(0))
