"""`moving_photos`: the embedded video dataset of chapter 4, rendered on the fly in JAX.

Each clip shows 1-3 objects cut from natural photographs (the ones bundled with scikit-image) that
slide with their own constant velocities over a photographic background, occluding each other in
a random depth order, while the camera pans smoothly over the background (or stays still). Objects
are ellipses, disks or rotated rounded rectangles with one-pixel anti-aliased edges, textured with
a region of another photograph; sampling is bilinear, so sub-pixel motion is smooth.

Everything is a pure, jit-able function of a key, so clips are rendered on the accelerator, next to
the model, and the renderer knows the exact motion of every pixel:

* `flow[t]` is the displacement, in pixels, of the surface seen at each pixel of frame `t` since
  frame `t - 1`, as `(dy, dx)`: frame `t` at `p` shows what frame `t - 1` showed at `p - flow[t](p)`
  (the convention of TensorFlow Addons' `dense_image_warp`); `flow[0] = 0`. The surface of a pixel
  is the nearest one covering at least half of it.
* `motion_mask[t] = |flow[t]| > motion_threshold`: the moving areas of Table 4.4.

Training clips are rendered at twice the patch size and cropped where they move most, as in
section 4.3 ("32x32 video patches ... after making sure they show enough movement, quantified by
the L2 distance between successive frames"). Object sizes are fractions of the rendered frame;
speeds are in pixels per frame.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base

PHOTO_NAMES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry',
               'hubble_deep_field', 'colorwheel')
PHOTO_SIZE = 128
# Object shapes; a disk is an ellipse with equal axes, kept apart so that round objects are common.
ELLIPSE, DISK, ROUNDED_RECTANGLE = 0, 1, 2
_NUM_SHAPES = 3
# Test clips rendered per compiled call: bounds device memory for large test frames.
_TEST_CHUNK = 16
# Keeps sampled windows off the photos' last row and column despite float rounding.
_MARGIN = 1e-3


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """The distribution clips are drawn from.

  Attributes:
    max_objects: objects per clip are uniform in `1..max_objects`.
    object_size: range of an object's extent along each of its axes, as a fraction of the frame.
    object_speed: range of an object's speed, pixels per frame (its direction is uniform).
    camera_speed: range of the camera's initial speed when it moves, pixels per frame.
    camera_accel: bound of each component of the camera's acceleration, pixels per frame^2.
    static_camera_prob: probability that the camera does not move at all.
  """
  max_objects: int = 3
  object_size: tuple[float, float] = (0.2, 0.45)
  object_speed: tuple[float, float] = (1.0, 3.0)
  camera_speed: tuple[float, float] = (0.25, 1.5)
  camera_accel: float = 0.05
  static_camera_prob: float = 0.3

  def __post_init__(self):
    if (isinstance(self.max_objects, bool) or not isinstance(self.max_objects, numbers.Integral)
        or self.max_objects < 1):
      raise ValueError(f'max_objects={self.max_objects!r}: expected an integer >= 1.')
    for name in ('object_size', 'object_speed', 'camera_speed'):
      low, high = getattr(self, name)
      if not 0 <= low <= high:
        raise ValueError(f'{name}={getattr(self, name)!r}: expected (low, high) with '
                         '0 <= low <= high.')
    if self.camera_accel < 0:
      raise ValueError(f'camera_accel={self.camera_accel!r}: expected a value >= 0.')
    if not 0 <= self.static_camera_prob <= 1:
      raise ValueError(f'static_camera_prob={self.static_camera_prob!r}: expected a '
                       'probability in [0, 1].')

  def max_travel(self, num_frames: int) -> float:
    """The farthest, in pixels along an axis, any texture moves over `num_frames` frames."""
    steps = num_frames - 1
    camera = self.camera_speed[1] * steps + 0.5 * self.camera_accel * steps**2
    return max(self.object_speed[1] * steps, camera)


def required_photo_size(frame_size: int, num_frames: int, spec: SceneSpec = SceneSpec()) -> int:
  """The smallest photo side that fits a frame plus everything it travels over a clip."""
  return frame_size + 2 + math.ceil(spec.max_travel(num_frames))


@functools.lru_cache(maxsize=4)
def _load_photos(size: int) -> np.ndarray:
  from skimage import data, transform  # pylint: disable=g-import-not-at-top
  photos = []
  for name in PHOTO_NAMES:
    image = getattr(data, name)()
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    resized = transform.resize(square, (size, size), order=1, anti_aliasing=True,
                               preserve_range=True)
    photos.append(np.clip(resized / 127.5 - 1.0, -1.0, 1.0))
  stacked = np.stack(photos).astype(np.float32)
  stacked.setflags(write=False)
  return stacked


def load_photos(size: int = PHOTO_SIZE) -> np.ndarray:
  """The bundled photographs, center-cropped to squares and resized (cached, read-only).

  Args:
    size: side of the square photos, pixels.

  Returns:
    `[P, size, size, 3]` float32 in [-1, 1], one photo per name in `PHOTO_NAMES`.
  """
  if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 2:
    raise ValueError(f'size={size!r}: expected an integer >= 2.')
  return _load_photos(int(size))


def _check_positive(**values):
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
      raise ValueError(f'{name}={value!r}: expected a positive integer.')


def _check_photos(photos, frame_size: int, num_frames: int, spec: SceneSpec):
  shape = tuple(np.shape(photos))
  if len(shape) != 4 or shape[0] < 2 or shape[1] != shape[2] or shape[3] != 3:
    raise ValueError(f'photos.shape={shape}: expected [P, H, H, 3] with P >= 2.')
  needed = required_photo_size(frame_size, num_frames, spec)
  if shape[1] < needed:
    raise ValueError(f'photos.shape={shape}: {num_frames} frames of {frame_size}x{frame_size} '
                     f'need photos of at least {needed}x{needed}; use load_photos({needed}).')


def _example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  # fold_in by index rather than split(key, n): row i then does not depend on the batch size.
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


class _Uniforms:
  """Hands out slices of one vector of uniform draws.

  One random call per clip instead of one per parameter: each call is a threefry hash that XLA
  compiles separately, so a dozen of them make compilation several times slower.
  """

  def __init__(self, key: jax.Array, count: int):
    self._values = jax.random.uniform(key, (count,))
    self._used = 0

  def take(self, shape: tuple[int, ...], low: Any = 0.0, high: Any = 1.0) -> jax.Array:
    size = math.prod(shape)
    if self._used + size > self._values.shape[0]:
      raise ValueError(f'shape={shape}: only {self._values.shape[0] - self._used} draws left.')
    values = self._values[self._used:self._used + size].reshape(shape)
    self._used += size
    return low + values * (high - low)

  def integers(self, shape: tuple[int, ...], low: int, high: int) -> jax.Array:
    """Uniform integers in [low, high)."""
    values = jnp.floor(self.take(shape, low, high)).astype(jnp.int32)
    return jnp.minimum(values, high - 1)


def _sample_scene(key: jax.Array, *, num_frames: int, frame_size: int, num_photos: int,
                  photo_size: int, spec: SceneSpec) -> dict[str, jax.Array]:
  """One clip's parameters; see `sample_scenes`."""
  num_objects = spec.max_objects
  draw = _Uniforms(key, 9 + 13 * num_objects)  # 9 per clip, 13 per object
  size = float(frame_size)
  t = jnp.arange(num_frames, dtype=jnp.float32)
  # Windows of frame_size + 1 texels (bilinear) start in [0, last_start] to stay in the photo.
  last_start = photo_size - 1 - frame_size - _MARGIN

  def offset_fitting(shape, path_min, path_max):
    """An offset o, uniform among those keeping o + path in [_MARGIN, last_start]."""
    return draw.take(shape, _MARGIN - path_min, last_start - path_max)

  bg_photo = draw.integers((), 0, num_photos)
  moving = draw.take(()) >= spec.static_camera_prob
  camera_dir = draw.take((), 0.0, 2 * np.pi)
  camera_speed = draw.take((), *spec.camera_speed)
  camera_velocity = moving * camera_speed * jnp.stack([jnp.sin(camera_dir),
                                                       jnp.cos(camera_dir)])
  camera_accel = moving * draw.take((2,), -spec.camera_accel, spec.camera_accel)
  camera = t[:, None] * camera_velocity + 0.5 * t[:, None]**2 * camera_accel  # [T, 2]
  bg_offset = offset_fitting((2,), camera.min(axis=0), camera.max(axis=0))

  count = draw.integers((), 1, num_objects + 1)
  active = jnp.arange(num_objects) < count
  # A shift in 1..P-1 keeps every object's photo different from the background's.
  photo = (bg_photo + draw.integers((num_objects,), 1, num_photos)) % num_photos
  shape = draw.integers((num_objects,), 0, _NUM_SHAPES)
  half_size = 0.5 * size * draw.take((num_objects, 2), *spec.object_size)
  half_size = jnp.where((shape == DISK)[:, None], half_size[:, :1], half_size)
  corner = draw.take((num_objects,), 0.2, 0.5) * jnp.min(half_size, axis=-1)
  angle = draw.take((num_objects,), 0.0, np.pi)
  direction = draw.take((num_objects,), 0.0, 2 * np.pi)
  speed = draw.take((num_objects,), *spec.object_speed)
  velocity = speed[:, None] * jnp.stack([jnp.sin(direction), jnp.cos(direction)], axis=-1)
  # Centred in the frame's middle half at mid-clip, so objects stay mostly in view.
  centre = draw.take((num_objects, 2), 0.25 * size, 0.75 * size)
  position = centre - velocity * (num_frames - 1) / 2
  # An object's texture window starts at tex_offset - centre(t); centres move linearly.
  last = position + velocity * (num_frames - 1)
  tex_offset = offset_fitting((num_objects, 2), -jnp.maximum(position, last),
                              -jnp.minimum(position, last))
  depth = draw.take((num_objects,))
  return {
      'bg_photo': bg_photo, 'bg_offset': bg_offset,
      'camera_velocity': camera_velocity, 'camera_accel': camera_accel,
      'obj_active': active, 'obj_photo': photo, 'obj_tex_offset': tex_offset,
      'obj_shape': shape, 'obj_half_size': half_size, 'obj_corner': corner,
      'obj_angle': angle, 'obj_position': position, 'obj_velocity': velocity,
      'obj_depth': depth,
  }


def sample_scenes(key: jax.Array, *, batch_size: int, num_frames: int, frame_size: int,
                  num_photos: int, photo_size: int, spec: SceneSpec = SceneSpec()
                  ) -> dict[str, jax.Array]:
  """Draws the parameters of `batch_size` clips; row `i` depends only on `key` and `i`.

  Offsets, positions and velocities are `(y, x)` pairs in pixels. Frame `t` shows the background
  photo from `bg_offset + camera_velocity t + camera_accel t^2 / 2`; object `k` is centred at
  `obj_position[k] + obj_velocity[k] t` and shows its photo from `obj_tex_offset[k]` at its
  centre. Offsets are drawn so that every sampled window stays inside the photos, which needs
  `photo_size >= required_photo_size(frame_size, num_frames, spec)`. Smaller `obj_depth` is
  nearer; inactive objects (`obj_active` false) are not drawn.

  Returns:
    A dict of `[B, ...]` arrays: `bg_photo [B]`, `bg_offset [B, 2]`, `camera_velocity [B, 2]`,
    `camera_accel [B, 2]`, and per object (`K = spec.max_objects`) `obj_active [B, K]`,
    `obj_photo [B, K]`, `obj_tex_offset [B, K, 2]`, `obj_shape [B, K]`, `obj_half_size [B, K, 2]`,
    `obj_corner [B, K]`, `obj_angle [B, K]`, `obj_position [B, K, 2]`, `obj_velocity [B, K, 2]`,
    `obj_depth [B, K]`.
  """
  _check_positive(batch_size=batch_size, num_frames=num_frames, frame_size=frame_size)
  if num_photos < 2:
    raise ValueError(f'num_photos={num_photos!r}: expected at least 2 photos.')
  needed = required_photo_size(frame_size, num_frames, spec)
  if photo_size < needed:
    raise ValueError(f'photo_size={photo_size!r}: {num_frames} frames of {frame_size}x'
                     f'{frame_size} need at least {needed}.')
  sample = functools.partial(_sample_scene, num_frames=num_frames, frame_size=frame_size,
                             num_photos=num_photos, photo_size=photo_size, spec=spec)
  return jax.vmap(sample)(_example_keys(key, jnp.arange(batch_size)))


def _sample_window(photos: jax.Array, photo: jax.Array, top: jax.Array, left: jax.Array,
                   size: int) -> jax.Array:
  """Bilinear samples of `photos[photo]` at `(top + i, left + j)` for `i, j < size`.

  Every pixel of a translated window shares one sub-pixel phase, so a slice of the
  `(size + 1)^2` texels it covers, blended with four scalar weights, interpolates all of it.
  A slice is also far cheaper than a per-pixel gather on CPU. The window must lie inside the
  photo (`dynamic_slice` would clamp it).

  Args:
    photos: `[P, H, W, C]`.
    photo: scalar index of the photo.
    top, left: scalars, photo coordinates (pixels) of the window's first pixel.
    size: side of the window.

  Returns:
    `[size, size, C]`.
  """
  y0, x0 = jnp.floor(top), jnp.floor(left)
  fy, fx = top - y0, left - x0
  texels = jax.lax.dynamic_slice(
      photos, (photo, y0.astype(jnp.int32), x0.astype(jnp.int32), 0),
      (1, size + 1, size + 1, photos.shape[-1]))[0]
  rows = texels[:-1] * (1 - fy) + texels[1:] * fy
  return rows[:, :-1] * (1 - fx) + rows[:, 1:] * fx


def _signed_distance(ly: jax.Array, lx: jax.Array, shape: jax.Array, half_y: jax.Array,
                     half_x: jax.Array, corner: jax.Array, angle: jax.Array) -> jax.Array:
  """Distance (pixels, negative inside) from `(ly, lx)`, relative to a centre, to an outline.

  All arguments broadcast together. Coordinates stay in separate arrays rather than a trailing
  axis of 2, which XLA vectorises far better.
  """
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  qy, qx = cos * ly + sin * lx, cos * lx - sin * ly
  # Ellipse: first-order distance f / |grad f| of f = |q / r| - 1 (exact for a disk).
  k0 = jnp.sqrt(jnp.square(qy / half_y) + jnp.square(qx / half_x))
  k1 = jnp.sqrt(jnp.square(qy / half_y**2) + jnp.square(qx / half_x**2))
  at_centre = k1 < 1e-6
  ellipse = jnp.where(at_centre, -jnp.minimum(half_y, half_x),
                      k0 * (k0 - 1) / jnp.where(at_centre, 1.0, k1))
  inner_y = jnp.abs(qy) - (half_y - corner)
  inner_x = jnp.abs(qx) - (half_x - corner)
  rectangle = (jnp.sqrt(jnp.square(jnp.maximum(inner_y, 0.0))
                        + jnp.square(jnp.maximum(inner_x, 0.0)))
               + jnp.minimum(jnp.maximum(inner_y, inner_x), 0.0) - corner)
  return jnp.where(shape == ROUNDED_RECTANGLE, rectangle, ellipse)


def _render_scene(scene: dict[str, jax.Array], photos: jax.Array, *, num_frames: int,
                  frame_size: int, motion_threshold: float) -> dict[str, jax.Array]:
  """Renders one clip; see `render_scenes`."""
  t = jnp.arange(num_frames, dtype=jnp.float32)
  pixels = jnp.arange(frame_size, dtype=jnp.float32)
  rows, cols = pixels[:, None], pixels[None, :]  # [S, 1], [1, S]
  window = jax.vmap(functools.partial(_sample_window, photos, size=frame_size),
                    in_axes=(None, 0, 0))  # over frames

  camera = (t[:, None] * scene['camera_velocity']
            + 0.5 * t[:, None]**2 * scene['camera_accel'])  # [T, 2]
  start = scene['bg_offset'] + camera
  frames = window(scene['bg_photo'], start[:, 0], start[:, 1])  # [T, S, S, 3]
  # The background moves against the camera; nothing moves into frame 0.
  camera_step = jnp.diff(camera, axis=0, prepend=camera[:1])
  flow_y = jnp.broadcast_to(-camera_step[:, 0, None, None], frames.shape[:-1])
  flow_x = jnp.broadcast_to(-camera_step[:, 1, None, None], frames.shape[:-1])

  def paint(canvas, obj):
    """Paints one object over the canvas; its flow wins where it covers half a pixel or more."""
    frames, flow_y, flow_x = canvas
    centre = obj['obj_position'] + t[:, None] * obj['obj_velocity']  # [T, 2]
    distance = _signed_distance(
        rows - centre[:, 0, None, None], cols - centre[:, 1, None, None], obj['obj_shape'],
        obj['obj_half_size'][0], obj['obj_half_size'][1], obj['obj_corner'], obj['obj_angle'])
    # A one-pixel ramp across the outline: the box-filtered coverage of a straight edge.
    alpha = jnp.clip(0.5 - distance, 0.0, 1.0) * obj['obj_active']  # [T, S, S]
    # The texture travels with the object: pixel p shows tex_offset + p - centre.
    start = obj['obj_tex_offset'] - centre
    texture = window(obj['obj_photo'], start[:, 0], start[:, 1])  # [T, S, S, 3]
    frames = frames + alpha[..., None] * (texture - frames)
    covered = (alpha >= 0.5) & (t > 0)[:, None, None]
    flow_y = jnp.where(covered, obj['obj_velocity'][0], flow_y)
    flow_x = jnp.where(covered, obj['obj_velocity'][1], flow_x)
    return (frames, flow_y, flow_x), None

  # Painter's algorithm, far to near. A scan keeps each object in its own compiled loop body,
  # which XLA on CPU runs much faster than one fusion over all objects.
  order = jnp.argsort(-scene['obj_depth'])
  objects = {name: value[order] for name, value in scene.items() if name.startswith('obj_')}
  (frames, flow_y, flow_x), _ = jax.lax.scan(paint, (frames, flow_y, flow_x), objects)
  motion_mask = jnp.sqrt(jnp.square(flow_y) + jnp.square(flow_x)) > motion_threshold
  return {'frames': jnp.clip(frames, -1.0, 1.0), 'flow': jnp.stack([flow_y, flow_x], axis=-1),
          'motion_mask': motion_mask}


def render_scenes(scenes: dict[str, jax.Array], photos: jax.Array, *, num_frames: int,
                  frame_size: int, motion_threshold: float = 0.5) -> dict[str, jax.Array]:
  """Renders clips from their parameters (from `sample_scenes`, possibly edited).

  Args:
    scenes: the `[B, ...]` parameters of `sample_scenes`, with the same `num_frames` and
      `frame_size`; edited offsets must keep every window inside the photos.
    photos: `[P, H, W, 3]` float32 in [-1, 1], e.g. `load_photos()`.
    num_frames: `T`, frames per clip.
    frame_size: `S`, side of the square frames, pixels.
    motion_threshold: pixels; flow longer than this counts as motion.

  Returns:
    `{'frames': [B, T, S, S, 3]` float32 in [-1, 1], `'flow': [B, T, S, S, 2]` float32 `(dy, dx)`
    pixels, the displacement since frame `t - 1` of the surface seen in frame `t` (zero for
    `t = 0`), `'motion_mask': [B, T, S, S]` bool, `|flow| > motion_threshold`}.
  """
  _check_positive(num_frames=num_frames, frame_size=frame_size)
  render = functools.partial(_render_scene, num_frames=num_frames, frame_size=frame_size,
                             motion_threshold=motion_threshold)
  return jax.vmap(render, in_axes=(0, None))(scenes, jnp.asarray(photos, jnp.float32))


def _render_indexed(key: jax.Array, indices: jax.Array, photos: jax.Array, *, num_frames: int,
                    frame_size: int, motion_threshold: float, spec: SceneSpec
                    ) -> dict[str, jax.Array]:
  """Renders the clips numbered `indices [B]` of the stream of `key`."""
  photos = jnp.asarray(photos, jnp.float32)
  sample = functools.partial(_sample_scene, num_frames=num_frames, frame_size=frame_size,
                             num_photos=photos.shape[0], photo_size=photos.shape[1], spec=spec)
  scenes = jax.vmap(sample)(_example_keys(key, indices))
  return render_scenes(scenes, photos, num_frames=num_frames, frame_size=frame_size,
                       motion_threshold=motion_threshold)


def render_clips(key: jax.Array, photos: jax.Array, *, batch_size: int, num_frames: int,
                 frame_size: int, motion_threshold: float = 0.5, spec: SceneSpec = SceneSpec()
                 ) -> dict[str, jax.Array]:
  """Draws and renders `batch_size` clips; pure and jit-able (bind the keyword arguments).

  Row `i` depends only on `key` and `i`, so a larger batch extends a smaller one.

  Args:
    key: a JAX random key.
    photos: `[P, H, H, 3]` float32 in [-1, 1], `P >= 2`, e.g. `load_photos()`, with
      `H >= required_photo_size(frame_size, num_frames, spec)`.
    batch_size: `B`, clips.
    num_frames: `T`, frames per clip.
    frame_size: `S`, side of the square frames, pixels.
    motion_threshold: pixels; flow longer than this counts as motion.
    spec: the distribution of scenes.

  Returns:
    `{'frames': [B, T, S, S, 3], 'flow': [B, T, S, S, 2], 'motion_mask': [B, T, S, S]}`, as
    `render_scenes` describes.
  """
  _check_positive(batch_size=batch_size, num_frames=num_frames, frame_size=frame_size)
  _check_photos(photos, frame_size, num_frames, spec)
  return _render_indexed(key, jnp.arange(batch_size), photos, num_frames=num_frames,
                         frame_size=frame_size, motion_threshold=motion_threshold, spec=spec)


def _motion_score(squared_step: jax.Array) -> jax.Array:
  """Mean over frame pairs of the L2 distance, from `[T - 1, h, w]` squared differences."""
  return jnp.mean(jnp.sqrt(jnp.sum(squared_step, axis=(1, 2))))


def _select_moving_crop(key: jax.Array, clip: jax.Array, *, crop_size: int,
                        num_candidates: int) -> jax.Array:
  num_frames, size, _, channels = clip.shape
  offsets = jax.random.randint(key, (num_candidates, 2), 0, size - crop_size + 1)
  squared_step = jnp.sum(jnp.square(clip[1:] - clip[:-1]), axis=-1)  # [T - 1, S, S]

  def score(offset):
    window = jax.lax.dynamic_slice(squared_step, (0, offset[0], offset[1]),
                                   (num_frames - 1, crop_size, crop_size))
    return _motion_score(window)

  best = offsets[jnp.argmax(jax.vmap(score)(offsets))]
  return jax.lax.dynamic_slice(clip, (0, best[0], best[1], 0),
                               (num_frames, crop_size, crop_size, channels))


def select_moving_crops(key: jax.Array, frames: jax.Array, *, crop_size: int,
                        num_candidates: int = 8) -> jax.Array:
  """Per clip, the most moving of `num_candidates` random square crops (section 4.3).

  Motion is the L2 distance between successive frames of the crop, averaged over frame pairs.

  Args:
    key: a JAX random key; row `i`'s candidates depend only on `key` and `i`.
    frames: `[B, T, S, S, C]` clips, `T >= 2`.
    crop_size: `s <= S`, side of the crops.
    num_candidates: crops compared per clip.

  Returns:
    `[B, T, s, s, C]`, each a window of its clip at the same place in every frame.
  """
  _check_positive(crop_size=crop_size, num_candidates=num_candidates)
  if frames.ndim != 5 or frames.shape[1] < 2 or frames.shape[2] != frames.shape[3]:
    raise ValueError(f'frames.shape={frames.shape}: expected [B, T, S, S, C] with T >= 2.')
  if crop_size > frames.shape[2]:
    raise ValueError(f'crop_size={crop_size}: expected at most the frame size {frames.shape[2]}.')
  select = functools.partial(_select_moving_crop, crop_size=crop_size,
                             num_candidates=num_candidates)
  return jax.vmap(select)(_example_keys(key, jnp.arange(frames.shape[0])), frames)


def train_clips(key: jax.Array, photos: jax.Array, *, batch_size: int, num_frames: int,
                image_size: int, num_candidates: int = 8, spec: SceneSpec = SceneSpec()
                ) -> dict[str, jax.Array]:
  """A training batch: clips rendered at `2 * image_size`, cropped where they move most.

  Pure and jit-able; row `i` depends only on `key` and `i`.

  Args:
    key: a JAX random key.
    photos: `[P, H, H, 3]` float32 in [-1, 1], e.g. `load_photos()`, with
      `H >= required_photo_size(2 * image_size, num_frames, spec)`.
    batch_size: `B`, clips.
    num_frames: `T`, frames per clip (at least 2).
    image_size: `s`, side of the training patches.
    num_candidates: crops compared per clip.
    spec: the distribution of scenes.

  Returns:
    `{'frames': [B, T, s, s, 3]}` float32 in [-1, 1].
  """
  _check_positive(batch_size=batch_size, num_frames=num_frames, image_size=image_size,
                  num_candidates=num_candidates)
  if num_frames < 2:
    raise ValueError(f'num_frames={num_frames}: expected at least 2 frames.')
  render_size = 2 * image_size
  _check_photos(photos, render_size, num_frames, spec)
  photos = jnp.asarray(photos, jnp.float32)
  sample = functools.partial(_sample_scene, num_frames=num_frames, frame_size=render_size,
                             num_photos=photos.shape[0], photo_size=photos.shape[1], spec=spec)
  render = functools.partial(_render_scene, num_frames=num_frames, frame_size=render_size,
                             motion_threshold=0.0)
  crop = functools.partial(_select_moving_crop, crop_size=image_size,
                           num_candidates=num_candidates)

  def one_clip(example_key):
    scene_key, crop_key = jax.random.split(example_key)
    return crop(crop_key, render(sample(scene_key), photos)['frames'])

  return {'frames': jax.vmap(one_clip)(_example_keys(key, jnp.arange(batch_size)))}


def _replicated(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  devices = sorted(sharding.device_set, key=lambda device: device.id)
  mesh = jax.sharding.Mesh(np.array(devices), ('replica',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _render_in_chunks(render, photos: jax.Array, num_clips: int) -> dict[str, Any]:
  """Test clips `0..num_clips-1` from `render(indices [c], photos) -> {name: [c, ...]}`.

  Clips are rendered `_TEST_CHUNK` at a time, which bounds device memory for large frames; equal
  chunks compile once, and the last chunk's clips past the end are dropped. Returns the same
  (possibly nested) dict of read-only host arrays, `[num_clips, ...]` each.
  """
  chunk = min(_TEST_CHUNK, num_clips)
  parts = [jax.device_get(render(jnp.arange(start, start + chunk), photos))
           for start in range(0, num_clips, chunk)]

  def join(*arrays):
    array = np.concatenate(arrays)[:num_clips]
    array.setflags(write=False)
    return array

  return jax.tree.map(join, *parts)


def _train_at_step(make_batch, train_key: jax.Array, photos: jax.Array, step: jax.Array
                   ) -> dict[str, jax.Array]:
  return make_batch(jax.random.fold_in(train_key, step), photos)


class MovingPhotos(base.VideoDataset):
  """Photographed objects moving over photographs, rendered on the accelerator.

  Training batches are `num_input_frames + 1` frames of `image_size` patches, cropped where they
  move most from clips rendered at `2 * image_size`; the test set is `num_test_clips` full clips
  of `num_input_frames + test_future_frames` frames of `test_frame_size`, with exact flow and
  motion masks. Train and test streams use different keys derived from `seed`. Photos are
  `PHOTO_SIZE` pixels wide, or as wide as `required_photo_size` asks for larger frames.
  """

  def __init__(self, *, seed: int, batch_size: int, num_input_frames: int, image_size: int,
               test_frame_size: int, num_test_clips: int, test_future_frames: int,
               sharding: jax.sharding.Sharding, motion_threshold: float = 0.5):
    base.check_clip_args(
        seed=seed, batch_size=batch_size, num_input_frames=num_input_frames,
        image_size=image_size, test_frame_size=test_frame_size, num_test_clips=num_test_clips,
        test_future_frames=test_future_frames, sharding=sharding,
        motion_threshold=motion_threshold)
    num_frames = num_input_frames + 1

    self.batch_size = batch_size
    self.num_input_frames = num_input_frames
    self.image_size = image_size
    self.test_frame_size = test_frame_size
    self.num_test_clips = num_test_clips
    self.test_future_frames = test_future_frames
    self.motion_threshold = float(motion_threshold)
    self.sharding = sharding
    self.train_key, self.test_key = jax.random.split(jax.random.key(seed))
    num_test_frames = num_input_frames + test_future_frames
    self.photo_size = max(PHOTO_SIZE,
                          required_photo_size(2 * image_size, num_frames),
                          required_photo_size(test_frame_size, num_test_frames))
    self._photos = jax.device_put(load_photos(self.photo_size), _replicated(sharding))
    make_batch = functools.partial(train_clips, batch_size=batch_size, num_frames=num_frames,
                                   image_size=image_size)
    self._train_fn = jax.jit(functools.partial(_train_at_step, make_batch, self.train_key),
                             out_shardings=sharding)
    self._test_set: dict[str, np.ndarray] | None = None

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> MovingPhotos:
    """Builds the dataset from a config's fields named like the constructor's arguments.

    Reads `seed`, `batch_size`, `num_input_frames`, `image_size`, `test_frame_size`,
    `num_test_clips`, `test_future_frames` and, if present, `motion_threshold`.
    """
    return cls(seed=config.seed, batch_size=config.batch_size,
               num_input_frames=config.num_input_frames, image_size=config.image_size,
               test_frame_size=config.test_frame_size, num_test_clips=config.num_test_clips,
               test_future_frames=config.test_future_frames, sharding=sharding,
               motion_threshold=getattr(config, 'motion_threshold', 0.5))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step`: `{'frames': [B, num_input_frames + 1, s, s, 3]}`, sharded."""
    base.check_step(step)
    return self._train_fn(self._photos, np.uint32(step))

  def _render_test_set(self) -> dict[str, np.ndarray]:
    render = jax.jit(functools.partial(
        _render_indexed, self.test_key,
        num_frames=self.num_input_frames + self.test_future_frames,
        frame_size=self.test_frame_size, motion_threshold=self.motion_threshold,
        spec=SceneSpec()))
    rendered = _render_in_chunks(render, jnp.asarray(load_photos(self.photo_size)),
                                 self.num_test_clips)
    return {name: rendered[name] for name in ('frames', 'flow', 'motion_mask')}

  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields the fixed test set in order, rendering it on first use.

    Each batch holds `b <= batch_size` clips: `'frames' [b, T, S, S, 3]`, `'flow'
    [b, T, S, S, 2]` and `'motion_mask' [b, T, S, S]`, with `T = num_input_frames +
    test_future_frames` and `S = test_frame_size`; the arrays are read-only views.
    """
    _check_positive(batch_size=batch_size)
    if self._test_set is None:
      self._test_set = self._render_test_set()
    for start in range(0, self.num_test_clips, batch_size):
      yield {name: array[start:start + batch_size] for name, array in self._test_set.items()}
