"""`toys`: procedurally built 3-D toys in the spirit of NORB, ray-marched in JAX.

Five categories, as in NORB: four-legged animals, human figures, airplanes, trucks and cars. Each
toy is a union of up to `NUM_PARTS` primitives (ellipsoids, rounded boxes and capsules) whose sizes,
proportions, poses and colours are drawn per instance by `instance_params`, a pure function of
`(category, instance)`. Instances `TRAIN_INSTANCES` are for training and `TEST_INSTANCES` for
testing, as NORB splits its ten instances per category.

The scene, as NORB photographed its toys: the toy stands on a turntable that `azimuth` turns
(degrees, counter-clockwise seen from above, periodic in 360); the camera looks at the toy's centre
from `elevation` degrees above the horizon (NORB: 30-70); at azimuth 0 the camera sees the toy's
right side, its front towards the image's right. The projection is orthographic and frames the
toy's bounding sphere. The lights are fixed in the room: `light` indexes the `NUM_LIGHTS` rows of
`LIGHTS` (a direction towards the light, its intensity and an ambient term), like NORB's six
lighting conditions. Shading is Lambertian, `albedo * (ambient + intensity * max(n . l, 0))`,
over a plain `BACKGROUND`.

Rendering sphere-traces the signed distance of the union (`MARCH_STEPS` steps per ray, starting
where the ray enters the bounding sphere), one ray per pixel or `supersample**2` rays averaged.
Anti-aliasing is analytic: a ray's coverage is 1 when it hits and falls linearly to 0 as its
closest approach to the surface grows to one sample's width, and a partly covered sample is shaded
at that closest point; normals are differences over about a sample's footprint, and part colours
blend over a quarter of a sample. Silhouettes, creases and colour boundaries thus move
continuously with the camera, and small rotations change the image smoothly (occlusion edges
inside the silhouette are point-sampled; `supersample=2` smooths those too, at 4-5 times the
cost). The object mask depends on geometry alone, never on the light: it grows by up to one
sample's width around the surface. In grayscale, every object pixel is brighter than the
background.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

CATEGORIES = ('animal', 'human', 'airplane', 'truck', 'car')
ANIMAL, HUMAN, AIRPLANE, TRUCK, CAR = range(len(CATEGORIES))
NUM_CATEGORIES = len(CATEGORIES)
NUM_INSTANCES = 10
TRAIN_INSTANCES = (0, 1, 2, 3, 4)
TEST_INSTANCES = (5, 6, 7, 8, 9)
NUM_PARTS = 10

# Rows: (x, y, z) towards the light in the room (y up, the camera on the +z side at azimuth 0),
# diffuse intensity, ambient term; intensity + ambient <= 1 keeps radiance within the albedo.
LIGHTS = np.array([
    (-0.5, 0.8, 0.6, 0.65, 0.35),
    (0.6, 0.7, 0.5, 0.65, 0.35),
    (0.1, 1.0, 0.2, 0.7, 0.3),
    (-0.9, 0.35, 0.4, 0.6, 0.3),
    (0.9, 0.3, 0.35, 0.5, 0.3),
    (0.0, 0.4, 1.0, 0.75, 0.25),
], np.float32)
NUM_LIGHTS = len(LIGHTS)
BACKGROUND = -0.8
# Gray albedos lie in [_GRAY_LOW, 1]: with ambient >= 0.25 every object pixel is at least
# 2 * 0.55 * 0.25 - 1 = -0.725 > BACKGROUND.
_GRAY_LOW = 0.55
MARCH_STEPS = 48
# The toy is scaled so that its bounding box fits a sphere of this radius; the view's half-width
# and the marched sphere are a little larger so that no silhouette is cut.
_TOY_RADIUS = 0.95
_VIEW_RADIUS = 1.0
# Parts past a toy's last are parked this far away, out of every ray's reach.
_PARKED = 50.0
# Finite-difference step of the normals and width of the colour blend between parts, in samples:
# normals and colours are averaged over about a sample's footprint, which anti-aliases creases
# and colour boundaries inside the silhouette.
_NORMAL_STEP = 0.75
_COLOR_BLEND = 0.25
# The smallest slope of a distance bound trusted when estimating a ray's distance to the surface.
_MIN_SLOPE = 0.2
_SEED_SALT = 0x70E5

_PALETTE = np.array([
    (0.85, 0.25, 0.2), (0.95, 0.6, 0.15), (0.95, 0.85, 0.25), (0.35, 0.7, 0.3),
    (0.2, 0.65, 0.7), (0.25, 0.4, 0.85), (0.6, 0.35, 0.75), (0.9, 0.9, 0.85),
    (0.55, 0.4, 0.3), (0.5, 0.5, 0.55),
], np.float32)
_TIRE = (0.3, 0.3, 0.32)


def _rotation_z(degrees: float) -> np.ndarray:
  """The 3x3 matrix turning vectors by `degrees` about the z axis (x towards y)."""
  c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _frame_along(direction: np.ndarray) -> np.ndarray:
  """A rotation (local -> toy) whose local x axis is `direction`."""
  x = direction / np.linalg.norm(direction)
  helper = np.array([0.0, 1.0, 0.0]) if abs(x[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
  z = np.cross(x, helper)
  z /= np.linalg.norm(z)
  y = np.cross(z, x)
  return np.stack([x, y, z], axis=1)


class _Parts:
  """Collects a toy's primitives.

  Every primitive is a rounded box in a scaled, rotated frame: with `q = rotation^T (p - center) /
  scale`, its distance is `min(scale) * (|max(|q| - half, 0)| + min(max(|q| - half), 0) -
  rounding)`. An ellipsoid has `half = 0`, `rounding = 1` and its semi-axes as `scale`; a box or
  capsule has `scale = 1`. The non-uniform scaling makes an ellipsoid's value a lower bound of its
  distance, which keeps sphere tracing safe.
  """

  def __init__(self, rng: np.random.Generator):
    self.rng = rng
    self.parts: list[tuple[np.ndarray, ...]] = []

  def uniform(self, low: float, high: float) -> float:
    return float(self.rng.uniform(low, high))

  def add(self, center, rotation, scale, half, rounding, color):
    self.parts.append((np.asarray(center, np.float64), np.asarray(rotation, np.float64),
                       np.asarray(scale, np.float64) * np.ones(3), np.asarray(half, np.float64),
                       float(rounding), np.asarray(color, np.float64)))

  def ellipsoid(self, center, semi_axes, color, rotation=np.eye(3)):
    self.add(center, rotation, semi_axes, np.zeros(3), 1.0, color)

  def box(self, center, half, rounding, color, rotation=np.eye(3)):
    # The rounding grows the box; shrink it so that `half` is the outer extent.
    half = np.maximum(np.asarray(half, np.float64) - rounding, 0.0)
    self.add(center, rotation, 1.0, half, rounding, color)

  def capsule(self, start, end, radius, color):
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    axis = end - start
    self.add((start + end) / 2, _frame_along(axis), 1.0, (np.linalg.norm(axis) / 2, 0.0, 0.0),
             radius, color)

  def colors(self, count: int) -> list[np.ndarray]:
    """`count` distinct palette colours."""
    return list(_PALETTE[self.rng.choice(len(_PALETTE), count, replace=False)])


def _animal(parts: _Parts) -> None:
  u = parts.uniform
  body_color, limb_color, head_color = parts.colors(3)
  body_l, body_h, body_w = u(0.45, 0.7), u(0.16, 0.26), u(0.14, 0.22)
  leg_len, leg_r = u(0.3, 0.6), u(0.045, 0.08)
  body_y = leg_len + 0.6 * body_h
  parts.ellipsoid((0, body_y, 0), (body_l, body_h, body_w), body_color)
  for front in (0.7, -0.7):
    for side in (1, -1):
      top = np.array([front * body_l, body_y - 0.3 * body_h, side * 0.6 * body_w])
      swing = np.radians(u(-25, 25))
      length = top[1] / np.cos(swing)
      parts.capsule(top, top + length * np.array([np.sin(swing), -np.cos(swing), 0]), leg_r,
                    limb_color)
  neck_base = np.array([0.85 * body_l, body_y + 0.35 * body_h, 0])
  neck_angle = np.radians(u(25, 75))
  neck_tip = neck_base + u(0.15, 0.5) * np.array([np.cos(neck_angle), np.sin(neck_angle), 0])
  parts.capsule(neck_base, neck_tip, u(0.35, 0.55) * min(body_h, body_w), body_color)
  head_l, head_h, head_w = u(0.13, 0.25), u(0.08, 0.12), u(0.07, 0.1)
  pitch = u(-40, 10)
  head_axis = _rotation_z(pitch)
  head_center = neck_tip + 0.6 * head_l * head_axis[:, 0]
  parts.ellipsoid(head_center, (head_l, head_h, head_w), head_color, head_axis)
  tail_base = np.array([-0.95 * body_l, body_y + 0.2 * body_h, 0])
  tail_angle = np.radians(u(-60, 60))
  tail_dir = np.array([-np.cos(tail_angle), np.sin(tail_angle), u(-0.4, 0.4)])
  parts.capsule(tail_base, tail_base + u(0.15, 0.45) * tail_dir / np.linalg.norm(tail_dir),
                u(0.02, 0.045), limb_color)
  ear_len = u(0.05, 0.15)
  for side in (1, -1):
    root = head_center + head_axis @ np.array([-0.3 * head_l, 0.7 * head_h, side * 0.5 * head_w])
    parts.capsule(root, root + ear_len * np.array([-0.3, 1.0, side * 0.3]), 0.025, head_color)


def _human(parts: _Parts) -> None:
  u = parts.uniform
  cloth, skin, legs_color, extra_color = parts.colors(4)
  leg_len, hip_w, leg_r = u(0.75, 0.95), u(0.08, 0.12), u(0.055, 0.075)
  torso_h, torso_d, shoulder_w = u(0.5, 0.65), u(0.09, 0.13), u(0.17, 0.24)
  for side in (1, -1):
    hip = np.array([0, leg_len, side * hip_w])
    swing, spread = np.radians(u(-20, 20)), np.radians(u(0, 10))
    direction = np.array([np.sin(swing), -np.cos(swing) * np.cos(spread), side * np.sin(spread)])
    foot = hip + direction * (leg_len / -direction[1])
    parts.capsule(hip, foot, leg_r, legs_color)
    parts.box(foot + (0.06, 0.0, 0.0), (0.11, 0.035, 0.05), 0.015, extra_color)
  pelvis_y = leg_len + 0.04
  parts.box((0, pelvis_y, 0), (torso_d, 0.08, hip_w + leg_r), 0.03, legs_color)
  lean = u(-8, 8)
  torso_center = np.array([0, pelvis_y + 0.05 + torso_h / 2, 0])
  parts.box(torso_center, (torso_d, torso_h / 2, 0.85 * shoulder_w), min(torso_d, 0.06), cloth,
            _rotation_z(lean))
  top = pelvis_y + 0.05 + torso_h
  head_r = u(0.09, 0.12)
  head_center = np.array([0.02, top + 0.04 + head_r, 0])
  parts.ellipsoid(head_center, (1.05 * head_r, 1.2 * head_r, 0.95 * head_r), skin)
  arm_len, arm_r = u(0.5, 0.65), u(0.045, 0.06)
  for side in (1, -1):
    shoulder = np.array([0, top - 0.05, side * shoulder_w])
    # Raised sideways by theta from hanging down, swung forwards by phi: each arm on its own.
    theta, phi = np.radians(u(0, 150)), np.radians(u(-40, 60))
    direction = np.array([np.cos(theta) * np.sin(phi), -np.cos(theta) * np.cos(phi),
                          side * np.sin(theta)])
    parts.capsule(shoulder, shoulder + arm_len * direction, arm_r, cloth)
  accessory = parts.rng.integers(3)
  if accessory == 0:  # a hat
    parts.ellipsoid(head_center + (0, 0.9 * head_r, 0), (1.6 * head_r, 0.45 * head_r,
                                                         1.6 * head_r), extra_color)
  elif accessory == 1:  # a backpack
    parts.box((-torso_d - 0.07, top - 0.25 * torso_h, 0), (0.08, 0.3 * torso_h, 0.7 * shoulder_w),
              0.03, extra_color)


def _airplane(parts: _Parts) -> None:
  u = parts.uniform
  body_color, wing_color, accent = parts.colors(3)
  half_len, radius = u(0.75, 1.0), u(0.07, 0.12)
  parts.capsule((-half_len, 0, 0), (0.85 * half_len, 0, 0), radius, body_color)
  parts.ellipsoid((0.5 * half_len, 0.6 * radius, 0), (0.22 * half_len, 0.55 * radius,
                                                       0.6 * radius), accent)
  wing_x, wing_y = u(-0.1, 0.15) * half_len, u(-0.5, 0.3) * radius
  span, chord, thick = u(0.6, 0.95) * half_len, u(0.18, 0.3) * half_len, 0.025
  sweep, dihedral = np.radians(u(0, 35)), np.radians(u(-5, 10))
  engines_on_wings = parts.rng.uniform() < 0.7
  engine_r = u(0.4, 0.6) * radius
  engine_frac = u(0.3, 0.5)
  for side in (1, -1):
    root = np.array([wing_x, wing_y, side * 0.5 * radius])
    direction = np.array([-np.sin(sweep), np.sin(dihedral),
                          side * np.cos(sweep) * np.cos(dihedral)])
    direction /= np.linalg.norm(direction)
    chord_dir = np.cross(np.array([0.0, 1.0, 0.0]), direction) * side
    chord_dir /= np.linalg.norm(chord_dir)
    normal = np.cross(direction, chord_dir)
    frame = np.stack([chord_dir, normal, direction], axis=1)
    parts.box(root + direction * span / 2, (chord / 2, thick, span / 2), 0.012, wing_color,
              frame)
    if engines_on_wings:
      center = root + direction * span * engine_frac - (0, 1.5 * engine_r + thick, 0)
    else:
      center = np.array([-0.6 * half_len, 0.5 * radius, side * (radius + engine_r)])
    parts.capsule(center - (0.15 * half_len, 0, 0), center + (0.15 * half_len, 0, 0), engine_r,
                  accent)
  stab_y = u(0, 0.5) * radius
  parts.box((-0.9 * half_len, stab_y, 0), (0.12 * half_len, 0.015, u(0.25, 0.4) * half_len),
            0.01, wing_color)
  fin_h = u(0.25, 0.4) * half_len
  parts.box((-0.85 * half_len, radius + fin_h / 2, 0), (0.14 * half_len, fin_h / 2, 0.015), 0.01,
            wing_color, _rotation_z(u(15, 35)))


def _wheel(parts: _Parts, x: float, radius: float, side_z: float, width: float) -> None:
  parts.ellipsoid((x, radius, side_z), (radius, radius, width), _TIRE)


def _truck(parts: _Parts) -> None:
  u = parts.uniform
  cab_color, cargo_color, frame_color = parts.colors(3)
  half_len, half_w, wheel_r = u(0.8, 1.0), u(0.22, 0.3), u(0.1, 0.14)
  wheel_w = u(0.05, 0.07)
  chassis_y = 1.1 * wheel_r
  parts.box((0, chassis_y, 0), (half_len, 0.04, 0.9 * half_w), 0.01, frame_color)
  cab_len, cab_h = u(0.22, 0.32) * 2 * half_len, u(0.35, 0.5)
  floor = chassis_y + 0.04
  cab_x = half_len - cab_len / 2
  parts.box((cab_x, floor + cab_h / 2, 0), (cab_len / 2, cab_h / 2, half_w), 0.03, cab_color)
  cargo_len = 2 * half_len - cab_len - 0.04
  cargo_x = -half_len + cargo_len / 2
  kind = parts.rng.integers(3)
  if kind == 0:  # a box van
    cargo_h = u(1.0, 1.3) * cab_h
    parts.box((cargo_x, floor + cargo_h / 2, 0), (cargo_len / 2, cargo_h / 2, half_w), 0.02,
              cargo_color)
  elif kind == 1:  # a tanker
    tank_r = u(0.7, 0.95) * half_w
    parts.capsule((cargo_x - cargo_len / 2 + tank_r, floor + tank_r, 0),
                  (cargo_x + cargo_len / 2 - tank_r, floor + tank_r, 0), tank_r, cargo_color)
  else:  # an open bed
    bed_h = u(0.3, 0.5) * cab_h
    parts.box((cargo_x, floor + bed_h / 2, 0), (cargo_len / 2, bed_h / 2, half_w), 0.015,
              cargo_color)
  axles = [cab_x, -0.45 * half_len]
  if parts.rng.uniform() < 0.5:
    axles.append(-0.75 * half_len)
  for x in axles:
    for side in (1, -1):
      _wheel(parts, x, wheel_r, side * 0.9 * half_w, wheel_w)
  stack_x = half_len - cab_len - 0.02
  parts.capsule((stack_x, floor, 0.7 * half_w), (stack_x, floor + 1.1 * cab_h, 0.7 * half_w),
                0.025, frame_color)


def _car(parts: _Parts) -> None:
  u = parts.uniform
  body_color, cabin_color, extra_color = parts.colors(3)
  half_len, half_w, wheel_r = u(0.75, 0.95), u(0.3, 0.38), u(0.11, 0.15)
  body_h = u(0.12, 0.18)
  bottom = 0.5 * wheel_r
  parts.box((0, bottom + body_h / 2, 0), (half_len, body_h / 2, half_w), u(0.04, 0.06), body_color)
  cabin_h, cabin_len = u(0.12, 0.2), u(0.35, 0.55) * half_len
  cabin_x = u(-0.3, 0.1) * half_len
  top = bottom + body_h
  parts.box((cabin_x, top + cabin_h / 2, 0), (cabin_len, cabin_h / 2, 0.85 * half_w),
            u(0.05, 0.09), cabin_color, _rotation_z(u(-8, 8)))
  for x in (0.65 * half_len, -0.65 * half_len):
    for side in (1, -1):
      _wheel(parts, x, wheel_r, side * half_w, u(0.05, 0.07))
  extra = parts.rng.integers(3)
  if extra == 0:  # a rear spoiler
    parts.box((-0.9 * half_len, top + 0.06, 0), (0.07, 0.015, 0.9 * half_w), 0.01, extra_color)
  elif extra == 1:  # a roof box
    parts.box((cabin_x - 0.1 * cabin_len, top + cabin_h + 0.04, 0),
              (0.6 * cabin_len, 0.04, 0.5 * half_w), 0.02, extra_color)


_BUILDERS: tuple[Callable[[_Parts], None], ...] = (_animal, _human, _airplane, _truck, _car)


def _check_index(name: str, value, limit: int | None) -> int:
  accepted = f'an integer in [0, {limit})' if limit else 'a non-negative integer'
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0
      or (limit is not None and value >= limit)):
    raise ValueError(f'{name}={value!r}: expected {accepted}.')
  return int(value)


@functools.lru_cache(maxsize=128)
def _instance_params(category: int, instance: int) -> dict[str, np.ndarray]:
  parts = _Parts(np.random.default_rng([_SEED_SALT, category, instance]))
  _BUILDERS[category](parts)
  center, rotation, scale, half, rounding, color = (np.stack(x) for x in zip(*parts.parts))
  # Each part's extent along the toy's axes (rotation: local -> toy) bounds the toy's box.
  extent = np.einsum('nij,nj->ni', np.abs(rotation), scale * (half + rounding[:, None]))
  low, high = np.min(center - extent, axis=0), np.max(center + extent, axis=0)
  zoom = _TOY_RADIUS / np.linalg.norm((high - low) / 2)
  count = len(center)
  padding = NUM_PARTS - count
  params = {
      'center': np.concatenate([(center - (low + high) / 2) * zoom,
                                np.tile([0.0, _PARKED, 0.0], (padding, 1))]),
      # Stored toy -> local, the direction the distance needs.
      'rotation': np.concatenate([np.transpose(rotation, (0, 2, 1)),
                                  np.tile(np.eye(3), (padding, 1, 1))]),
      'scale': np.concatenate([scale * zoom, np.ones((padding, 3))]),
      'half': np.concatenate([half, np.zeros((padding, 3))]),
      'rounding': np.concatenate([rounding, np.ones(padding)]),
      'color': np.concatenate([color, np.full((padding, 3), 0.5)]),
  }
  params = {name: value.astype(np.float32) for name, value in params.items()}
  for value in params.values():
    value.setflags(write=False)
  return params


def instance_params(category: int, instance: int) -> dict[str, np.ndarray]:
  """The parts of toy `instance` of `category`: a pure function of the pair.

  Args:
    category: an index into `CATEGORIES`.
    instance: any non-negative integer; NORB's are `0..NUM_INSTANCES - 1`.

  Returns:
    Read-only float32 arrays, `NUM_PARTS` rows each (unused rows are parked far away):
    `'center' [N, 3]`, `'rotation' [N, 3, 3]` (toy -> part frame), `'scale' [N, 3]`,
    `'half' [N, 3]`, `'rounding' [N]` and `'color' [N, 3]` (RGB albedo in [0, 1]). Part `n`'s
    distance bound at `p` is `min(scale) * (|max(|q| - half, 0)| + min(max_i(|q_i| - half_i), 0)
    - rounding)` with `q = rotation (p - center) / scale`. The toy's bounding box is centred on
    the origin and its half-diagonal is 0.95.
  """
  category = _check_index('category', category, NUM_CATEGORIES)
  instance = _check_index('instance', instance, None)
  return _instance_params(category, instance)


@functools.lru_cache(maxsize=1)
def _all_params() -> dict[str, np.ndarray]:
  """`[NUM_CATEGORIES, NUM_INSTANCES, ...]` stacks of `instance_params`."""
  table = [[instance_params(c, i) for i in range(NUM_INSTANCES)] for c in range(NUM_CATEGORIES)]
  return {name: np.stack([np.stack([row[name] for row in cat]) for cat in table])
          for name in table[0][0]}


def all_instance_params() -> dict[str, np.ndarray]:
  """`instance_params` of every category and instance `0..NUM_INSTANCES - 1`, stacked.

  Returns:
    The arrays of `instance_params` with two leading axes, `[NUM_CATEGORIES, NUM_INSTANCES, ...]`.
  """
  return _all_params()


def _part_distances(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, z: jax.Array
                    ) -> list[jax.Array]:
  """Each part's distance bound at the points `(x, y, z)` (equal shapes), `NUM_PARTS` arrays.

  Coordinates are separate arrays and parts a Python loop, so that XLA fuses a whole evaluation
  into one elementwise kernel.
  """
  center, rotation, rounding = params['center'], params['rotation'], params['rounding']
  inverse_scale = 1.0 / params['scale']
  min_scale = jnp.min(params['scale'], axis=-1)
  distances = []
  for n in range(NUM_PARTS):
    offset = (x - center[n, 0], y - center[n, 1], z - center[n, 2])
    excess = []
    for i in range(3):
      local = (rotation[n, i, 0] * offset[0] + rotation[n, i, 1] * offset[1]
               + rotation[n, i, 2] * offset[2]) * inverse_scale[n, i]
      excess.append(jnp.abs(local) - params['half'][n, i])
    outside = jnp.sqrt(sum(jnp.square(jnp.maximum(e, 0.0)) for e in excess))
    inside = jnp.minimum(jnp.maximum(jnp.maximum(excess[0], excess[1]), excess[2]), 0.0)
    distances.append((outside + inside - rounding[n]) * min_scale[n])
  return distances


def _distance(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, z: jax.Array
              ) -> jax.Array:
  return functools.reduce(jnp.minimum, _part_distances(params, x, y, z))


def _turntable(azimuth: jax.Array) -> jax.Array:
  """The rotation taking room vectors into the toy's frame, `[3, 3]`."""
  # mod first: 360 becomes exactly 0, so a full turn gives the very same image.
  angle = jnp.radians(jnp.mod(azimuth, 360.0))
  c, s = jnp.cos(angle), jnp.sin(angle)
  zero, one = jnp.zeros_like(c), jnp.ones_like(c)
  # The toy turns by +azimuth about y; room -> toy is the inverse turn.
  return jnp.stack([jnp.stack([c, zero, -s]), jnp.stack([zero, one, zero]),
                    jnp.stack([s, zero, c])])


def _check_render_args(size, color, supersample) -> None:
  for name, value in dict(size=size, supersample=supersample).items():
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
      raise ValueError(f'{name}={value!r}: expected a positive integer.')
  if not isinstance(color, (bool, np.bool_)):
    raise ValueError(f'color={color!r}: expected a bool.')


def _check_light(light) -> None:
  """Raises for a concrete light index outside [0, NUM_LIGHTS); traced ones are clamped."""
  if isinstance(light, jax.core.Tracer):
    return
  values = np.asarray(light)
  if not np.issubdtype(values.dtype, np.integer) or np.any(values < 0) or np.any(
      values >= NUM_LIGHTS):
    raise ValueError(f'light={light!r}: expected integers in [0, {NUM_LIGHTS}).')


def _render(params: dict[str, jax.Array], azimuth: jax.Array, elevation: jax.Array,
            light: jax.Array, *, size: int, color: bool, supersample: int) -> jax.Array:
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  samples = size * supersample
  spacing = 2 * _VIEW_RADIUS / samples
  coords = (jnp.arange(samples, dtype=jnp.float32) + 0.5) * spacing - _VIEW_RADIUS
  right_amount, up_amount = jnp.meshgrid(coords, -coords)  # rows run downwards
  elev = jnp.radians(jnp.asarray(elevation, jnp.float32))
  room_to_toy = _turntable(jnp.asarray(azimuth, jnp.float32))
  forward = room_to_toy @ jnp.stack([0.0, -jnp.sin(elev), -jnp.cos(elev)])
  up = room_to_toy @ jnp.stack([0.0, jnp.cos(elev), -jnp.sin(elev)])
  right = room_to_toy @ jnp.array([1.0, 0.0, 0.0])
  origins = [right_amount * right[k] + up_amount * up[k] for k in range(3)]  # [s, s] each
  # Rays enter the bounding sphere at -half_chord and leave it at +half_chord.
  half_chord = jnp.sqrt(jnp.maximum(_VIEW_RADIUS**2 - jnp.square(right_amount)
                                    - jnp.square(up_amount), 0.0))

  def along(t, shift=(0.0, 0.0, 0.0)):
    return [origins[k] + t * forward[k] + shift[k] for k in range(3)]

  def march(carry, _):
    t, closest, t_closest = carry
    distance = _distance(params, *along(t))
    inside = t <= half_chord
    nearer = inside & (distance < closest)
    closest = jnp.where(nearer, distance, closest)
    t_closest = jnp.where(nearer, t, t_closest)
    t = jnp.where(inside, t + distance, t)
    return (t, closest, t_closest), None

  start = -half_chord
  (_, closest, t_closest), _ = jax.lax.scan(
      march, (start, jnp.full_like(start, jnp.inf), start), None, length=MARCH_STEPS)
  # Tetrahedral differences: sum_j k_j f(p + h k_j) = 4 h^2 grad f(p) + O(h^4).
  corners = np.array([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], np.float32)
  step = _NORMAL_STEP * spacing
  samples_at = [_distance(params, *along(t_closest, step * corner)) for corner in corners]
  gradient = [sum(corners[j, k] * samples_at[j] for j in range(4)) / (4 * step)
              for k in range(3)]
  slope = jnp.sqrt(sum(jnp.square(g) for g in gradient)) + 1e-12
  # An ellipsoid's bound grows slower than its true distance (slope < 1); dividing by the slope
  # is the first-order distance, which keeps flat ellipsoids from growing a blurred halo.
  edge_distance = closest / jnp.clip(slope, _MIN_SLOPE, 1.0)
  coverage = jnp.clip(1.0 - edge_distance / spacing, 0.0, 1.0)
  light_row = jnp.asarray(LIGHTS)[light]
  direction = room_to_toy @ (light_row[:3] / jnp.linalg.norm(light_row[:3]))
  cosine = sum(gradient[k] * direction[k] for k in range(3)) / slope
  radiance = light_row[4] + light_row[3] * jnp.maximum(cosine, 0.0)  # [s, s]
  # Each part's colour weighs in over about a sample's width from it, so that colour boundaries
  # move continuously too.
  nearness = -jnp.stack(_part_distances(params, *along(t_closest)), axis=-1) / (
      _COLOR_BLEND * spacing)
  albedo = jax.nn.softmax(nearness, axis=-1) @ params['color']  # [s, s, 3]
  if not color:
    luma = albedo @ jnp.array([0.299, 0.587, 0.114], jnp.float32)
    albedo = (_GRAY_LOW + (1 - _GRAY_LOW) * luma)[..., None]
  shaded = 2.0 * albedo * radiance[..., None] - 1.0
  image = BACKGROUND + coverage[..., None] * (shaded - BACKGROUND)
  channels = image.shape[-1]
  image = image.reshape(size, supersample, size, supersample, channels).mean(axis=(1, 3))
  return jnp.clip(image, -1.0, 1.0)


def render(params: dict[str, Any], azimuth: Any, elevation: Any, light: Any, *,
           size: int = 32, color: bool = False, supersample: int = 1) -> jax.Array:
  """Renders one toy; pure, jit-able (bind `size` and `color`) and vmappable over the rest.

  Args:
    params: the arrays of `instance_params` (or any edited copy of them).
    azimuth: the turntable's angle, degrees, any real (periodic in 360).
    elevation: the camera's angle above the horizon, degrees (NORB: 30-70).
    light: an integer in `[0, NUM_LIGHTS)`, a row of `LIGHTS`; traced values are clamped.
    size: `S`, the side of the image, pixels.
    color: RGB with the parts' colours, or one gray channel.
    supersample: rays per pixel along each axis, averaged.

  Returns:
    `[S, S, 1]` (or `[S, S, 3]` with `color`) float32 in [-1, 1]; the background is `BACKGROUND`.
  """
  _check_render_args(size, color, supersample)
  _check_light(light)
  return _render(params, azimuth, elevation, light, size=int(size), color=bool(color),
                 supersample=int(supersample))


@functools.partial(jax.jit, static_argnames=('size', 'color', 'supersample'))
def _render_batch(categories, instances, azimuths, elevations, lights, *, size, color,
                  supersample):
  table = jax.tree.map(jnp.asarray, all_instance_params())
  params = jax.tree.map(lambda x: x[categories, instances], table)
  return jax.vmap(functools.partial(_render, size=size, color=color, supersample=supersample))(
      params, azimuths, elevations, lights)


def _check_batch_indices(name: str, values, limit: int) -> None:
  if isinstance(values, jax.core.Tracer):
    return
  array = np.asarray(values)
  if not np.issubdtype(array.dtype, np.integer) or np.any(array < 0) or np.any(array >= limit):
    raise ValueError(f'{name}={values!r}: expected integers in [0, {limit}).')


def render_batch(categories: Any, instances: Any, azimuths: Any, elevations: Any, lights: Any,
                 *, size: int = 32, color: bool = False, supersample: int = 1) -> jax.Array:
  """Renders `B` toys of the stock instances; compiled once per `(size, color, supersample)`
  and `B`.

  Each argument is `[B]` or a scalar shared by every row (at least one must be `[B]`).

  Args:
    categories: integers in `[0, NUM_CATEGORIES)`.
    instances: integers in `[0, NUM_INSTANCES)`.
    azimuths: degrees.
    elevations: degrees.
    lights: integers in `[0, NUM_LIGHTS)`.
    size: `S`, the side of the images, pixels.
    color: RGB images, or one gray channel.
    supersample: rays per pixel along each axis, averaged.

  Returns:
    `[B, S, S, C]` float32 in [-1, 1], `C` 3 with `color`, else 1; row `b` is
    `render(instance_params(categories[b], instances[b]), azimuths[b], elevations[b], lights[b])`
    with the same keywords.
  """
  _check_render_args(size, color, supersample)
  args = dict(categories=categories, instances=instances, azimuths=azimuths,
              elevations=elevations, lights=lights)
  shapes = {name: tuple(np.shape(value)) for name, value in args.items()}
  rows = {shape for shape in shapes.values() if shape}
  if len(rows) != 1 or len(next(iter(rows))) != 1:
    raise ValueError(f'categories/instances/azimuths/elevations/lights: expected [B] arrays or '
                     f'scalars with one B, got shapes {shapes}.')
  (count,), = rows
  for name, limit in (('categories', NUM_CATEGORIES), ('instances', NUM_INSTANCES),
                      ('lights', NUM_LIGHTS)):
    _check_batch_indices(name, args[name], limit)
  dtypes = dict(categories=jnp.int32, instances=jnp.int32, azimuths=jnp.float32,
                elevations=jnp.float32, lights=jnp.int32)
  arrays = {name: jnp.broadcast_to(jnp.asarray(value, dtypes[name]), (count,))
            for name, value in args.items()}
  return _render_batch(**arrays, size=int(size), color=bool(color), supersample=int(supersample))


__all__ = ['ANIMAL', 'AIRPLANE', 'BACKGROUND', 'CAR', 'CATEGORIES', 'HUMAN', 'LIGHTS',
           'MARCH_STEPS', 'NUM_CATEGORIES', 'NUM_INSTANCES', 'NUM_LIGHTS', 'NUM_PARTS',
           'TEST_INSTANCES', 'TRAIN_INSTANCES', 'TRUCK', 'all_instance_params',
           'instance_params', 'render', 'render_batch']
