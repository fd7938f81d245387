"""Tests of the TFDS video datasets (UCF101, Moving MNIST) on data faked with tfds mock_data."""

import functools

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from uncertainty_jax.data import tfds_video

_NUM_TEST = 35  # test records: the every-10th selection is 0, 10, 20, 30
_NUM_UCF_TRAIN = 12
_NUM_MNIST_TRAIN = 20
_UCF_SHAPE = (24, 32)


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _test_value(index):
  """The grey level of test record `index`: far enough apart to survive JPEG."""
  return 7 * index


def _ucf_train_video(index):
  """A static textured background with a bright square moving right in the top-left corner.

  Only a small region moves, so a random 8x8 patch usually sees no motion.
  """
  rng = np.random.default_rng(index)
  num_frames = 6 + index % 4
  background = rng.integers(40, 90, _UCF_SHAPE + (3,)).astype(np.uint8)
  video = np.repeat(background[None], num_frames, axis=0)
  for t in range(num_frames):
    video[t, 2:7, 1 + t:6 + t] = 250
  return video


def _examples(name, is_test):
  """The fake records of a dataset's test or training split, as numpy feature dicts."""
  if name == 'ucf101' and is_test:
    return [{'video': np.full((8, 20, 30, 3), _test_value(i), np.uint8), 'label': i % 101}
            for i in range(_NUM_TEST)]
  if name == 'ucf101':
    return [{'video': _ucf_train_video(i), 'label': i % 101} for i in range(_NUM_UCF_TRAIN)]
  if name == 'moving_mnist':
    return [{'image_sequence': np.full((20, 64, 64, 1), _test_value(i), np.uint8)}
            for i in range(_NUM_TEST)]
  if name == 'mnist':
    rng = np.random.default_rng(0)
    return [{'image': rng.integers(0, 256, (28, 28, 1)).astype(np.uint8), 'label': i % 10}
            for i in range(_NUM_MNIST_TRAIN)]
  raise AssertionError(f'no fake data for {name}')


_ENCODED = {}


def _encoded_examples(builder, is_test):
  """`_examples` as stored by TFDS (frames JPEG- or PNG-encoded by the builder's features)."""
  key = (builder.name, is_test)
  if key not in _ENCODED:
    _ENCODED[key] = [builder.info.features.encode_example(ex)
                     for ex in _examples(builder.name, is_test)]
  return _ENCODED[key]


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  """`FileReaderBuilder._as_dataset` over `_examples`, decoded by the dataset's real features."""
  del read_config, shuffle_files
  encoded = _encoded_examples(self, str(split).startswith('test'))
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


_DATASETS = {'ucf101': tfds_video.Ucf101Dataset, 'moving_mnist': tfds_video.MovingMnistDataset}


def _make(name, **overrides):
  kwargs = dict(seed=0, batch_size=4, num_input_frames=4, image_size=8, test_frame_size=16,
                num_test_clips=10, test_future_frames=2, sharding=_sharding(),
                shuffle_window=5)
  kwargs.update(overrides)
  return _DATASETS[name](**kwargs)


def _train_frames(dataset, step):
  return np.asarray(dataset.train_batch(step)['frames'])


def _successive_l2(frames):
  """`sum_t ||x_{t+1} - x_t||^2` per clip of `[B, T, H, W, C]` frames."""
  return np.sum(np.square(np.diff(frames.astype(np.float64), axis=1)), axis=(1, 2, 3, 4))


@pytest.mark.usefixtures('fake_tfds')
class TestTrainBatches:

  @pytest.mark.parametrize('name', ['ucf101', 'moving_mnist'])
  def test_shape_dtype_range_and_sharding(self, name):
    batch = _make(name).train_batch(0)['frames']
    assert isinstance(batch, jax.Array)
    assert batch.shape == (4, 5, 8, 8, 3)
    assert batch.dtype == np.float32
    assert batch.sharding == _sharding()
    frames = np.asarray(batch)
    assert frames.min() >= -1.0 and frames.max() <= 1.0
    assert frames.std() > 0  # real content, not a constant fill

  def test_moving_mnist_channels_are_replicated_grey(self):
    frames = _train_frames(_make('moving_mnist'), 0)
    np.testing.assert_array_equal(frames[..., 0], frames[..., 1])
    np.testing.assert_array_equal(frames[..., 0], frames[..., 2])

  @pytest.mark.parametrize('name', ['ucf101', 'moving_mnist'])
  def test_same_seed_same_batches_other_seed_differs(self, name):
    a, b, c = _make(name, seed=3), _make(name, seed=3), _make(name, seed=4)
    first = [_train_frames(a, step) for step in range(2)]
    for step in range(2):
      np.testing.assert_array_equal(_train_frames(b, step), first[step])
    assert not np.array_equal(_train_frames(c, 0), first[0])

  @pytest.mark.parametrize('name', ['ucf101', 'moving_mnist'])
  def test_resume_matches_uninterrupted_run(self, name):
    # 4 examples per step: step 3 lies in the second epoch of both fake training splits.
    uninterrupted = _make(name)
    served = [_train_frames(uninterrupted, step) for step in range(4)]
    resumed = _make(name)
    np.testing.assert_array_equal(_train_frames(resumed, 3), served[3])
    np.testing.assert_array_equal(_train_frames(resumed, 1), served[1])  # back in time
    np.testing.assert_array_equal(_train_frames(resumed, 2), served[2])  # then in order
    assert not np.array_equal(served[0], served[1])

  def test_motion_crop_sees_more_motion_than_a_random_crop(self):
    steps = range(3)
    chosen = np.concatenate([_successive_l2(_train_frames(_make('ucf101'), s)) for s in steps])
    random = np.concatenate([
        _successive_l2(_train_frames(_make('ucf101', num_crop_candidates=1), s))
        for s in steps])
    assert chosen.mean() >= random.mean()
    # The square moves in a corner only: most random patches see none of it.
    assert chosen.mean() > 2 * random.mean()

  def test_from_config(self):
    config = ml_collections.ConfigDict(dict(
        seed=1, batch_size=2, num_input_frames=2, image_size=12, test_frame_size=20,
        num_test_clips=2, test_future_frames=3, tfds_data_dir=''))
    dataset = tfds_video.ucf101_from_config(config, _sharding())
    assert dataset.train_batch(0)['frames'].shape == (2, 3, 12, 12, 3)
    test = next(tfds_video.moving_mnist_from_config(config, _sharding()).test_batches(8))
    assert test['frames'].shape == (2, 5, 20, 20, 3)


@pytest.mark.usefixtures('fake_tfds')
class TestTestBatches:

  @pytest.mark.parametrize('name', ['ucf101', 'moving_mnist'])
  @pytest.mark.parametrize('num_test_clips', [10, 2])
  def test_every_tenth_record_from_the_first(self, name, num_test_clips):
    dataset = _make(name, num_test_clips=num_test_clips)
    batches = list(dataset.test_batches(batch_size=3))
    assert all(b['frames'].shape[0] <= 3 for b in batches)
    frames = np.concatenate([b['frames'] for b in batches])
    expected = np.arange(_NUM_TEST)[::10][:num_test_clips]
    assert frames.shape == (len(expected), 6, 16, 16, 3)
    assert frames.dtype == np.float32
    levels = np.array([_test_value(i) for i in expected]) / 127.5 - 1
    # Constant records survive JPEG, resizing and cropping up to rounding.
    np.testing.assert_allclose(frames, np.broadcast_to(levels[:, None, None, None, None],
                                                       frames.shape), atol=2 / 127.5)

  def test_moving_mnist_native_size_is_exact(self):
    frames = next(_make('moving_mnist', test_frame_size=64).test_batches(2))['frames']
    assert frames.shape == (2, 6, 64, 64, 3)
    expected = np.float32(_test_value(10)) / np.float32(127.5) - np.float32(1)  # float32, as TF
    np.testing.assert_array_equal(frames[1], expected)


class TestMotionCrop:

  def test_picks_the_candidate_with_most_motion(self):
    # One 4x4 block flickers; among 81 positions of a 4x4 patch, 500 candidates find it.
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.uniform(-1, 1, (1, 12, 12, 3)), 3, axis=0).astype(np.float32)
    frames[1, 5:9, 3:7] = -frames[1, 5:9, 3:7]
    patch = tfds_video._motion_crop(tf, tf.constant(frames), 4, tf.constant([0, 1], tf.int64),
                                    num_candidates=500).numpy()
    np.testing.assert_array_equal(patch, frames[:, 5:9, 3:7])


class TestErrors:

  @pytest.mark.parametrize('name, dataset_name, read', [
      ('ucf101', 'ucf101/ucf101_1', lambda d: d.train_batch(0)),
      ('moving_mnist', 'mnist', lambda d: d.train_batch(0)),
      ('moving_mnist', 'moving_mnist', lambda d: next(d.test_batches(2))),
  ])
  def test_missing_dataset_names_dataset_dir_and_fix(self, tmp_path, name, dataset_name, read):
    dataset = _make(name, data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
      read(dataset)
    message = str(err.value)
    assert repr(dataset_name) in message
    assert str(tmp_path) in message
    assert 'tfds build' in message

  def test_batch_size_not_divisible_by_process_count(self, monkeypatch):
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    with pytest.raises(ValueError, match='batch_size=3'):
      _make('ucf101', batch_size=3)

  @pytest.mark.parametrize('field, value', [('batch_size', 0), ('image_size', -1),
                                            ('num_test_clips', 1.5), ('seed', -2),
                                            ('config_name', 'ucf101_2')])
  def test_bad_arguments(self, field, value):
    with pytest.raises(ValueError, match=f'{field}={value!r}'):
      _make('ucf101', **{field: value})

  def test_negative_step(self):
    with pytest.raises(ValueError, match='step=-1'):
      _make('ucf101').train_batch(-1)

  def test_moving_mnist_limits(self):
    with pytest.raises(ValueError, match='image_size=65'):
      _make('moving_mnist', image_size=65)
    with pytest.raises(ValueError, match='test_future_frames'):
      _make('moving_mnist', test_future_frames=17)



class _Replay(tfds_video.base.VideoDataset):
  """Batches a TFDS dataset served under mock_data, replayed after the mock is gone.

  mock_data reroutes every `etils.epath` file access, which Orbax's checkpoint writes also use, so
  the loop itself runs outside the mock on what the real loader produced inside it.
  """

  def __init__(self, dataset, steps, batch_size):
    self._train = {s: dataset.train_batch(s) for s in range(steps)}
    self._test = list(dataset.test_batches(batch_size))

  def train_batch(self, step):
    return self._train[step]

  def test_batches(self, batch_size):
    return iter(self._test)


@pytest.mark.parametrize('name', ['moving_mnist', 'ucf101'])
def test_training_loop_runs_on_tfds_dataset(name, tmp_path, monkeypatch):
  """The chapter-4 loop trains and evaluates on a TFDS dataset (no motion mask: full-frame metrics)."""
  from experiments import video_pred
  from uncertainty_jax.tasks import video_pred as task_lib
  from uncertainty_jax.training import loop
  config = video_pred.get_config('l1,tiny')
  config.dataset = name
  config.num_test_clips = 2
  config.eval_batch_size = 2
  config.num_sample_clips = 2
  loop.resolve_budget(config)
  factory = {'ucf101': tfds_video.ucf101_from_config,
             'moving_mnist': tfds_video.moving_mnist_from_config}[name]
  with tfds.testing.mock_data(as_dataset_fn=_fake_as_dataset,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    replay = _Replay(factory(config, _sharding()), config.total_steps, config.eval_batch_size)
  monkeypatch.setattr(task_lib.VideoPredictionTask, 'make_dataset', lambda self, sharding: replay)
  results = loop.train_and_evaluate(config, str(tmp_path / name))
  assert results['num_clips'] == 2
  assert np.isfinite(results['full/frame1/psnr']) and np.isfinite(results['full/frame2/ssim'])
  assert 'last_input/full/frame1/psnr' in results and 'flow/full/frame1/psnr' in results
  assert not any(k.startswith('moving_exact/') for k in results)  # no exact mask in real data
