"""`multimodal_photos`: an embedded video dataset whose next frame is genuinely uncertain.

Each clip shows one object cut from a photograph (those of `moving_photos`) sliding at constant
velocity over a static photographic background for the `m = num_input_frames` input frames. At
frame `m`, the first frame to predict, the object takes one of the `CONTINUATIONS`, drawn with
known probabilities, and keeps its new velocity afterwards:

* 'keep_going': the same velocity;
* 'turn_left' / 'turn_right': the velocity rotated by 90 degrees to the left / right as seen on
  the screen (rows grow downwards, so a rightward object turning left goes up);
* 'stop': zero velocity.

The inputs say nothing about which continuation comes, so the best a predictor can do is to know
all of them and their probabilities. That makes the data a probe of section 4.4: a model trained
with a pixel loss predicts the probability-weighted average of the futures, a blur, while an
adversarial model predicts sharp frames but may collapse onto one mode (see
`uncertainty_jax.evaluation.modes`).

Objects are ellipses, disks or rotated rounded rectangles with one-pixel anti-aliased edges and
bilinearly sampled photo textures, drawn exactly as `moving_photos` draws them. Their extent and
speed are in pixels, tied to the training patch (`image_size`), so an object looks the same in a
training patch and in a larger test frame; speeds of 2-4 pixels per frame make the futures differ
clearly at frame `m`. Everything is a pure, jit-able function of a key.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import moving_photos as mp
# The renderer's building blocks, shared so that both datasets draw objects the same way.
from uncertainty_jax.data.moving_photos import _MARGIN
from uncertainty_jax.data.moving_photos import _NUM_SHAPES
from uncertainty_jax.data.moving_photos import _Uniforms
from uncertainty_jax.data.moving_photos import _check_positive
from uncertainty_jax.data.moving_photos import _render_in_chunks
from uncertainty_jax.data.moving_photos import _example_keys
from uncertainty_jax.data.moving_photos import _replicated
from uncertainty_jax.data.moving_photos import _sample_window
from uncertainty_jax.data.moving_photos import _signed_distance
from uncertainty_jax.data.moving_photos import _train_at_step

CONTINUATIONS = ('keep_going', 'turn_left', 'turn_right', 'stop')
KEEP_GOING, TURN_LEFT, TURN_RIGHT, STOP = range(len(CONTINUATIONS))
DEFAULT_MODE_PROBS = (0.4, 0.2, 0.2, 0.2)
# The object's extent along each of its axes, as a fraction of `image_size`.
OBJECT_SIZE = (0.25, 0.4)
# The object's speed before (and, unless it stops, after) the branch, pixels per frame.
OBJECT_SPEED = (2.0, 4.0)
# Tolerance on the sum of `mode_probs`.
_PROB_TOLERANCE = 1e-6


def required_photo_size(frame_size: int, num_input_frames: int, num_future_frames: int) -> int:
  """The smallest photo side that fits a frame plus all the object's texture travels over.

  Along an axis, the centre of the object spans at most `(m - 1) v` before the branch and `2 F v`
  after it (left and right turns go opposite ways), with `v` the top speed.
  """
  travel = OBJECT_SPEED[1] * (num_input_frames - 1 + 2 * num_future_frames)
  return frame_size + 2 + math.ceil(travel)


def check_mode_probs(mode_probs: Sequence[float]) -> tuple[float, ...]:
  """Validates the continuations' probabilities; returns them as a tuple of floats.

  Raises:
    ValueError: unless `mode_probs` holds `len(CONTINUATIONS)` finite nonnegative numbers summing
      to 1.
  """
  try:
    probs = np.asarray(mode_probs, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError(f'mode_probs={mode_probs!r}: expected {len(CONTINUATIONS)} probabilities '
                     f'for {CONTINUATIONS}.') from None
  if (probs.shape != (len(CONTINUATIONS),) or not np.all(np.isfinite(probs))
      or np.any(probs < 0) or abs(probs.sum() - 1) > _PROB_TOLERANCE):
    raise ValueError(f'mode_probs={mode_probs!r}: expected {len(CONTINUATIONS)} nonnegative '
                     f'probabilities summing to 1, for {CONTINUATIONS}.')
  return tuple(float(p) for p in probs)


def _mode_thresholds(mode_probs: tuple[float, ...]) -> np.ndarray:
  """`[K]` thresholds: a uniform `u` in [0, 1) picks `sum(u >= thresholds)`.

  The cumulative probabilities, with every entry from the last positive probability on raised
  above 1, so rounding can never pick a mode of probability 0: a zero entry repeats the
  threshold before it exactly, and nothing comes after the last positive one.
  """
  thresholds = np.cumsum(np.asarray(mode_probs, np.float64))
  last = int(np.flatnonzero(np.asarray(mode_probs) > 0)[-1])
  thresholds[last:] = 2.0
  return thresholds.astype(np.float32)


def _continuation_velocities(velocity: jax.Array) -> jax.Array:
  """`[K, 2]` velocities `(dy, dx)` after the branch, in `CONTINUATIONS` order, from `[2]`."""
  dy, dx = velocity[0], velocity[1]
  return jnp.stack([
      velocity,
      jnp.stack([-dx, dy]),  # turn_left: (0, 1) (right) becomes (-1, 0) (up)
      jnp.stack([dx, -dy]),  # turn_right: (0, 1) becomes (1, 0) (down)
      jnp.zeros_like(velocity),
  ])


def _relative_centres(velocity: jax.Array, *, num_input_frames: int, num_frames: int
                      ) -> jax.Array:
  """`[K, T, 2]` object centres relative to its centre in the last input frame `m - 1`.

  Frame `t < m` is at `v (t - (m - 1))` whatever the continuation; frame `t >= m` is at
  `v_k (t - (m - 1))`, with `v_k` the velocity of continuation `k`.
  """
  steps = jnp.arange(num_frames, dtype=jnp.float32) - (num_input_frames - 1)  # [T]
  after = _continuation_velocities(velocity)[:, None, :] * steps[None, :, None]  # [K, T, 2]
  before = velocity * steps[:, None]  # [T, 2]
  return jnp.where((steps > 0)[None, :, None], after, before[None])


def _sample_scene(key: jax.Array, *, num_input_frames: int, num_frames: int, frame_size: int,
                  object_scale: int, num_photos: int, photo_size: int,
                  thresholds: np.ndarray) -> dict[str, jax.Array]:
  """One clip's parameters, for clips of `num_frames` frames of `frame_size`.

  The object's centre in the last input frame is placed so that its centres over the clip, under
  every continuation, lie in the middle half of the frame when they fit there (centred on the
  frame when they do not), and its texture window is placed so that it stays inside its photo.

  Returns:
    `mode` (the continuation, int32), `bg_photo`, `bg_offset [2]` (photo coordinates of the
    frame's first pixel), `obj_photo`, `obj_shape`, `obj_half_size [2]`, `obj_corner`,
    `obj_angle`, `obj_velocity [2]` (before the branch), `obj_position [2]` (centre in frame
    `m - 1`) and `obj_tex_offset [2]` (the texture window starts at `obj_tex_offset - centre`).
  """
  draw = _Uniforms(key, 16)
  size = float(frame_size)
  # Windows of frame_size + 1 texels (bilinear) start in [_MARGIN, last_start] to stay in the photo.
  last_start = photo_size - 1 - frame_size - _MARGIN

  mode = jnp.sum(draw.take(()) >= jnp.asarray(thresholds)).astype(jnp.int32)
  bg_photo = draw.integers((), 0, num_photos)
  bg_offset = draw.take((2,), _MARGIN, last_start)
  # A shift in 1..P-1 keeps the object's photo different from the background's.
  obj_photo = (bg_photo + draw.integers((), 1, num_photos)) % num_photos
  shape = draw.integers((), 0, _NUM_SHAPES)
  half_size = 0.5 * object_scale * draw.take((2,), *OBJECT_SIZE)
  half_size = jnp.where(shape == mp.DISK, half_size[:1], half_size)
  corner = draw.take((), 0.2, 0.5) * jnp.min(half_size)
  angle = draw.take((), 0.0, np.pi)
  direction = draw.take((), 0.0, 2 * np.pi)
  speed = draw.take((), *OBJECT_SPEED)
  velocity = speed * jnp.stack([jnp.sin(direction), jnp.cos(direction)])

  relative = _relative_centres(velocity, num_input_frames=num_input_frames,
                               num_frames=num_frames).reshape(-1, 2)
  low, high = relative.min(axis=0), relative.max(axis=0)
  first, last = 0.25 * size - low, 0.75 * size - high
  position = jnp.where(first <= last, first + draw.take((2,)) * (last - first),
                       0.5 * (first + last))
  tex_offset = draw.take((2,), _MARGIN + position + high, last_start + position + low)
  return {
      'mode': mode, 'bg_photo': bg_photo, 'bg_offset': bg_offset, 'obj_photo': obj_photo,
      'obj_shape': shape, 'obj_half_size': half_size, 'obj_corner': corner,
      'obj_angle': angle, 'obj_velocity': velocity, 'obj_position': position,
      'obj_tex_offset': tex_offset,
  }


def _render_frames(scene: dict[str, jax.Array], photos: jax.Array, centres: jax.Array,
                   steps: jax.Array, *, frame_size: int, motion_threshold: float
                   ) -> tuple[jax.Array, jax.Array]:
  """Renders one frame per object centre over the scene's static background.

  Args:
    scene: one clip's parameters (`_sample_scene`).
    photos: `[P, H, H, 3]`.
    centres: `[N, 2]` object centres.
    steps: `[N, 2]` the object's displacement since the frame before each.
    frame_size: `S`.
    motion_threshold: pixels.

  Returns:
    `([N, S, S, 3]` frames in [-1, 1], `[N, S, S]` motion masks`)`: a pixel moved when the
    object covers at least half of it and was displaced more than `motion_threshold`; the
    background never moves.
  """
  pixels = jnp.arange(frame_size, dtype=jnp.float32)
  rows, cols = pixels[:, None], pixels[None, :]
  window = functools.partial(_sample_window, photos, size=frame_size)
  background = window(scene['bg_photo'], scene['bg_offset'][0], scene['bg_offset'][1])
  distance = _signed_distance(
      rows - centres[:, 0, None, None], cols - centres[:, 1, None, None], scene['obj_shape'],
      scene['obj_half_size'][0], scene['obj_half_size'][1], scene['obj_corner'],
      scene['obj_angle'])  # [N, S, S]
  # A one-pixel ramp across the outline: the box-filtered coverage of a straight edge.
  alpha = jnp.clip(0.5 - distance, 0.0, 1.0)
  # The texture travels with the object: pixel p shows tex_offset + p - centre.
  start = scene['obj_tex_offset'] - centres
  texture = jax.vmap(window, in_axes=(None, 0, 0))(scene['obj_photo'], start[:, 0], start[:, 1])
  frames = background + alpha[..., None] * (texture - background)
  moved = jnp.sqrt(jnp.sum(jnp.square(steps), axis=-1)) > motion_threshold  # [N]
  motion_mask = (alpha >= 0.5) & moved[:, None, None]
  return jnp.clip(frames, -1.0, 1.0), motion_mask


def _render_continuations(scene: dict[str, jax.Array], photos: jax.Array, *,
                          num_input_frames: int, num_frames: int, frame_size: int,
                          motion_threshold: float) -> dict[str, jax.Array]:
  """The clip under every continuation: `{'frames': [K, T, S, S, 3], 'motion_mask':
  [K, T, S, S]}`; the first `num_input_frames` frames are the same for all."""
  relative = _relative_centres(scene['obj_velocity'], num_input_frames=num_input_frames,
                               num_frames=num_frames)  # [K, T, 2]
  centres = scene['obj_position'] + relative
  # Nothing moves into frame 0.
  steps = jnp.diff(relative, axis=1, prepend=relative[:, :1])
  num_modes = len(CONTINUATIONS)
  frames, motion_mask = _render_frames(
      scene, photos, centres.reshape(-1, 2), steps.reshape(-1, 2), frame_size=frame_size,
      motion_threshold=motion_threshold)
  return {'frames': frames.reshape(num_modes, num_frames, *frames.shape[1:]),
          'motion_mask': motion_mask.reshape(num_modes, num_frames, *motion_mask.shape[1:])}


def _render_clip(scene: dict[str, jax.Array], photos: jax.Array, *, num_input_frames: int,
                 num_frames: int, frame_size: int) -> jax.Array:
  """`[T, S, S, 3]`: the clip under its own continuation `scene['mode']` only."""
  relative = _relative_centres(scene['obj_velocity'], num_input_frames=num_input_frames,
                               num_frames=num_frames)[scene['mode']]  # [T, 2]
  frames, _ = _render_frames(scene, photos, scene['obj_position'] + relative,
                             jnp.zeros_like(relative), frame_size=frame_size,
                             motion_threshold=0.0)
  return frames


def _sample_indexed(key: jax.Array, indices: jax.Array, *, num_photos: int, photo_size: int,
                    **kwargs) -> dict[str, jax.Array]:
  """The `[B, ...]` parameters of the clips numbered `indices [B]` of the stream of `key`."""
  sample = functools.partial(_sample_scene, num_photos=num_photos, photo_size=photo_size,
                             **kwargs)
  return jax.vmap(sample)(_example_keys(key, indices))


def _train_scenes(key: jax.Array, *, batch_size: int, num_input_frames: int, image_size: int,
                  num_photos: int, photo_size: int, thresholds: np.ndarray
                  ) -> dict[str, jax.Array]:
  """The `[B, ...]` parameters of a training batch; row `i` depends only on `key` and `i`."""
  return _sample_indexed(key, jnp.arange(batch_size), num_input_frames=num_input_frames,
                         num_frames=num_input_frames + 1, frame_size=image_size,
                         object_scale=image_size, num_photos=num_photos,
                         photo_size=photo_size, thresholds=thresholds)


def _train_clips(key: jax.Array, photos: jax.Array, *, batch_size: int, num_input_frames: int,
                 image_size: int, thresholds: np.ndarray) -> dict[str, jax.Array]:
  """A training batch: `{'frames': [B, m + 1, s, s, 3]}`, rendered at `image_size`."""
  photos = jnp.asarray(photos, jnp.float32)
  scenes = _train_scenes(key, batch_size=batch_size, num_input_frames=num_input_frames,
                         image_size=image_size, num_photos=photos.shape[0],
                         photo_size=photos.shape[1], thresholds=thresholds)
  render = functools.partial(_render_clip, num_input_frames=num_input_frames,
                             num_frames=num_input_frames + 1, frame_size=image_size)
  return {'frames': jax.vmap(render, in_axes=(0, None))(scenes, photos)}


def _render_test_chunk(key: jax.Array, indices: jax.Array, photos: jax.Array, *,
                       num_input_frames: int, num_frames: int, frame_size: int,
                       object_scale: int, motion_threshold: float, thresholds: np.ndarray
                       ) -> dict[str, jax.Array]:
  """The test clips numbered `indices [B]`: frames and masks of their own continuation, frame
  `m` under every continuation, their continuations, and their parameters."""
  scenes = _sample_indexed(key, indices, num_input_frames=num_input_frames,
                           num_frames=num_frames, frame_size=frame_size,
                           object_scale=object_scale, num_photos=photos.shape[0],
                           photo_size=photos.shape[1], thresholds=thresholds)
  render = functools.partial(_render_continuations, num_input_frames=num_input_frames,
                             num_frames=num_frames, frame_size=frame_size,
                             motion_threshold=motion_threshold)
  every = jax.vmap(render, in_axes=(0, None))(scenes, photos)  # [B, K, T, ...]
  rows = jnp.arange(indices.shape[0])
  mode = scenes['mode']
  return {'frames': every['frames'][rows, mode],
          'motion_mask': every['motion_mask'][rows, mode],
          'futures': every['frames'][:, :, num_input_frames],
          'mode': mode, 'scenes': scenes}


class MultimodalPhotos(base.VideoDataset):
  """One photographed object over a still photograph, whose motion branches at the first
  predicted frame.

  Training batches are `num_input_frames + 1` frames of `image_size`, the last one showing a
  continuation drawn from `mode_probs`. The test set is `num_test_clips` clips of
  `num_input_frames + test_future_frames` frames of `test_frame_size`, with exact motion masks,
  frame `m = num_input_frames` under every continuation (`'futures'`) and the continuation the
  clip shows (`'mode'`). Train and test streams use different keys derived from `seed`.
  """

  def __init__(self, *, seed: int, batch_size: int, num_input_frames: int, image_size: int,
               test_frame_size: int, num_test_clips: int, test_future_frames: int,
               sharding: jax.sharding.Sharding, motion_threshold: float = 0.5,
               mode_probs: Sequence[float] = DEFAULT_MODE_PROBS):
    base.check_clip_args(
        seed=seed, batch_size=batch_size, num_input_frames=num_input_frames,
        image_size=image_size, test_frame_size=test_frame_size, num_test_clips=num_test_clips,
        test_future_frames=test_future_frames, sharding=sharding,
        motion_threshold=motion_threshold)
    self.mode_probs = check_mode_probs(mode_probs)

    self.batch_size = batch_size
    self.num_input_frames = num_input_frames
    self.image_size = image_size
    self.test_frame_size = test_frame_size
    self.num_test_clips = num_test_clips
    self.test_future_frames = test_future_frames
    self.motion_threshold = float(motion_threshold)
    self.sharding = sharding
    self.train_key, self.test_key = jax.random.split(jax.random.key(seed))
    self._thresholds = _mode_thresholds(self.mode_probs)
    self.photo_size = max(mp.PHOTO_SIZE,
                          required_photo_size(image_size, num_input_frames, 1),
                          required_photo_size(test_frame_size, num_input_frames,
                                              test_future_frames))
    self._photos = jax.device_put(mp.load_photos(self.photo_size),
                                  _replicated(sharding))
    make_batch = functools.partial(_train_clips, batch_size=batch_size,
                                   num_input_frames=num_input_frames, image_size=image_size,
                                   thresholds=self._thresholds)
    self._train_fn = jax.jit(functools.partial(_train_at_step, make_batch, self.train_key),
                             out_shardings=sharding)
    self._test_set: dict[str, np.ndarray] | None = None
    self._test_scenes: dict[str, np.ndarray] | None = None

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> MultimodalPhotos:
    """Builds the dataset from a config's fields named like the constructor's arguments.

    Reads `seed`, `batch_size`, `num_input_frames`, `image_size`, `test_frame_size`,
    `num_test_clips`, `test_future_frames` and, if present, `motion_threshold` and `mode_probs`.
    """
    return cls(seed=config.seed, batch_size=config.batch_size,
               num_input_frames=config.num_input_frames, image_size=config.image_size,
               test_frame_size=config.test_frame_size, num_test_clips=config.num_test_clips,
               test_future_frames=config.test_future_frames, sharding=sharding,
               motion_threshold=getattr(config, 'motion_threshold', 0.5),
               mode_probs=getattr(config, 'mode_probs', DEFAULT_MODE_PROBS))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step`: `{'frames': [B, num_input_frames + 1, s, s, 3]}`, sharded."""
    base.check_step(step)
    return self._train_fn(self._photos, np.uint32(step))

  def _train_scenes(self, step: int) -> dict[str, np.ndarray]:
    """The parameters of the clips of `train_batch(step)`, continuations (`'mode'`) included."""
    scenes = _train_scenes(jax.random.fold_in(self.train_key, np.uint32(step)),
                           batch_size=self.batch_size, num_input_frames=self.num_input_frames,
                           image_size=self.image_size, num_photos=len(mp.PHOTO_NAMES),
                           photo_size=self.photo_size, thresholds=self._thresholds)
    return jax.device_get(scenes)

  def _render_test_set(self) -> None:
    render = jax.jit(functools.partial(
        _render_test_chunk, self.test_key, num_input_frames=self.num_input_frames,
        num_frames=self.num_input_frames + self.test_future_frames,
        frame_size=self.test_frame_size, object_scale=self.image_size,
        motion_threshold=self.motion_threshold, thresholds=self._thresholds))
    rendered = _render_in_chunks(render, jnp.asarray(mp.load_photos(self.photo_size)),
                                 self.num_test_clips)
    scenes = rendered.pop('scenes')
    self._test_set = {name: rendered[name] for name in ('frames', 'motion_mask', 'futures', 'mode')}
    self._test_scenes = scenes

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields the fixed test set in order, rendering it on first use.

    Each batch holds `b <= batch_size` clips, as read-only views, with `T = num_input_frames +
    test_future_frames`, `S = test_frame_size` and `K = len(CONTINUATIONS)`:

    * `'frames' [b, T, S, S, 3]`: the clip under its own continuation;
    * `'motion_mask' [b, T, S, S]` bool: the pixels whose surface moved more than
      `motion_threshold` pixels since the frame before (none in frame 0);
    * `'futures' [b, K, S, S, 3]`: frame `num_input_frames` under every continuation, in
      `CONTINUATIONS` order;
    * `'mode' [b]` int32: the continuation `'frames'` shows, so `frames[:, m] ==
      futures[arange(b), mode]`.
    """
    _check_positive(batch_size=batch_size)
    if self._test_set is None:
      self._render_test_set()
    for start in range(0, self.num_test_clips, batch_size):
      yield {name: array[start:start + batch_size] for name, array in self._test_set.items()}
