"""`rigid_triplets`: frame triplets made by rigidly moving still photographs (thesis 3.3.1).

The shallow phase-pooling architectures of chapter 3 train on triplets `{x1 = A_{1/3} x,
x2 = A_{2/3} x, y = A_1 x}`, where `x` is a still frame and `A_tau` a random rigid transformation
(translation, scale, rotation) followed from the identity at `tau = 0` to its full extent at
`tau = 1`. The stills here are `image_size` crops of the natural photographs bundled with
scikit-image (`moving_photos.PHOTO_NAMES`, loaded by `moving_photos.load_photos`).

Geometry. Coordinates are `(y, x)` = (row, column) in pixels, rows growing downwards; a crop's
centre is `c = (image_size - 1) / 2` in its own coordinates. A `RigidTransform` `(dy, dx,
log_scale, angle)` moves the content at offset `p` from the crop centre to

    A(p) = exp(log_scale) R(angle) p + (dy, dx),   R(a) = [[cos a, -sin a], [sin a, cos a]],

so a positive `dx` moves the content right, a positive `log_scale` enlarges it, and a positive
`angle` (radians) turns it counterclockwise on screen. `A_tau` scales every parameter by `tau`:
translation `tau (dy, dx)`, scale `exp(tau log_scale)`, angle `tau angle`; the crop centre thus
travels in a straight line at constant speed while scale and angle change at constant rates.
A frame samples the photo at `A_tau^{-1}` of each of its pixels with bilinear interpolation
(`jax.scipy.ndimage.map_coordinates`, order 1).

Ranges. Each example draws its photo uniformly, `dy` and `dx` uniformly in `[-max_translation,
max_translation]` (default 4 pixels), `log_scale` uniformly in `[-max_log_scale, max_log_scale]`
(default `log 1.25`: scales in [0.8, 1.25]) and `angle` uniformly in `[-max_rotation,
max_rotation]` (default 30 degrees), then an integer crop position among those for which every
point sampled for any `tau` in [0, 1] lies inside the photo: with `T = max_translation` and
`L = max_log_scale`, no sampled point is farther than `sqrt(2) (c + T) exp(L)` from the crop
centre. Photos are `PHOTO_SIZE` pixels wide, or wider when `required_photo_size` asks for it.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import images
from uncertainty_jax.data.moving_photos import PHOTO_NAMES
from uncertainty_jax.data.moving_photos import PHOTO_SIZE
from uncertainty_jax.data.moving_photos import _example_keys
from uncertainty_jax.data.moving_photos import _render_in_chunks
from uncertainty_jax.data.moving_photos import load_photos

DEFAULT_IMAGE_SIZE = 32
DEFAULT_CHANNELS = 3
DEFAULT_NUM_TEST = 256
DEFAULT_MAX_TRANSLATION = 4.0
DEFAULT_MAX_LOG_SCALE = math.log(1.25)
DEFAULT_MAX_ROTATION = math.pi / 6
# The triplet (x1, x2, y) of section 3.3.1.
TRIPLET_TAUS = (1 / 3, 2 / 3, 1.0)
# Temporal indices of the interpolation figures (3.3.2): frames t = 1, 2, 3 are the triplet.
TRAJECTORY_TIMES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
# Keeps sampled points off the photos' last row and column despite float rounding.
_MARGIN = 1e-3


class RigidTransform(NamedTuple):
  """A rigid transformation about the crop centre; fields broadcast together (`[...]` each).

  Attributes:
    dy: vertical translation, pixels (positive moves the content down).
    dx: horizontal translation, pixels (positive moves the content right).
    log_scale: natural log of the scale factor (positive enlarges the content).
    angle: rotation, radians, counterclockwise on screen.
  """
  dy: Any
  dx: Any
  log_scale: Any
  angle: Any

  def at(self, tau: Any) -> RigidTransform:
    """`A_tau`: the identity at `tau = 0`, this transform at `tau = 1`, every parameter linear
    in `tau` (values beyond [0, 1] extrapolate the same motion)."""
    return RigidTransform(self.dy * tau, self.dx * tau, self.log_scale * tau, self.angle * tau)


def _is_int(value: Any) -> bool:
  return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def _check_positive_int(name: str, value: Any) -> int:
  if not _is_int(value) or value < 1:
    raise ValueError(f'{name}={value!r}: expected a positive integer.')
  return int(value)


def _check_ranges(max_translation: Any, max_log_scale: Any, max_rotation: Any
                  ) -> tuple[float, float, float]:
  bounds = {'max_translation': (max_translation, math.inf, 'a finite number >= 0'),
            'max_log_scale': (max_log_scale, math.inf, 'a finite number >= 0'),
            'max_rotation': (max_rotation, math.pi, 'a number of radians in [0, pi]')}
  for name, (value, high, accepted) in bounds.items():
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
        or not 0 <= value <= high or not math.isfinite(value)):
      raise ValueError(f'{name}={value!r}: expected {accepted}.')
  return float(max_translation), float(max_log_scale), float(max_rotation)


def _sample_radius(image_size: int, max_translation: float, max_log_scale: float) -> float:
  """The farthest any point sampled for `tau` in [0, 1] lies from the crop centre, pixels.

  A pixel at offset `q` samples `A_tau^{-1}(q) = R(-a) (q - tau t) / s_tau` with `|q| <= sqrt(2) c`,
  `|tau t| <= sqrt(2) T` and `1 / s_tau <= exp(L)`.
  """
  half = (image_size - 1) / 2
  return math.sqrt(2) * (half + max_translation) * math.exp(max_log_scale)


def _crop_start_range(photo_size: int, image_size: int, max_translation: float,
                      max_log_scale: float) -> tuple[int, int]:
  """`(low, high)`: the integer crop starts (top or left) keeping every sample in the photo."""
  radius = _sample_radius(image_size, max_translation, max_log_scale) + _MARGIN
  half = (image_size - 1) / 2
  return math.ceil(radius - half), math.floor(photo_size - 1 - radius - half)


def required_photo_size(image_size: int, max_translation: float = DEFAULT_MAX_TRANSLATION,
                        max_log_scale: float = DEFAULT_MAX_LOG_SCALE) -> int:
  """The smallest photo side with at least one crop position whose samples stay inside it."""
  image_size = _check_positive_int('image_size', image_size)
  max_translation, max_log_scale, _ = _check_ranges(max_translation, max_log_scale, 0.0)
  low, _ = _crop_start_range(0, image_size, max_translation, max_log_scale)
  radius = _sample_radius(image_size, max_translation, max_log_scale) + _MARGIN
  return math.ceil(low + 1 + radius + (image_size - 1) / 2)


def sample_examples(key: jax.Array, indices: jax.Array, *, num_photos: int, photo_size: int,
                    image_size: int, max_translation: float = DEFAULT_MAX_TRANSLATION,
                    max_log_scale: float = DEFAULT_MAX_LOG_SCALE,
                    max_rotation: float = DEFAULT_MAX_ROTATION) -> dict[str, Any]:
  """Draws the photo, crop and transform of examples `indices`; row `i` depends only on `key`
  and `indices[i]`.

  Args:
    key: a typed PRNG key.
    indices: `[N]` integer example indices.
    num_photos: photos to choose from.
    photo_size: side of the square photos.
    image_size: side of the square frames.
    max_translation, max_log_scale, max_rotation: the ranges of the module doc.

  Returns:
    `{'photo': [N] int32, 'top': [N] int32, 'left': [N] int32, 'transform': RigidTransform}` with
    `[N]` float32 fields: the untransformed crop is `photos[photo, top:top + S, left:left + S]`.
  """
  max_translation, max_log_scale, max_rotation = _check_ranges(
      max_translation, max_log_scale, max_rotation)
  num_photos = _check_positive_int('num_photos', num_photos)
  low, high = _crop_start_range(photo_size, image_size, max_translation, max_log_scale)
  if high < low:
    needed = required_photo_size(image_size, max_translation, max_log_scale)
    raise ValueError(f'photo_size={photo_size!r}: these ranges need photos of at least '
                     f'{needed}x{needed}.')

  def one(example_key):
    # One random call per example: each threefry call compiles separately.
    u = jax.random.uniform(example_key, (7,))

    def integer(value, start, count):
      return jnp.minimum(start + jnp.floor(value * count), start + count - 1).astype(jnp.int32)

    transform = RigidTransform(dy=max_translation * (2 * u[3] - 1),
                               dx=max_translation * (2 * u[4] - 1),
                               log_scale=max_log_scale * (2 * u[5] - 1),
                               angle=max_rotation * (2 * u[6] - 1))
    return {'photo': integer(u[0], 0, num_photos),
            'top': integer(u[1], low, high - low + 1),
            'left': integer(u[2], low, high - low + 1),
            'transform': transform}

  return jax.vmap(one)(_example_keys(key, jnp.asarray(indices)))


def render_frames(photo: jax.Array, top: jax.Array, left: jax.Array, transform: RigidTransform,
                  taus: jax.Array, *, image_size: int) -> jax.Array:
  """Frames `A_tau x` of one crop for each `tau`, bilinearly sampled from `photo`.

  Points sampled outside the photo take the nearest edge value; `sample_examples` chooses crops
  for which that never happens when `tau` is in [0, 1].

  Args:
    photo: `[H, W, C]`.
    top, left: scalars, the photo pixel of the untransformed crop's first row and column.
    transform: a `RigidTransform` of scalars.
    taus: `[T]` positions along the motion.
    image_size: `S`, side of the frames.

  Returns:
    `[T, S, S, C]`, same dtype as `photo`.
  """
  half = (image_size - 1) / 2
  offsets = jnp.arange(image_size, dtype=jnp.float32) - half
  qy, qx = jnp.meshgrid(offsets, offsets, indexing='ij')
  centre_y = jnp.asarray(top, jnp.float32) + half
  centre_x = jnp.asarray(left, jnp.float32) + half

  def frame(tau):
    step = transform.at(tau)
    inverse_scale = jnp.exp(-step.log_scale)
    cos, sin = jnp.cos(step.angle), jnp.sin(step.angle)
    ry, rx = qy - step.dy, qx - step.dx
    # R(a)^{-1} = R(-a) = [[cos, sin], [-sin, cos]].
    source_y = centre_y + inverse_scale * (cos * ry + sin * rx)
    source_x = centre_x + inverse_scale * (cos * rx - sin * ry)
    sample = functools.partial(jax.scipy.ndimage.map_coordinates,
                               coordinates=[source_y, source_x], order=1, mode='nearest')
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(photo)

  return jax.vmap(frame)(jnp.asarray(taus, jnp.float32))


def render_examples(key: jax.Array, indices: jax.Array, photos: jax.Array, taus: jax.Array, *,
                    image_size: int, max_translation: float = DEFAULT_MAX_TRANSLATION,
                    max_log_scale: float = DEFAULT_MAX_LOG_SCALE,
                    max_rotation: float = DEFAULT_MAX_ROTATION) -> jax.Array:
  """Examples `indices` drawn by `sample_examples`, rendered at `taus`.

  Args:
    key: a typed PRNG key.
    indices: `[N]` integer example indices.
    photos: `[P, H, H, C]`.
    taus: `[T]` positions along the motion.
    image_size: `S`.
    max_translation, max_log_scale, max_rotation: the ranges of the module doc.

  Returns:
    `[N, T, S, S, C]`, clipped to [-1, 1].
  """
  examples = sample_examples(key, indices, num_photos=photos.shape[0], photo_size=photos.shape[1],
                             image_size=image_size, max_translation=max_translation,
                             max_log_scale=max_log_scale, max_rotation=max_rotation)

  def one(photo, top, left, transform):
    frames = render_frames(photos[photo], top, left, transform, taus, image_size=image_size)
    # Bilinear weights summing to 1 + ulp can step a hair outside the photos' [-1, 1].
    return jnp.clip(frames, -1.0, 1.0)

  return jax.vmap(one)(examples['photo'], examples['top'], examples['left'],
                       examples['transform'])


def _rows_at_step(render, train_key: jax.Array, step: jax.Array, indices: jax.Array,
                  photos: jax.Array, taus: jax.Array) -> jax.Array:
  return render(jax.random.fold_in(train_key, step), indices, photos, taus)


class RigidTriplets(base.VideoDataset):
  """Triplets `(A_{1/3} x, A_{2/3} x, A_1 x)` of rigidly moving photo crops (see the module doc).

  Training batches are a pure function of `(seed, step)`: row `i` of step `s` is example `i` of
  a key folded from the training key and `s`, so it does not depend on the batch size or on the
  process count; each process renders its own rows. The test set is `num_test` examples of a
  separate key derived from `seed`. With only seven photographs none can be held out, so test
  triplets are new crops and motions of the same photos.

  Args:
    seed: integer seed of the training and test keys.
    batch_size: global training batch size `B`, a multiple of the process count that the
      sharding can split.
    sharding: the sharding of training batches (batch axis first).
    image_size: `S`, side of the square frames.
    channels: 3 for RGB, or 1 for the mean of the RGB channels.
    num_test: examples in the test set.
    max_translation: bound of each translation component, pixels.
    max_log_scale: bound of the log of the scale factor.
    max_rotation: bound of the rotation angle, radians, at most pi.
  """

  num_input_frames = 2

  def __init__(self, seed: int, batch_size: int, sharding: jax.sharding.Sharding, *,
               image_size: int = DEFAULT_IMAGE_SIZE, channels: int = DEFAULT_CHANNELS,
               num_test: int = DEFAULT_NUM_TEST,
               max_translation: float = DEFAULT_MAX_TRANSLATION,
               max_log_scale: float = DEFAULT_MAX_LOG_SCALE,
               max_rotation: float = DEFAULT_MAX_ROTATION):
    if not _is_int(seed):
      raise ValueError(f'seed={seed!r}: expected an integer.')
    self.image_size = _check_positive_int('image_size', image_size)
    if not _is_int(channels) or channels not in (1, 3):
      raise ValueError(f'channels={channels!r}: expected 1 (grayscale) or 3 (RGB).')
    self.channels = int(channels)
    self.num_test = _check_positive_int('num_test', num_test)
    self.max_translation, self.max_log_scale, self.max_rotation = _check_ranges(
        max_translation, max_log_scale, max_rotation)
    sample_shape = (len(TRIPLET_TAUS), self.image_size, self.image_size, self.channels)
    self._local_batch = images.check_batch_sharding(batch_size, sharding, sample_shape)
    self.batch_size = int(batch_size)
    self.sharding = sharding
    self.seed = int(seed)

    self.photo_size = max(PHOTO_SIZE, required_photo_size(
        self.image_size, self.max_translation, self.max_log_scale))
    photos = load_photos(self.photo_size)
    if self.channels == 1:
      photos = photos.mean(axis=-1, keepdims=True)
    self._photos = jnp.asarray(photos)
    self.train_key, self.test_key = jax.random.split(jax.random.key(seed))
    self._render = functools.partial(
        render_examples, image_size=self.image_size, max_translation=self.max_translation,
        max_log_scale=self.max_log_scale, max_rotation=self.max_rotation)
    self._train_fn = jax.jit(functools.partial(_rows_at_step, self._render))
    self._test_fn = jax.jit(functools.partial(self._render, self.test_key))
    self._triplet_taus = np.asarray(TRIPLET_TAUS, np.float32)
    self._test_frames: np.ndarray | None = None

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> RigidTriplets:
    """Builds the dataset from a config.

    Reads `seed`, `batch_size`, `image_size`, `channels` and `num_test_clips` (the constructor's
    `num_test`), and, if present, `max_translation`, `max_log_scale` and `max_rotation`.
    """
    return cls(config.seed, config.batch_size, sharding, image_size=config.image_size,
               channels=config.channels, num_test=config.num_test_clips,
               max_translation=getattr(config, 'max_translation', DEFAULT_MAX_TRANSLATION),
               max_log_scale=getattr(config, 'max_log_scale', DEFAULT_MAX_LOG_SCALE),
               max_rotation=getattr(config, 'max_rotation', DEFAULT_MAX_ROTATION))

  @property
  def clip_length(self) -> int:
    """`T` of a training clip: the two input frames and the one to predict."""
    return len(TRIPLET_TAUS)

  @property
  def test_clip_length(self) -> int:
    """`T_test` of a test clip: a triplet too."""
    return len(TRIPLET_TAUS)

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step`.

    Returns:
      `{'frames': [B, 3, S, S, C] float32 in [-1, 1], 'skip': [B] int32}`, global arrays sharded
      with the dataset's sharding. `'skip'` is all zeros: no frame is skipped (the frame-skip
      variant of section 3.3.3 sets it to 1 where `y` is one step further).
    """
    base.check_step(step)
    first = jax.process_index() * self._local_batch
    indices = np.arange(first, first + self._local_batch, dtype=np.int32)
    frames = self._train_fn(self.train_key, np.uint32(step), indices, self._photos,
                            self._triplet_taus)
    local = {'frames': jax.device_get(frames), 'skip': np.zeros(self._local_batch, np.int32)}
    return base.make_global_batch(local, self.sharding)

  def _render_test(self, num: int, taus: np.ndarray) -> np.ndarray:
    """`[num, T, S, S, C]` read-only: test examples `0..num-1` rendered at `taus`."""
    taus = np.asarray(taus, np.float32)
    render = lambda indices, photos: {'frames': self._test_fn(indices, photos, taus)}
    return _render_in_chunks(render, self._photos, num)['frames']

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields the fixed test set in order, rendering it on first use.

    Each batch holds `b <= batch_size` triplets as read-only arrays: `'frames' [b, 3, S, S, C]`
    and `'skip' [b]` int32 zeros.
    """
    batch_size = _check_positive_int('batch_size', batch_size)
    if self._test_frames is None:
      self._test_frames = self._render_test(self.num_test, self._triplet_taus)
    for start in range(0, self.num_test, batch_size):
      frames = self._test_frames[start:start + batch_size]
      skip = np.zeros(len(frames), np.int32)
      skip.setflags(write=False)
      yield {'frames': frames, 'skip': skip}

  def test_trajectories(self, num: int) -> np.ndarray:
    """The first `num` test examples at the temporal indices of the interpolation figures.

    Frame `k` is `A_tau x` at `tau = t / 3` for `t = TRAJECTORY_TIMES[k]` (0, 1/2, ..., 3): frames
    `t = 1, 2, 3` are the test triplet, `t = 0` is the untransformed crop, and the half-integer
    indices lie halfway along the same motion. They are the ground truth for frames decoded from
    codes interpolated (and, before `t = 1` and after `t = 2`, extrapolated) from the codes of
    the two input frames.

    Args:
      num: trajectories, at most `num_test`.

    Returns:
      `[num, 7, S, S, C]` float32 in [-1, 1], read-only.
    """
    num = _check_positive_int('num', num)
    if num > self.num_test:
      raise ValueError(f'num={num}: expected at most num_test ({self.num_test}).')
    return self._render_test(num, np.asarray(TRAJECTORY_TIMES, np.float64) / 3)


def from_config(config: Any, sharding: jax.sharding.Sharding) -> RigidTriplets:
  """`RigidTriplets.from_config`: the dataset factory of a `(module, 'from_config')` registry."""
  return RigidTriplets.from_config(config, sharding)


__all__ = ['DEFAULT_MAX_LOG_SCALE', 'DEFAULT_MAX_ROTATION', 'DEFAULT_MAX_TRANSLATION',
           'PHOTO_NAMES', 'RigidTransform', 'RigidTriplets', 'TRAJECTORY_TIMES', 'TRIPLET_TAUS',
           'from_config', 'render_examples', 'render_frames', 'required_photo_size',
           'sample_examples']
