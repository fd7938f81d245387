"""Tests of uncertainty_jax.data.moving_photos: rendering, exact flow, patch selection, dataset."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from uncertainty_jax.data import moving_photos as mp

_BATCH, _FRAMES, _SIZE = 16, 5, 32
_THRESHOLD = 0.5


@pytest.fixture(scope='module')
def photos():
  return mp.load_photos()


@pytest.fixture(scope='module')
def render(photos):
  """Renders `[16, 5, 32, 32]` clips from scene parameters; compiled once for the module."""
  jitted = jax.jit(functools.partial(mp.render_scenes, num_frames=_FRAMES, frame_size=_SIZE,
                                     motion_threshold=_THRESHOLD))
  return lambda scenes: jax.device_get(jitted(scenes, photos))


@pytest.fixture(scope='module')
def sample(photos):
  """Draws `[batch_size]` scenes of 5 frames of 32x32 (on the host) for a key."""
  jitted = jax.jit(functools.partial(
      mp.sample_scenes, num_frames=_FRAMES, frame_size=_SIZE, num_photos=photos.shape[0],
      photo_size=photos.shape[1]), static_argnames='batch_size')
  return lambda key, batch_size=_BATCH: jax.device_get(jitted(key, batch_size=batch_size))


@pytest.fixture(scope='module')
def scenes(sample):
  return sample(jax.random.key(7))


@pytest.fixture(scope='module')
def clips(render, scenes):
  return render(scenes)


def _interior_where_flow_constant(flow, t):
  """`[B, S, S]` pixels of frame t whose 3x3 neighbourhood shares one flow, and whose source
  pixel in frame t - 1 (and its 3x3 neighbourhood) had that flow too: no occlusion boundary."""
  def constant(f):  # f: [B, S, S, 2] -> [B, S, S]
    same = np.ones(f.shape[:3], bool)
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        same &= np.all(np.roll(f, (dy, dx), axis=(1, 2)) == f, axis=-1)
    same[:, [0, -1], :] = False
    same[:, :, [0, -1]] = False
    return same

  current, previous = flow[:, t], flow[:, t - 1]
  batch, size = flow.shape[0], flow.shape[2]
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  src_y = np.rint(rows - current[..., 0]).astype(int)
  src_x = np.rint(cols - current[..., 1]).astype(int)
  inside = (src_y >= 1) & (src_y <= size - 2) & (src_x >= 1) & (src_x <= size - 2)
  src_y, src_x = np.clip(src_y, 0, size - 1), np.clip(src_x, 0, size - 1)
  b = np.arange(batch)[:, None, None]
  source_ok = constant(previous)[b, src_y, src_x] & np.all(
      previous[b, src_y, src_x] == current, axis=-1)
  return constant(current) & inside & source_ok


class TestLoadPhotos:

  def test_photos(self, photos):
    chex.assert_shape(photos, (len(mp.PHOTO_NAMES), mp.PHOTO_SIZE, mp.PHOTO_SIZE, 3))
    assert photos.dtype == np.float32 and not photos.flags.writeable
    assert photos.min() >= -1 and photos.max() <= 1
    # Seven different photographs, each using most of the intensity range.
    assert np.all(photos.max(axis=(1, 2, 3)) - photos.min(axis=(1, 2, 3)) > 1.0)
    flat = photos.reshape(len(photos), -1)
    assert np.all(np.abs(np.corrcoef(flat) - np.eye(len(photos))) < 0.99)

  def test_bad_size(self):
    with pytest.raises(ValueError, match='size'):
      mp.load_photos(1)


class TestRender:

  def test_shapes_dtypes_range(self, clips):
    chex.assert_shape(clips['frames'], (_BATCH, _FRAMES, _SIZE, _SIZE, 3))
    chex.assert_shape(clips['flow'], (_BATCH, _FRAMES, _SIZE, _SIZE, 2))
    chex.assert_shape(clips['motion_mask'], (_BATCH, _FRAMES, _SIZE, _SIZE))
    assert clips['frames'].dtype == np.float32 and clips['flow'].dtype == np.float32
    assert clips['motion_mask'].dtype == bool
    assert clips['frames'].min() >= -1 and clips['frames'].max() <= 1
    np.testing.assert_array_equal(clips['flow'][:, 0], 0)
    # Objects move 1-3 pixels per frame; most clips have some motion after frame 0.
    assert clips['motion_mask'][:, 1:].any(axis=(1, 2, 3)).mean() > 0.9

  def test_motion_mask_is_flow_above_threshold(self, clips):
    speed = np.linalg.norm(clips['flow'], axis=-1)
    np.testing.assert_array_equal(clips['motion_mask'], speed > _THRESHOLD)

  def test_render_clips_is_sample_then_render(self, photos, clips):
    got = jax.jit(functools.partial(mp.render_clips, batch_size=_BATCH, num_frames=_FRAMES,
                                    frame_size=_SIZE))(jax.random.key(7), photos)
    # The same values up to float rounding: sampling fuses with rendering inside one jit.
    np.testing.assert_allclose(got['frames'], clips['frames'], atol=1e-5)
    np.testing.assert_allclose(got['flow'], clips['flow'], atol=1e-5)
    assert np.mean(got['motion_mask'] == clips['motion_mask']) > 0.999

  def test_deterministic_and_key_dependent(self, sample, scenes):
    chex.assert_trees_all_equal(sample(jax.random.key(7)), scenes)
    other = sample(jax.random.key(8))
    assert not np.allclose(other['obj_position'], scenes['obj_position'])

  def test_rows_do_not_depend_on_batch_size(self, sample, scenes):
    chex.assert_trees_all_equal(sample(jax.random.key(7), batch_size=4),
                                jax.tree.map(lambda x: x[:4], scenes))

  def test_scene_ranges(self, photos, scenes):
    spec = mp.SceneSpec()
    speed = np.linalg.norm(scenes['obj_velocity'], axis=-1)
    assert np.all((speed >= spec.object_speed[0] - 1e-5) & (speed <= spec.object_speed[1] + 1e-5))
    extent = 2 * scenes['obj_half_size'] / _SIZE
    assert np.all((extent >= spec.object_size[0] - 1e-5) & (extent <= spec.object_size[1] + 1e-5))
    assert np.all(scenes['obj_photo'] != scenes['bg_photo'][:, None])
    counts = scenes['obj_active'].sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= spec.max_objects
    # Every window the clip samples lies inside the photos.
    t = np.arange(_FRAMES, dtype=np.float32)[None, :, None]
    camera = (t * scenes['camera_velocity'][:, None] +
              0.5 * t**2 * scenes['camera_accel'][:, None])
    starts = [scenes['bg_offset'][:, None] + camera]
    for k in range(spec.max_objects):
      centre = scenes['obj_position'][:, None, k] + t * scenes['obj_velocity'][:, None, k]
      starts.append(scenes['obj_tex_offset'][:, None, k] - centre)
    starts = np.stack(starts)
    assert starts.min() >= 0 and starts.max() + _SIZE + 1 <= photos.shape[1]

  def test_integer_motion_flow_is_exact(self, render, scenes):
    """Frame t at p equals frame t - 1 at p - flow, wherever no occlusion boundary is near."""
    rng = np.random.default_rng(0)
    # Integer motions, distinct between the layers of a clip, so that a boundary between two
    # layers always shows in the flow.
    object_choices = np.array([(1, 2), (-2, 1), (2, -1), (-1, -2), (0, 3), (3, 0), (-2, -2)])
    exact = dict(scenes)
    exact['obj_velocity'] = np.stack([
        object_choices[rng.choice(len(object_choices), 3, replace=False)]
        for _ in range(_BATCH)]).astype(np.float32)
    exact['camera_velocity'] = np.where(rng.uniform(size=(_BATCH, 1)) < 0.5, 0.0, 1.0).repeat(
        2, axis=1).astype(np.float32)
    exact['camera_accel'] = np.zeros_like(scenes['camera_accel'])
    # Offsets with sub-pixel phases, far enough from the photos' borders for the new paths.
    exact['bg_offset'] = (40 + rng.uniform(0, 1, scenes['bg_offset'].shape)).astype(np.float32)
    exact['obj_tex_offset'] = (
        60 + rng.uniform(0, 1, scenes['obj_tex_offset'].shape)).astype(np.float32)
    clips = render(exact)
    frames, flow = clips['frames'], clips['flow']
    checked, on_objects = 0, 0
    for t in range(2, _FRAMES):
      mask = _interior_where_flow_constant(flow, t)
      b, y, x = np.nonzero(mask)
      pixel_flow = flow[b, t, y, x]
      src_y = y - pixel_flow[:, 0].astype(int)
      src_x = x - pixel_flow[:, 1].astype(int)
      np.testing.assert_allclose(frames[b, t, y, x], frames[b, t - 1, src_y, src_x], atol=1e-4)
      checked += len(b)
      on_objects += np.sum(np.all(pixel_flow[:, None] == exact['obj_velocity'][b], axis=-1))
    # The check covers most of the frames, moving objects included.
    assert checked > 0.5 * _BATCH * (_FRAMES - 2) * _SIZE**2
    assert on_objects > 0.1 * checked

  def test_subpixel_flow_warps_previous_frame(self, clips):
    """Bilinear warping by the (sub-pixel, accelerating) flow nearly reproduces frame t."""
    frames, flow = clips['frames'], clips['flow']
    warped_error, still_error = [], []
    rows, cols = np.meshgrid(np.arange(_SIZE), np.arange(_SIZE), indexing='ij')
    for t in range(2, _FRAMES):
      mask = _interior_where_flow_constant(flow, t) & clips['motion_mask'][:, t]
      for b in range(_BATCH):
        coords = [rows - flow[b, t, ..., 0], cols - flow[b, t, ..., 1]]
        warped = np.stack([ndimage.map_coordinates(frames[b, t - 1, ..., c], coords, order=1)
                           for c in range(3)], axis=-1)
        warped_error.append(np.abs(warped - frames[b, t])[mask[b]])
        still_error.append(np.abs(frames[b, t - 1] - frames[b, t])[mask[b]])
    warped_error, still_error = np.concatenate(warped_error), np.concatenate(still_error)
    assert warped_error.size > 1000
    assert warped_error.mean() < 0.3 * still_error.mean()
    assert warped_error.mean() < 0.03

  def test_static_scene_is_still(self, render, scenes):
    still = dict(scenes)
    for name in ('obj_velocity', 'camera_velocity', 'camera_accel'):
      still[name] = np.zeros_like(scenes[name])
    clips = render(still)
    for t in range(1, _FRAMES):
      np.testing.assert_array_equal(clips['frames'][:, t], clips['frames'][:, 0])
    np.testing.assert_array_equal(clips['flow'], 0)
    assert not clips['motion_mask'].any()

  def test_photos_too_small(self, photos):
    with pytest.raises(ValueError, match='photos'):
      mp.render_clips(jax.random.key(0), photos[:, :40, :40], batch_size=1, num_frames=4,
                      frame_size=32)

  def test_bad_spec(self):
    with pytest.raises(ValueError, match='max_objects'):
      mp.SceneSpec(max_objects=0)
    with pytest.raises(ValueError, match='object_speed'):
      mp.SceneSpec(object_speed=(3.0, 1.0))


def _np_motion(clip):
  """Mean over frame pairs of the L2 distance between successive frames, `[T, h, w, C]`."""
  steps = clip[1:].astype(np.float64) - clip[:-1]
  return np.mean(np.sqrt(np.sum(steps**2, axis=(1, 2, 3))))


class TestSelectMovingCrops:

  def test_crops_move_more_than_random_crops(self, clips):
    frames = clips['frames']
    crop = 16
    crops = np.asarray(jax.jit(functools.partial(mp.select_moving_crops, crop_size=crop))(
        jax.random.key(1), frames))
    chex.assert_shape(crops, (_BATCH, _FRAMES, crop, crop, 3))
    rng = np.random.default_rng(0)
    selected, random = [], []
    for clip, chosen in zip(frames, crops):
      # The crop is a window of its clip, at the same place in every frame.
      found = [(y, x) for y in range(_SIZE - crop + 1) for x in range(_SIZE - crop + 1)
               if np.array_equal(clip[:, y:y + crop, x:x + crop], chosen)]
      assert found
      selected.append(_np_motion(chosen))
      offsets = rng.integers(0, _SIZE - crop + 1, (16, 2))
      random.append(np.mean([_np_motion(clip[:, y:y + crop, x:x + crop]) for y, x in offsets]))
    assert np.mean(selected) > 1.2 * np.mean(random)
    assert np.mean(np.asarray(selected) >= np.asarray(random)) > 0.8

  def test_bad_crop_size(self, clips):
    with pytest.raises(ValueError, match='crop_size'):
      mp.select_moving_crops(jax.random.key(0), clips['frames'], crop_size=_SIZE + 1)


_DATASET_ARGS = dict(seed=3, num_input_frames=2, image_size=16, test_frame_size=24,
                     num_test_clips=5, test_future_frames=3, motion_threshold=1.0)


def _mesh_sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


@pytest.fixture(scope='module')
def dataset():
  return mp.MovingPhotos(batch_size=8, sharding=_mesh_sharding(), **_DATASET_ARGS)


class TestMovingPhotos:

  def test_train_batch(self, dataset):
    batch = dataset.train_batch(0)
    assert set(batch) == {'frames'}
    frames = batch['frames']
    chex.assert_shape(frames, (8, 3, 16, 16, 3))
    assert frames.dtype == jnp.float32
    assert frames.sharding == dataset.sharding
    frames = np.asarray(frames)
    assert frames.min() >= -1 and frames.max() <= 1
    # Selected for motion: successive frames differ in every clip.
    assert all(_np_motion(clip) > 0 for clip in frames)

  def test_deterministic_per_step(self, dataset):
    first = np.asarray(dataset.train_batch(5)['frames'])
    np.testing.assert_array_equal(np.asarray(dataset.train_batch(5)['frames']), first)
    assert not np.allclose(np.asarray(dataset.train_batch(6)['frames']), first)

  def test_sharded_equals_unsharded(self, dataset, photos):
    """Under a sharded jit each device renders its rows; the values are the plain jit's."""
    reference = jax.jit(functools.partial(mp.train_clips, batch_size=8, num_frames=3,
                                          image_size=16))
    expected = reference(jax.random.fold_in(dataset.train_key, 11), photos)['frames']
    np.testing.assert_array_equal(np.asarray(dataset.train_batch(11)['frames']),
                                  np.asarray(expected))

  def test_rows_independent_of_batch_size_and_no_retrace(self, dataset, monkeypatch):
    traces = []
    original = mp.train_clips

    @functools.wraps(original)
    def counted(*args, **kwargs):
      traces.append(1)
      return original(*args, **kwargs)

    monkeypatch.setattr(mp, 'train_clips', counted)
    small = mp.MovingPhotos(batch_size=4, sharding=jax.sharding.SingleDeviceSharding(
        jax.devices()[0]), **_DATASET_ARGS)
    for step in range(5):
      np.testing.assert_array_equal(np.asarray(small.train_batch(step)['frames']),
                                    np.asarray(dataset.train_batch(step)['frames'])[:4])
    assert len(traces) == 1

  def test_test_batches(self, dataset):
    batches = list(dataset.test_batches(2))
    assert [len(b['frames']) for b in batches] == [2, 2, 1]
    for batch in batches:
      assert set(batch) == {'frames', 'flow', 'motion_mask'}
      assert isinstance(batch['frames'], np.ndarray)
      chex.assert_shape(batch['frames'], (None, 5, 24, 24, 3))
      chex.assert_shape(batch['flow'], (None, 5, 24, 24, 2))
      chex.assert_shape(batch['motion_mask'], (None, 5, 24, 24))
      np.testing.assert_array_equal(batch['motion_mask'],
                                    np.linalg.norm(batch['flow'], axis=-1) > 1.0)
      np.testing.assert_array_equal(batch['flow'][:, 0], 0)
    frames = np.concatenate([b['frames'] for b in batches])
    assert frames.min() >= -1 and frames.max() <= 1
    # Cached: the same arrays again, in the same order, whatever the batch size.
    again = np.concatenate([b['frames'] for b in dataset.test_batches(4)])
    np.testing.assert_array_equal(again, frames)
    assert not any(b['frames'].flags.writeable for b in batches)
    assert not np.array_equal(frames[0], frames[1])

  def test_test_and_train_keys_differ(self, dataset):
    train, test = jax.random.key_data(dataset.train_key), jax.random.key_data(dataset.test_key)
    assert not np.array_equal(train, test)
    other = mp.MovingPhotos(batch_size=8, sharding=_mesh_sharding(),
                            **{**_DATASET_ARGS, 'seed': 4})
    assert not np.array_equal(jax.random.key_data(other.train_key), train)

  def test_photo_size_grows_for_large_frames(self):
    dataset = mp.MovingPhotos(batch_size=2, sharding=_mesh_sharding(),
                              **{**_DATASET_ARGS, 'test_frame_size': 160})
    assert dataset.photo_size == mp.required_photo_size(160, 5) > mp.PHOTO_SIZE

  def test_from_config(self):
    config = ml_collections.ConfigDict(dict(
        seed=1, batch_size=2, num_input_frames=2, image_size=16, test_frame_size=16,
        num_test_clips=3, test_future_frames=1))
    dataset = mp.MovingPhotos.from_config(config, _mesh_sharding())
    assert (dataset.batch_size, dataset.image_size, dataset.motion_threshold) == (2, 16, 0.5)
    config.motion_threshold = 0.25
    assert mp.MovingPhotos.from_config(config, _mesh_sharding()).motion_threshold == 0.25

  @pytest.mark.parametrize('field, value', [
      ('seed', 'a'), ('batch_size', 0), ('num_input_frames', 0), ('image_size', 0),
      ('image_size', 2.5), ('test_frame_size', 8), ('num_test_clips', 0),
      ('test_future_frames', -1), ('motion_threshold', -0.1), ('sharding', None)])
  def test_bad_arguments(self, field, value):
    kwargs = dict(_DATASET_ARGS, batch_size=2, sharding=_mesh_sharding())
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
      mp.MovingPhotos(**kwargs)

  def test_bad_step_and_batch_size(self, dataset):
    with pytest.raises(ValueError, match='step'):
      dataset.train_batch(-1)
    with pytest.raises(ValueError, match='batch_size'):
      next(dataset.test_batches(0))
