"""`rotations`: triplets of frames of NORB-like toys turning at constant speed (3.3.2-3.3.3).

Section 3.3.2 trains on "simulated videos generated using the NORB dataset rescaled to 32x32 ...
by tracing constant speed trajectories with random starting points in the two-dimensional latent
space of pitch and azimuth rotations". NORB is not downloadable here, so the toys are the
procedural ones of `uncertainty_jax.data.toys`, rendered on the fly.

A trajectory draws, uniformly and independently: a category, an instance (among the training or
the test instances), one of the six lights, a starting azimuth in [0, 360), an azimuth velocity of
`+-azimuth_step` degrees per frame, an elevation velocity among `elevation_steps`, and a starting
elevation among those that keep the elevation within `elevation_range` for `t` in [0, 4]. The pose
at time `t` is `start + (t - 1) * velocity`; frame `t` of a triplet (`t` = 1, 2, 3) is rendered at
time `t`. With `skip` (3.3.3), the third frame is rendered at time `3 + s`, `s ~ Bernoulli(1/2)`,
so that "rotation angles 0, 20, 40 and 0, 20, 60 are equally likely".

Training row `i` of step `k` is a pure function of `(seed, k, i)` (`fold_in` of the step, then
of the row, into the training key), so batches do not depend on the process count; each process
renders its `batch_size / process_count` consecutive rows and `base.make_global_batch` assembles
them. The test set draws trajectories `0..num_test - 1` of the test instances from the test key.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import toys

# Times of the figures' interpolations (3.3.2): the triplet is t = 1, 2, 3.
INTERPOLATION_TIMES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
# Every trajectory keeps its elevation in range over this span of times: the interpolations start
# at t = 0 and a skipped third frame lands at t = 4.
_TIME_SPAN = (0.0, 4.0)
_NUM_DRAWS = 8
# Images per compiled call when rendering the test set: one program for any test size.
_TEST_CHUNK = 128


def _check_positive(**values) -> None:
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
      raise ValueError(f'{name}={value!r}: expected a positive integer.')


def _check_real(name: str, value, *, minimum: float | None = None) -> float:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value)
      or (minimum is not None and value < minimum)):
    bound = f' >= {minimum}' if minimum is not None else ''
    raise ValueError(f'{name}={value!r}: expected a finite number{bound}.')
  return float(value)


def _check_elevations(elevation_steps, elevation_range) -> tuple[tuple[float, ...],
                                                                 tuple[float, float]]:
  if (isinstance(elevation_steps, (str, bytes)) or not isinstance(elevation_steps, Sequence)
      or not elevation_steps or not all(
          not isinstance(v, bool) and isinstance(v, numbers.Real) and np.isfinite(v)
          for v in elevation_steps)):
    raise ValueError(f'elevation_steps={elevation_steps!r}: expected a non-empty sequence of '
                     'finite numbers (degrees per frame).')
  steps = tuple(float(v) for v in elevation_steps)
  if (isinstance(elevation_range, (str, bytes)) or not isinstance(elevation_range, Sequence)
      or len(elevation_range) != 2 or not all(
          not isinstance(v, bool) and isinstance(v, numbers.Real) and np.isfinite(v)
          for v in elevation_range) or not elevation_range[0] < elevation_range[1]):
    raise ValueError(f'elevation_range={elevation_range!r}: expected (low, high) degrees with '
                     'low < high.')
  low, high = float(elevation_range[0]), float(elevation_range[1])
  needed = (_TIME_SPAN[1] - _TIME_SPAN[0]) * max(abs(v) for v in steps)
  if high - low < needed:
    raise ValueError(f'elevation_range={elevation_range!r}: expected a span of at least {needed} '
                     f'degrees, what elevation_steps={elevation_steps!r} travel over t in '
                     f'{list(_TIME_SPAN)}.')
  return steps, (low, high)


def _example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  # fold_in by index rather than split(key, n): row i then does not depend on the batch size.
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


def _pick(draw: jax.Array, options: jax.Array) -> jax.Array:
  """The option at a uniform `draw` in [0, 1): each equally likely."""
  count = options.shape[0]
  return options[jnp.minimum(jnp.floor(draw * count).astype(jnp.int32), count - 1)]


def sample_trajectories(key: jax.Array, indices: jax.Array, *, instances: Sequence[int],
                        skip: bool, azimuth_step: float, elevation_steps: Sequence[float],
                        elevation_range: tuple[float, float]) -> dict[str, jax.Array]:
  """Draws the trajectories numbered `indices` of the stream of `key`; pure and jit-able.

  Args:
    key: a JAX random key.
    indices: `[n]` integers; trajectory `i` depends only on `key` and `i`.
    instances: the instances to draw from (`toys.TRAIN_INSTANCES` or `toys.TEST_INSTANCES`).
    skip: whether the third frame skips one step with probability 1/2.
    azimuth_step: degrees per frame; the azimuth velocity is `+-azimuth_step`.
    elevation_steps: the elevation velocities, degrees per frame, equally likely.
    elevation_range: `(low, high)` degrees the elevation stays in for `t` in [0, 4].

  Returns:
    `[n]` arrays: `'category'`, `'instance'`, `'light'`, `'skip'` (int32, `skip` 0 or 1) and
    `'azimuth'`, `'elevation'` (the pose at `t = 1`, degrees), `'azimuth_velocity'`,
    `'elevation_velocity'` (degrees per frame) (float32).
  """
  instance_options = jnp.asarray(instances, jnp.int32)
  step_options = jnp.asarray(elevation_steps, jnp.float32)
  low, high = elevation_range
  first, last = _TIME_SPAN

  def one(row_key):
    u = jax.random.uniform(row_key, (_NUM_DRAWS,))
    elevation_velocity = _pick(u[5], step_options)
    # Offsets from the start over the span are (t - 1) * v for t in [first, last].
    offsets = jnp.stack([(first - 1) * elevation_velocity, (last - 1) * elevation_velocity])
    lowest, highest = low - jnp.min(offsets), high - jnp.max(offsets)
    return {
        'category': _pick(u[0], jnp.arange(toys.NUM_CATEGORIES, dtype=jnp.int32)),
        'instance': _pick(u[1], instance_options),
        'light': _pick(u[2], jnp.arange(toys.NUM_LIGHTS, dtype=jnp.int32)),
        'azimuth': 360.0 * u[3],
        'azimuth_velocity': jnp.where(u[4] < 0.5, -azimuth_step, azimuth_step).astype(jnp.float32),
        'elevation': lowest + u[6] * (highest - lowest),
        'elevation_velocity': elevation_velocity,
        'skip': ((u[7] < 0.5) & skip).astype(jnp.int32),
    }

  return jax.vmap(one)(_example_keys(key, jnp.asarray(indices)))


def poses(trajectories: dict[str, Any], times: Any) -> tuple[Any, Any]:
  """Azimuths and elevations at `times`: `start + (t - 1) * velocity`.

  Args:
    trajectories: `[n]` arrays of `sample_trajectories` (numpy or JAX).
    times: `[T]` or `[n, T]` times.

  Returns:
    `(azimuths, elevations)`, `[n, T]` degrees each.
  """
  xp = jnp if isinstance(trajectories['azimuth'], jax.Array) else np
  steps = xp.broadcast_to(xp.asarray(times, xp.float32) - 1,
                          (trajectories['azimuth'].shape[0], np.shape(times)[-1]))
  return (trajectories['azimuth'][:, None] + steps * trajectories['azimuth_velocity'][:, None],
          trajectories['elevation'][:, None] + steps * trajectories['elevation_velocity'][:, None])


def triplet_times(trajectories: dict[str, Any]) -> Any:
  """`[n, 3]` times of a triplet's frames: `1, 2, 3 + skip`."""
  xp = jnp if isinstance(trajectories['skip'], jax.Array) else np
  skip = trajectories['skip'].astype(xp.float32)
  return xp.stack([xp.ones_like(skip), 2 * xp.ones_like(skip), 3 + skip], axis=-1)


def render_trajectories(trajectories: dict[str, jax.Array], times: jax.Array, *, size: int,
                        color: bool = False, supersample: int = 1) -> jax.Array:
  """Renders each trajectory at its times; jit-able (bind the keyword arguments).

  Args:
    trajectories: `[n]` arrays of `sample_trajectories`.
    times: `[T]` or `[n, T]` times.
    size: `S`, the side of the frames, pixels.
    color: RGB frames, or one gray channel.
    supersample: rays per pixel along each axis (see `toys.render`).

  Returns:
    `[n, T, S, S, C]` float32 in [-1, 1].
  """
  azimuth, elevation = poses(trajectories, times)
  count, length = azimuth.shape

  def per_frame(name):
    return jnp.repeat(jnp.asarray(trajectories[name]), length)

  frames = toys.render_batch(per_frame('category'), per_frame('instance'),
                             jnp.reshape(azimuth, -1), jnp.reshape(elevation, -1),
                             per_frame('light'), size=size, color=color,
                             supersample=supersample)
  return frames.reshape(count, length, *frames.shape[1:])


def _render_on_host(trajectories: dict[str, np.ndarray], times: np.ndarray, *, size: int,
                    supersample: int) -> np.ndarray:
  """`render_trajectories` in chunks of `_TEST_CHUNK` images (one compiled program for any
  count), returned as a read-only numpy array."""
  azimuth, elevation = poses(trajectories, times)
  count, length = azimuth.shape
  flat = {name: np.repeat(np.asarray(trajectories[name]), length)
          for name in ('category', 'instance', 'light')}
  flat['azimuth'], flat['elevation'] = azimuth.reshape(-1), elevation.reshape(-1)
  total = count * length
  padded = -(-total // _TEST_CHUNK) * _TEST_CHUNK
  # Pad with copies of the first frame; the extra renders are dropped.
  flat = {name: np.concatenate([value, np.repeat(value[:1], padded - total)])
          for name, value in flat.items()}
  chunks = [np.asarray(toys.render_batch(
      *(flat[name][start:start + _TEST_CHUNK]
        for name in ('category', 'instance', 'azimuth', 'elevation', 'light')), size=size,
      supersample=supersample))
            for start in range(0, padded, _TEST_CHUNK)]
  frames = np.concatenate(chunks)[:total]
  frames = frames.reshape(count, length, *frames.shape[1:])
  frames.setflags(write=False)
  return frames


class RotationTriplets(base.ClipLengths, base.VideoDataset):
  """Triplets of grayscale frames of NORB-like toys rotating at constant speed (3.3.2-3.3.3).

  `train_batch(step)` is `{'frames': [B, 3, S, S, 1], 'skip': [B] int32}`, training instances
  only; `test_batches` yields the fixed test set of `num_test` triplets of the test instances;
  `test_trajectories(num)` renders the first test trajectories at `INTERPOLATION_TIMES`. Frames
  are rendered with `supersample**2` rays per pixel (`toys.render`). The arguments are described
  in the module docstring and `sample_trajectories`.
  """

  def __init__(self, seed: int, batch_size: int, sharding: jax.sharding.Sharding, *,
               image_size: int = 32, skip: bool = False, azimuth_step: float = 20.0,
               elevation_steps: Sequence[float] = (-5.0, 0.0, 5.0),
               elevation_range: tuple[float, float] = (30.0, 70.0), num_test: int = 256,
               supersample: int = 1):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
      raise ValueError(f'seed={seed!r}: expected an integer.')
    _check_positive(batch_size=batch_size, image_size=image_size, num_test=num_test,
                    supersample=supersample)
    if not isinstance(skip, (bool, np.bool_)):
      raise ValueError(f'skip={skip!r}: expected a bool.')
    azimuth_step = _check_real('azimuth_step', azimuth_step, minimum=0.0)
    elevation_steps, elevation_range = _check_elevations(elevation_steps, elevation_range)
    if not isinstance(sharding, jax.sharding.Sharding):
      raise ValueError(f'sharding={sharding!r}: expected a jax.sharding.Sharding.')
    try:
      sharding.shard_shape((batch_size, 3, image_size, image_size, 1))
    except ValueError as error:
      raise ValueError(f'batch_size={batch_size}: the sharding cannot split it ({error}).'
                       ) from None
    if batch_size % jax.process_count():
      raise ValueError(f'batch_size={batch_size}: expected a multiple of the process count '
                       f'{jax.process_count()}.')

    self.batch_size = int(batch_size)
    self.image_size = int(image_size)
    self.channels = 1
    self.skip = bool(skip)
    self.azimuth_step = azimuth_step
    self.elevation_steps = elevation_steps
    self.elevation_range = elevation_range
    self.num_test = int(num_test)
    self.supersample = int(supersample)
    self.sharding = sharding
    self._num_input_frames, self._test_future_frames = 2, 1
    self.train_key, self.test_key = jax.random.split(jax.random.key(seed))
    sample = functools.partial(
        sample_trajectories, skip=self.skip, azimuth_step=azimuth_step,
        elevation_steps=elevation_steps, elevation_range=elevation_range)
    self._sample_train = functools.partial(sample, instances=toys.TRAIN_INSTANCES)
    self._sample_test = functools.partial(sample, instances=toys.TEST_INSTANCES)
    local_rows = self.batch_size // jax.process_count()
    self._local_indices = np.arange(local_rows) + jax.process_index() * local_rows
    self._train_fn = jax.jit(self._local_train_batch)
    self._train_params_fn = jax.jit(self._train_params)
    self._test_params: dict[str, np.ndarray] | None = None
    self._test_frames: np.ndarray | None = None

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> RotationTriplets:
    """Builds the dataset from a config.

    Reads `seed`, `batch_size`, `image_size`, `skip` and `num_test_clips` (as `num_test`) and, if
    present, `azimuth_step`, `elevation_steps`, `elevation_range` and `supersample`.
    """
    return cls(config.seed, config.batch_size, sharding, image_size=config.image_size,
               skip=config.skip, num_test=config.num_test_clips,
               azimuth_step=getattr(config, 'azimuth_step', 20.0),
               elevation_steps=tuple(getattr(config, 'elevation_steps', (-5.0, 0.0, 5.0))),
               elevation_range=tuple(getattr(config, 'elevation_range', (30.0, 70.0))),
               supersample=getattr(config, 'supersample', 1))

  def _train_params(self, step: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
    return self._sample_train(jax.random.fold_in(self.train_key, step), indices)

  def _local_train_batch(self, step: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
    trajectories = self._train_params(step, indices)
    frames = render_trajectories(trajectories, triplet_times(trajectories),
                                 size=self.image_size, supersample=self.supersample)
    return {'frames': frames, 'skip': trajectories['skip']}

  def train_params(self, step: int) -> dict[str, np.ndarray]:
    """The trajectories of the global batch of `step`: `[B]` arrays of `sample_trajectories`."""
    base.check_step(step)
    return jax.device_get(self._train_params_fn(np.uint32(step), np.arange(self.batch_size)))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step`: `{'frames': [B, 3, S, S, 1], 'skip': [B] int32}`, sharded.

    `'skip'` is 1 where the third frame is at `t = 4` rather than 3 (always 0 without `skip`).
    """
    base.check_step(step)
    local = jax.device_get(self._train_fn(np.uint32(step), self._local_indices))
    return base.make_global_batch(local, self.sharding)

  @property
  def test_params(self) -> dict[str, np.ndarray]:
    """The test set's trajectories: `[num_test]` arrays of `sample_trajectories`."""
    if self._test_params is None:
      params = jax.device_get(jax.jit(self._sample_test)(self.test_key,
                                                         np.arange(self.num_test)))
      for value in params.values():
        value.setflags(write=False)
      self._test_params = params
    return self._test_params

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields the fixed test set in order, rendering it on first use.

    Each batch is `{'frames': [b, 3, S, S, 1], 'skip': [b]}` with `b <= batch_size`; the arrays
    are read-only views.
    """
    _check_positive(batch_size=batch_size)
    params = self.test_params
    if self._test_frames is None:
      self._test_frames = _render_on_host(params, triplet_times(params), size=self.image_size,
                                          supersample=self.supersample)
    for start in range(0, self.num_test, batch_size):
      yield {'frames': self._test_frames[start:start + batch_size],
             'skip': params['skip'][start:start + batch_size]}

  def test_trajectories(self, num: int) -> np.ndarray:
    """The first `num` test trajectories at `INTERPOLATION_TIMES` (t = 0, 1/2, ..., 3), without
    the skip: the ground truth of the interpolation figures 3.5-3.7.

    Returns:
      `[num, 7, S, S, 1]` float32 in [-1, 1], read-only; `[:, 2::2]` are the frames at t = 1, 2, 3.
    """
    _check_positive(num=num)
    if num > self.num_test:
      raise ValueError(f'num={num}: expected at most num_test ({self.num_test}).')
    params = {name: value[:num] for name, value in self.test_params.items()}
    return _render_on_host(params, np.asarray(INTERPOLATION_TIMES, np.float32),
                           size=self.image_size, supersample=self.supersample)
