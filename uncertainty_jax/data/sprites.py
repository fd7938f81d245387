"""`sprites`: procedurally drawn 2-D game characters, the default identity dataset of chapter 5.

Section 5.4.3 uses the Sprites of Reed et al. (2015), side-view characters of the Liberated Pixel
Cup whose identity is seven attributes (body type, gender, hair type, armour type, arm type,
greaves type, weapon type) and whose pose is what the animation changes. Those sprites are not
downloadable here, so this module draws characters in their spirit, in JAX.

What is drawn. A side-view figure facing right (or mirrored to face left) over a plain
`BACKGROUND`: two legs (thigh and shin) with shoes, a torso, a head with an eye and hair, two arms
(upper arm and forearm) with hands, and a weapon in the near hand. Every part is a signed distance
(discs, capsules and rounded vertical trapezoids, some cut by half-planes); its coverage is a
linear clamp of the distance over one pixel, and parts are composited back to front, each over a
dark outline `_OUTLINE` wide: far leg, far arm (both shaded darker), near leg, torso, skirt,
belt, pauldron, back hair, head, eye, top hair, near arm, weapon, hand, shield. Lengths
are fractions of the image side, so a 64x64 image draws the figure of a 32x32 one at twice the
resolution.

The identity, `[7]` int32, attribute `a` in `0 .. IDENTITY_SIZES[a] - 1` (`IDENTITY_VALUES`):

* body (4): pale and slim, tan, brown and broad, green orc and broadest: the skin of the head,
  hands and bare limbs, the torso's width and the head's size;
* gender (2): male (broad shoulders, narrow waist) or female (narrow shoulders, wider waist and a
  skirt of the armour's colour), the two sexes of the LPC sprites;
* hair (5): bald, short brown, long blond (down the back), red mohawk (a crest above the head),
  black ponytail;
* armour (4): white cloth shirt, brown leather with a dark belt, grey chain mail with a dark belt,
  gold plate with a belt and a shoulder pauldron;
* arm (4): bare, blue sleeves, leather bracers (brown forearms), steel gauntlets (grey, thicker
  arms and hands);
* greaves (4): bare legs and sandals, blue trousers and black shoes, tan trousers and tall brown
  boots, steel greaves (grey, thicker legs);
* weapon (5): none, sword, spear, axe, shield, held in the near hand.

The pose, `[P]` float32 (`POSE_NAMES`, drawn uniformly over `POSE_RANGES`):

* x_position in [0.34, 0.66]: the character's vertical axis (hips, shoulders; mirroring is about
  it), a fraction of the image width from the left edge;
* y_position in [0.75, 0.89]: the soles' height when the legs are straight, a fraction of the
  image height from the top; shifting either position by `k / S` shifts the image by `k` pixels;
* facing in {0, 1}: 0 faces right, 1 (any value >= 0.5) draws the mirror image about the axis;
* walk_phase in [0, 1): the stride, periodic in 1: legs swing by +-30 degrees as
  `sin(2 pi walk_phase)`, the knee of the leg in front bends, arms swing against the legs;
* attack in [0, 1]: raises the weapon arm from 15 to 120 degrees from hanging straight down.

These ranges keep every character, weapons included, inside the frame with a pixel to spare at
`image_size` 16 and more.

Identities. All `NUM_IDENTITIES` = 4 * 2 * 5 * 4 * 4 * 4 * 5 = 12800 combinations exist;
identity `v` is a test identity iff `sum_a SPLIT_WEIGHTS[a] * v[a]` is divisible by 7 (1829 test
identities, 14.3%), a training identity otherwise. Every attribute has fewer than 7 values and a
weight prime to 7, so changing one attribute of a test identity always gives a training
identity: every value of every attribute, and every pair of values, occurs in training, and the
test identities are unseen combinations of seen values, as in 5.4.3.

Randomness. `jax.random.key(seed)` splits into a training key and an evaluation key. Training row
`i` of step `k` folds `k`, then `i` into the training key and draws a training identity `id1`
uniformly, a different training identity `id2` uniformly among the others, and three poses: `y1`
and `y1_same` draw `id1` in the first two, `y2` draws `id2` in the third. A batch thus depends on
`(seed, k)` alone, not on the process count; each process renders its consecutive rows and
`base.make_global_batch` assembles them. `arrays(split)` draws example `i` of a split from the
evaluation key folded with the split's index (0 train, 1 test), then `i`: an identity uniformly
among the split's identities and a pose.

Ground truth of a swap. The image with the identity `s` of image `a` and the unspecified factors
`z` of image `b` is `render(identity_a, pose_b)`; `arrays(split)` keeps every image's `identity`
and `pose` so the renderer can draw it.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import identity as identity_data

IDENTITY_NAMES = ('body', 'gender', 'hair', 'armour', 'arm', 'greaves', 'weapon')
IDENTITY_VALUES = (
    ('pale slim', 'tan', 'brown broad', 'green orc'),
    ('male', 'female'),
    ('bald', 'short brown', 'long blond', 'red mohawk', 'black ponytail'),
    ('cloth shirt', 'leather', 'chain mail', 'gold plate'),
    ('bare', 'sleeves', 'bracers', 'gauntlets'),
    ('bare legs', 'trousers', 'boots', 'steel greaves'),
    ('none', 'sword', 'spear', 'axe', 'shield'),
)
IDENTITY_SIZES = tuple(len(values) for values in IDENTITY_VALUES)
NUM_IDENTITIES = math.prod(IDENTITY_SIZES)
POSE_NAMES = ('x_position', 'y_position', 'facing', 'walk_phase', 'attack')
POSE_RANGES = ((0.34, 0.66), (0.75, 0.89), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0))
NUM_POSE = len(POSE_NAMES)
# Identity v is a test identity iff dot(SPLIT_WEIGHTS, v) % SPLIT_MODULUS == 0.
SPLIT_WEIGHTS = (1, 2, 3, 4, 5, 6, 1)
SPLIT_MODULUS = 7
MIN_IMAGE_SIZE = 16
# RGB in [0, 1] before the final map to [-1, 1].
BACKGROUND = (0.80, 0.86, 0.92)
# Every weapon pixel lies within this distance of the near hand's centre (fractions of the
# image side, outline included; add a pixel for the anti-aliasing).
WEAPON_REACH = 0.27

_FACING = POSE_NAMES.index('facing')
# Pixels per compiled call when rendering on the host (256 images of 32x32): one program for any
# count, and a bounded memory for the `[n, parts, S, S]` coverages.
_CHUNK_PIXELS = 256 * 32 * 32
# Distances this large put a part out of every pixel's reach (a part that is switched off).
_FAR = 10.0
_MAX_CUTS = 3
_OUTLINE = 0.018
_OUTLINE_SHADE = 0.3
_FAR_SHADE = 0.72

# The figure is drawn in units of `_SCALE` image sides; the proportions below are in those
# units, from the soles (y = 0, y grows downwards).
_SCALE = 0.9
_HIP_Y = -0.275
_THIGH = 0.13
_SHIN = 0.12
_LEG_RADIUS = 0.033
_SHOULDER_Y = -0.475
_ARM = 0.2
_ARM_RADIUS = 0.027
_HAND_RADIUS = 0.03
_HEAD_Y = -0.555
_HEAD_RADIUS = 0.08
_LEG_SWING = math.radians(30.0)
_KNEE_BEND = math.radians(40.0)
_ARM_SWING = math.radians(25.0)
# The weapon arm swings less, and not at all once fully raised.
_NEAR_ARM_SWING = math.radians(15.0)
_ATTACK_ANGLES = (math.radians(15.0), math.radians(120.0))
# The weapon points this far past the forearm's direction, towards the front and up.
_GRIP_ANGLE = math.radians(100.0)
_SPEAR_GRIP_ANGLE = math.radians(150.0)

_SKIN = np.array([(0.98, 0.82, 0.70), (0.87, 0.64, 0.44), (0.50, 0.33, 0.22), (0.45, 0.66, 0.33)],
                 np.float32)
# Per body: torso width, head size.
_BUILD = np.array([(0.85, 0.95), (1.0, 1.0), (1.15, 1.05), (1.3, 1.1)], np.float32)
_HAIR = np.array([(0.0, 0.0, 0.0), (0.40, 0.24, 0.12), (0.97, 0.85, 0.38), (0.90, 0.15, 0.10),
                  (0.12, 0.10, 0.12)], np.float32)
_ARMOUR = np.array([(0.96, 0.96, 0.93), (0.58, 0.36, 0.18), (0.55, 0.58, 0.62), (0.95, 0.75, 0.15)],
                   np.float32)
_BELT = np.array([(0.0, 0.0, 0.0), (0.25, 0.14, 0.06), (0.22, 0.22, 0.26), (0.55, 0.15, 0.10)],
                 np.float32)
_SLEEVE = np.array([(0.0, 0.0, 0.0), (0.20, 0.35, 0.85), (0.55, 0.30, 0.12), (0.70, 0.72, 0.78)],
                   np.float32)
_TROUSERS = np.array([(0.0, 0.0, 0.0), (0.15, 0.22, 0.60), (0.78, 0.66, 0.45),
                      (0.70, 0.72, 0.78)], np.float32)
_SHOES = np.array([(0.55, 0.38, 0.2), (0.08, 0.08, 0.1), (0.42, 0.22, 0.08), (0.55, 0.57, 0.62)],
                  np.float32)
_STEEL = (0.82, 0.85, 0.90)
_WOOD = (0.50, 0.30, 0.12)
_GOLD = (0.95, 0.78, 0.20)
_SHIELD = (0.70, 0.12, 0.12)
_EYE = (0.08, 0.06, 0.08)


def identity_index(identities: Any) -> np.ndarray:
  """The row-major index of identities `[..., 7]` among the `NUM_IDENTITIES` combinations."""
  return np.ravel_multi_index(tuple(np.moveaxis(np.asarray(identities), -1, 0)), IDENTITY_SIZES)


def _all_identities() -> np.ndarray:
  grids = np.meshgrid(*(np.arange(n) for n in IDENTITY_SIZES), indexing='ij')
  return np.stack([g.reshape(-1) for g in grids], axis=-1).astype(np.int32)


def _is_test(identities: np.ndarray) -> np.ndarray:
  return identities @ np.asarray(SPLIT_WEIGHTS) % SPLIT_MODULUS == 0


def _read_only(array: np.ndarray) -> np.ndarray:
  array.setflags(write=False)
  return array


_ALL = _all_identities()
_TRAIN_IDENTITIES = _read_only(_ALL[~_is_test(_ALL)])
_TEST_IDENTITIES = _read_only(_ALL[_is_test(_ALL)])


def train_identities() -> np.ndarray:
  """The training identities, `[n_train, 7]` int32 in row-major order, read-only."""
  return _TRAIN_IDENTITIES


def test_identities() -> np.ndarray:
  """The test identities (unseen combinations), `[n_test, 7]` int32, read-only."""
  return _TEST_IDENTITIES


# Parts are capsules or vertical trapezoids, optionally cut by half-planes. Lengths are in the
# figure's units (`_SCALE` image sides); points are `(x, y)`, y down.


def _capsule_distance(x, y, segments):
  """Distances `[K, S, S]` of pixels `x`, `y` (`[S, S]`) to capsules `[K, 5]`
  (`ax, ay, bx, by, radius`); a capsule with `a == b` is a disc."""
  ax, ay, bx, by, radius = (segments[:, i, None, None] for i in range(5))
  dx, dy = bx - ax, by - ay
  # The reciprocal is per capsule; multiplying by it spares a division per pixel.
  inverse = 1.0 / (dx * dx + dy * dy + 1e-12)
  t = jnp.clip(((x - ax) * dx + (y - ay) * dy) * inverse, 0.0, 1.0)
  ex, ey = x - ax - t * dx, y - ay - t * dy
  return jnp.sqrt(ex * ex + ey * ey) - radius


def _trapezoid_distance(x, y, trapezoids):
  """Distances `[K, S, S]` to vertical trapezoids `[K, 6]` (`cx, top, bottom, top_half,
  bottom_half, rounding`), rounded by `rounding` outside the nominal outline (Quilez' exact
  trapezoid distance)."""
  cx, top, bottom, top_half, bottom_half, rounding = (trapezoids[:, i, None, None]
                                                      for i in range(6))
  half = (bottom - top) / 2
  px, py = jnp.abs(x - cx), y - (top + bottom) / 2
  r1, r2 = top_half - rounding, bottom_half - rounding
  ca_x = px - jnp.minimum(px, jnp.where(py < 0, r1, r2))
  ca_y = jnp.abs(py) - half
  k2x, k2y = r2 - r1, 2 * half
  t = jnp.clip(((r2 - px) * k2x + (half - py) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
  cb_x, cb_y = px - r2 + k2x * t, py - half + k2y * t
  sign = jnp.where((cb_x < 0) & (ca_y < 0), -1.0, 1.0)
  return sign * jnp.sqrt(jnp.minimum(ca_x**2 + ca_y**2, cb_x**2 + cb_y**2)) - rounding


def _direction(angle):
  """The unit vector at `angle` radians from straight down, positive towards the front."""
  return jnp.sin(angle), jnp.cos(angle)


def _along(point, direction, length):
  return point[0] + length * direction[0], point[1] + length * direction[1]


def _half_plane(normal, point, offset=0.0):
  """Keeps `normal . (p - point) < offset`: `(nx, ny, c)` with distance `n . p - c`."""
  return normal[0], normal[1], normal[0] * point[0] + normal[1] * point[1] + offset


def _pack(values) -> jax.Array:
  return jnp.stack([jnp.asarray(v, jnp.float32) for v in values])


class _Layers:
  """The parts of one character, back to front.

  The list's structure (which parts, their kinds, outlines and cuts) is the same for every
  identity and pose; `on` switches a part off, so that one program draws every character.
  """

  def __init__(self):
    self.kinds: list[str] = []
    self.capsules: list[jax.Array] = []
    self.trapezoids: list[jax.Array] = []
    self.cuts: dict[int, jax.Array] = {}
    self.outlines: list[bool] = []
    self.colors: list[jax.Array] = []
    self.on: list[Any] = []

  def _add(self, kind, color, on, outline, cuts):
    if cuts:
      self.cuts[len(self.kinds)] = jnp.stack([_pack(cut) for cut in cuts])
    self.kinds.append(kind)
    self.colors.append(jnp.broadcast_to(jnp.asarray(color, jnp.float32), (3,)))
    self.on.append(on)
    self.outlines.append(outline)

  def capsule(self, a, b, radius, color, on=True, outline=True, cuts=()):
    self.capsules.append(_pack((*a, *b, radius)))
    self._add('capsule', color, on, outline, cuts)

  def disc(self, centre, radius, color, on=True, outline=True, cuts=()):
    self.capsule(centre, centre, radius, color, on, outline, cuts)

  def trapezoid(self, cx, top, bottom, top_half, bottom_half, rounding, color, on=True,
                outline=True, cuts=()):
    self.trapezoids.append(_pack((cx, top, bottom, top_half, bottom_half, rounding)))
    self._add('trapezoid', color, on, outline, cuts)

  def distances(self, x, y):
    """`[K, S, S]` signed distances of the parts, in drawing order, `_FAR` where off."""
    order = np.argsort(np.argsort([kind == 'trapezoid' for kind in self.kinds], kind='stable'))
    distances = jnp.concatenate([_capsule_distance(x, y, jnp.stack(self.capsules)),
                                 _trapezoid_distance(x, y, jnp.stack(self.trapezoids))])[order]
    cut_rows = np.asarray(sorted(self.cuts))
    # Missing cuts are (0, 0, FAR): a distance of -FAR everywhere.
    spare = jnp.asarray([0.0, 0.0, _FAR], jnp.float32)
    cuts = jnp.stack([jnp.concatenate([self.cuts[row], jnp.tile(
        spare, (_MAX_CUTS - self.cuts[row].shape[0], 1))]) for row in cut_rows])[..., None, None]
    cut = jnp.max(cuts[:, :, 0] * x + cuts[:, :, 1] * y - cuts[:, :, 2], axis=1)
    distances = distances.at[cut_rows].max(cut)
    on = jnp.stack([jnp.asarray(value) for value in self.on])
    return jnp.where(on[:, None, None], distances, _FAR)


def _skeleton(pose):
  """Joint positions of a pose `[P]` in the character's frame (x towards its front, y down, the
  soles' line at 0, figure units) and the near arm's angle from straight down."""
  phase = 2 * jnp.pi * pose[3]
  swing = jnp.sin(phase)
  low, high = _ATTACK_ANGLES
  angles = {
      'near_thigh': _LEG_SWING * swing,
      'far_thigh': -_LEG_SWING * swing,
      'near_arm': low + (high - low) * pose[4] - _NEAR_ARM_SWING * swing * (1 - pose[4]),
      'far_arm': _ARM_SWING * swing,
  }
  # The knee of the leg that swings forward bends, lifting its foot.
  angles['near_shin'] = angles['near_thigh'] - _KNEE_BEND * jnp.maximum(jnp.cos(phase), 0.0)
  angles['far_shin'] = angles['far_thigh'] - _KNEE_BEND * jnp.maximum(-jnp.cos(phase), 0.0)
  shoulder = (0.0, _SHOULDER_Y + 0.025)
  hip = (0.0, _HIP_Y)
  joints = {'hip': hip, 'shoulder': shoulder}
  for side in ('near', 'far'):
    knee = _along(hip, _direction(angles[f'{side}_thigh']), _THIGH)
    joints[f'{side}_knee'] = knee
    joints[f'{side}_ankle'] = _along(knee, _direction(angles[f'{side}_shin']), _SHIN)
    joints[f'{side}_elbow'] = _along(shoulder, _direction(angles[f'{side}_arm']), _ARM / 2)
    joints[f'{side}_hand'] = _along(shoulder, _direction(angles[f'{side}_arm']), _ARM)
  return joints, angles['near_arm']


def _local_frame(pose, size):
  """Pixel centres in the character's frame: `(x, y)`, `[S, S]` each, figure units."""
  centres = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
  y, x = jnp.meshgrid(centres, centres, indexing='ij')
  facing = jnp.where(pose[_FACING] >= 0.5, -1.0, 1.0)
  return facing * (x - pose[0]) / _SCALE, (y - pose[1]) / _SCALE


def _leg(layers, joints, side, attrs, skin, shade):
  greaves = attrs['greaves']
  radius = _LEG_RADIUS * jnp.where(greaves == 3, 1.2, 1.0)
  hip, knee, ankle = joints['hip'], joints[f'{side}_knee'], joints[f'{side}_ankle']
  cloth = jnp.where(greaves == 0, skin, jnp.asarray(_TROUSERS)[greaves]) * shade
  shoe = jnp.asarray(_SHOES)[greaves] * shade
  layers.capsule(hip, knee, radius, cloth)
  layers.capsule(knee, ankle, radius * 0.95, cloth)
  # Tall boots cover the shin from just below the knee.
  boot_top = _along(knee, (ankle[0] - knee[0], ankle[1] - knee[1]), 0.3)
  layers.capsule(boot_top, ankle, radius * 1.1, shoe, on=greaves == 2)
  layers.capsule((ankle[0] - 0.008, ankle[1] + 0.005), (ankle[0] + 0.045, ankle[1] + 0.008),
                 0.022, shoe)


def _arm(layers, joints, side, attrs, skin, shade):
  arm = attrs['arm']
  radius = _ARM_RADIUS * jnp.where(arm == 3, 1.25, 1.0)
  shoulder, elbow = joints['shoulder'], joints[f'{side}_elbow']
  sleeve = jnp.asarray(_SLEEVE)[arm]
  upper = jnp.where((arm == 1) | (arm == 3), sleeve, skin)
  lower = jnp.where(arm == 0, skin, sleeve)
  layers.capsule(shoulder, elbow, radius, upper * shade)
  layers.capsule(elbow, joints[f'{side}_hand'], radius * 0.95, lower * shade)


def _hand(layers, joints, side, attrs, skin, shade):
  gauntlet = attrs['arm'] == 3
  layers.disc(joints[f'{side}_hand'], _HAND_RADIUS * jnp.where(gauntlet, 1.15, 1.0),
              jnp.where(gauntlet, jnp.asarray(_SLEEVE)[3], skin) * shade)


def _weapon(layers, hand, arm_angle, weapon):
  """Sword and axe lie along `_GRIP_ANGLE` past the forearm, the spear along
  `_SPEAR_GRIP_ANGLE` (upright when the arm is down, over the shoulder when raised)."""
  sword, spear, axe = weapon == 1, weapon == 2, weapon == 3
  d = _direction(arm_angle + jnp.where(spear, _SPEAR_GRIP_ANGLE, _GRIP_ANGLE))
  # The blade side of an axe: the weapon's direction turned towards the front.
  n = (d[1], -d[0])
  layers.capsule(_along(hand, d, 0.03), _along(hand, d, 0.19), 0.014, _STEEL, sword)
  guard = _along(hand, d, 0.035)
  layers.capsule(_along(guard, n, -0.035), _along(guard, n, 0.035), 0.012, _GOLD, sword)
  layers.capsule(_along(hand, d, -0.03), _along(hand, d, 0.03), 0.012, _WOOD, sword)
  layers.capsule(_along(hand, d, -0.05), _along(hand, d, 0.2), 0.011, _WOOD, spear)
  layers.capsule(_along(hand, d, 0.205), _along(hand, d, 0.245), 0.018, _STEEL, spear)
  layers.capsule(_along(hand, d, -0.04), _along(hand, d, 0.2), 0.012, _WOOD, axe)
  # The blade: half a disc on the blade side, cut to a band along the handle.
  head = _along(hand, d, 0.16)
  layers.disc(_along(head, n, -0.005), 0.06, _STEEL, axe, cuts=(
      _half_plane((-n[0], -n[1]), head), _half_plane(d, head, 0.045),
      _half_plane((-d[0], -d[1]), head, 0.045)))


def _draw_one(identity_row, pose, size):
  """One character `[S, S, 3]` in [0, 1]: identity `[7]` int32, pose `[P]` float32."""
  attrs = dict(zip(IDENTITY_NAMES, [identity_row[a] for a in range(len(IDENTITY_NAMES))]))
  joints, arm_angle = _skeleton(pose)
  layers = _Layers()
  skin = jnp.asarray(_SKIN)[attrs['body']]
  width, head_scale = jnp.asarray(_BUILD)[attrs['body']]
  female = attrs['gender'] == 1
  armour = attrs['armour']

  _leg(layers, joints, 'far', attrs, skin, _FAR_SHADE)
  _arm(layers, joints, 'far', attrs, skin, _FAR_SHADE)
  _hand(layers, joints, 'far', attrs, skin, _FAR_SHADE)
  _leg(layers, joints, 'near', attrs, skin, 1.0)

  shoulders = jnp.where(female, 0.052, 0.068) * width
  waist = jnp.where(female, 0.06, 0.054) * width
  torso = (0.0, _SHOULDER_Y, _HIP_Y + 0.02, shoulders, waist, 0.018)
  torso_color = jnp.asarray(_ARMOUR)[armour]
  layers.trapezoid(*torso, torso_color)
  layers.trapezoid(0.0, _HIP_Y - 0.02, _HIP_Y + 0.1, waist, waist * 1.45, 0.01,
                   torso_color * 0.85, on=female)
  belt_y = _HIP_Y - 0.01
  layers.trapezoid(*torso, jnp.asarray(_BELT)[armour], on=armour > 0, outline=False, cuts=(
      _half_plane((0.0, 1.0), (0.0, belt_y), 0.014),
      _half_plane((0.0, -1.0), (0.0, belt_y), 0.014)))
  layers.disc((0.0, _SHOULDER_Y + 0.03), 0.042, jnp.asarray(_GOLD) * 0.9, on=armour == 3)

  hair = attrs['hair']
  hair_color = jnp.asarray(_HAIR)[hair]
  head_radius = _HEAD_RADIUS * head_scale
  head = (0.012, _HEAD_Y + _HEAD_RADIUS - head_radius)
  layers.capsule((head[0] - 0.05, head[1]), (head[0] - 0.065, head[1] + 0.115), 0.034,
                 hair_color, on=hair == 2)
  tail = (head[0] - head_radius - 0.02, head[1] - 0.02)
  layers.capsule(tail, (tail[0] - 0.035, tail[1] + 0.09), 0.018, hair_color, on=hair == 4)
  layers.disc(tail, 0.028, hair_color, on=hair == 4)
  layers.disc(head, head_radius, skin)
  layers.disc((head[0] + 0.6 * head_radius, head[1] - 0.1 * head_radius), 0.014, _EYE,
              outline=False)
  # The hairline runs diagonally: hair covers the top and the back, not the face.
  layers.disc(head, head_radius + 0.012, hair_color, on=(hair == 1) | (hair == 2) | (hair == 4),
              cuts=(_half_plane((0.6, 0.8), head, -0.2 * head_radius),))
  layers.capsule((head[0] - 0.055, head[1] - 0.8 * head_radius),
                 (head[0] + 0.025, head[1] - head_radius - 0.018), 0.022, hair_color,
                 on=hair == 3)

  _arm(layers, joints, 'near', attrs, skin, 1.0)
  weapon = attrs['weapon']
  hand = joints['near_hand']
  _weapon(layers, hand, arm_angle, weapon)
  _hand(layers, joints, 'near', attrs, skin, 1.0)
  layers.trapezoid(hand[0] + 0.025, hand[1] - 0.085, hand[1] + 0.075, 0.035, 0.025, 0.02,
                   _SHIELD, on=weapon == 4)
  layers.disc((hand[0] + 0.025, hand[1] - 0.01), 0.016, _GOLD, on=weapon == 4)

  x, y = _local_frame(pose, size)
  distances = layers.distances(x, y)
  # Distances in pixels: coverage ramps from 1 to 0 over the pixel across the outline.
  pixels = distances * (size * _SCALE)
  outlined = jnp.asarray(layers.outlines, jnp.float32)[:, None, None]
  fill = jnp.clip(0.5 - pixels, 0.0, 1.0)
  outline = jnp.clip(0.5 + _OUTLINE * size * _SCALE - pixels, 0.0, 1.0) * outlined

  def over(image, layer):
    """Paints one part's outline, then its fill."""
    outline, fill, color = layer
    image = image + (_OUTLINE_SHADE * color - image) * outline[..., None]
    return image + (color - image) * fill[..., None], None

  background = jnp.broadcast_to(jnp.asarray(BACKGROUND, jnp.float32), (size, size, 3))
  return jax.lax.scan(over, background, (outline, fill, jnp.stack(layers.colors)))[0]


@functools.partial(jax.jit, static_argnames=('size',))
def _draw_jit(identities, poses, *, size):
  return _draw(identities, poses, size=size)


def _draw(identities, poses, *, size):
  images = jax.vmap(functools.partial(_draw_one, size=size))(
      identities.astype(jnp.int32), poses.astype(jnp.float32))
  return 2.0 * images - 1.0


def _check_size(size) -> int:
  if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < MIN_IMAGE_SIZE:
    raise ValueError(f'size={size!r}: expected an integer >= {MIN_IMAGE_SIZE}.')
  return int(size)


def _check_render_inputs(identities, poses) -> None:
  id_shape, pose_shape = np.shape(identities), np.shape(poses)
  if len(id_shape) != 2 or id_shape[1] != len(IDENTITY_NAMES):
    raise ValueError(f'identity: shape {id_shape}: expected [N, {len(IDENTITY_NAMES)}].')
  if len(pose_shape) != 2 or pose_shape[1] != NUM_POSE or pose_shape[0] != id_shape[0]:
    raise ValueError(f'pose: shape {pose_shape}: expected [N, {NUM_POSE}] with the N of '
                     f'identity ({id_shape[0]}).')
  if not isinstance(identities, jax.core.Tracer):
    values = np.asarray(identities)
    if not np.issubdtype(values.dtype, np.integer):
      raise ValueError(f'identity: dtype {values.dtype}: expected integers.')
    bad = (values < 0) | (values >= np.asarray(IDENTITY_SIZES))
    if np.any(bad):
      row, column = map(int, np.argwhere(bad)[0])
      raise ValueError(f'identity[{row}, {column}]={int(values[row, column])}: expected an '
                       f'integer in [0, {IDENTITY_SIZES[column]}) for {IDENTITY_NAMES[column]!r}.')
  if not isinstance(poses, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(poses))):
    raise ValueError('pose: expected finite values.')


def render(identity: Any, pose: Any, *, size: int = 32) -> jax.Array:
  """Draws characters; jit-able (bind `size`), compiled once per `(N, size)` when called eagerly.

  Args:
    identity: `[N, 7]` integers, attribute `a` in `[0, IDENTITY_SIZES[a])`.
    pose: `[N, P]` floats, columns `POSE_NAMES` (any finite values; `POSE_RANGES` keep the
      character in the frame).
    size: `S`, the side of the images in pixels, at least `MIN_IMAGE_SIZE`.

  Returns:
    `[N, S, S, 3]` float32 in [-1, 1].
  """
  size = _check_size(size)
  _check_render_inputs(identity, pose)
  if isinstance(identity, jax.core.Tracer) or isinstance(pose, jax.core.Tracer):
    return _draw(jnp.asarray(identity), jnp.asarray(pose), size=size)
  return _draw_jit(jnp.asarray(identity, jnp.int32), jnp.asarray(pose, jnp.float32), size=size)


def hand_position(pose: Any, *, size: int = 32) -> np.ndarray:
  """The near (weapon) hand's centre in pixels, `[N, 2]` (column, row), for poses `[N, P]`.

  Pixel `(i, j)` of an image covers columns `[j, j + 1)` and rows `[i, i + 1)`.
  """
  size = _check_size(size)
  pose = np.asarray(pose, np.float32)
  if pose.ndim != 2 or pose.shape[1] != NUM_POSE:
    raise ValueError(f'pose: shape {pose.shape}: expected [N, {NUM_POSE}].')
  local = np.stack([np.asarray(jax.vmap(_skeleton)(jnp.asarray(pose))[0]['near_hand'][k])
                    for k in range(2)], axis=-1)
  facing = np.where(pose[:, _FACING] >= 0.5, -1.0, 1.0)
  return np.stack([pose[:, 0] + facing * _SCALE * local[:, 0], pose[:, 1] + _SCALE * local[:, 1]],
                  axis=-1) * size


def sample_poses(key: jax.Array, count: int) -> jax.Array:
  """`count` poses `[count, P]` float32, uniform over `POSE_RANGES` (facing 0 or 1 with
  probability 1/2 each); pure and jit-able."""
  u = jax.random.uniform(key, (count, NUM_POSE))
  low = jnp.asarray([r[0] for r in POSE_RANGES], jnp.float32)
  high = jnp.asarray([r[1] for r in POSE_RANGES], jnp.float32)
  poses = low + u * (high - low)
  return poses.at[:, _FACING].set((u[:, _FACING] >= 0.5).astype(jnp.float32))


def _example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  # fold_in by index rather than split(key, n): row i then does not depend on the batch size.
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)


def _train_rows(key: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
  """Identities and poses of the training rows `indices` of the stream `key`."""
  table = jnp.asarray(_TRAIN_IDENTITIES)
  count = table.shape[0]

  def one(row_key):
    first_key, second_key, pose_key = jax.random.split(row_key, 3)
    first = jax.random.randint(first_key, (), 0, count)
    # Uniform over the other count - 1 identities: skip over the first.
    second = jax.random.randint(second_key, (), 0, count - 1)
    second = second + (second >= first)
    return table[first], table[second], sample_poses(pose_key, 3)

  id1, id2, poses = jax.vmap(one)(_example_keys(key, indices))
  return {'id1': id1, 'id2': id2, 'poses': poses}


def _eval_rows(key: jax.Array, indices: jax.Array, table: np.ndarray) -> dict[str, jax.Array]:
  table = jnp.asarray(table)

  def one(row_key):
    id_key, pose_key = jax.random.split(row_key)
    return table[jax.random.randint(id_key, (), 0, table.shape[0])], sample_poses(pose_key, 1)[0]

  identities, poses = jax.vmap(one)(_example_keys(key, indices))
  return {'identity': identities, 'pose': poses}


class Sprites(identity_data.IdentityDataset):
  """Procedural side-view characters with seven identity attributes (5.4.3); see the module
  docstring for what is drawn, the split and the randomness.

  `train_batch(step)` renders `B` triplets `(y1, y1_same, y2)` from training identities;
  `arrays(split)` renders `num_eval_images` fixed examples of the training or the test identities
  with their identities, factors and poses; `render(identity, pose)` draws any of them.
  """

  name = 'sprites'
  identity_names = IDENTITY_NAMES
  identity_sizes = IDENTITY_SIZES
  factor_names = IDENTITY_NAMES + POSE_NAMES
  factor_discrete = (True,) * len(IDENTITY_NAMES) + tuple(n == 'facing' for n in POSE_NAMES)
  probe_names = IDENTITY_NAMES
  pose_names = POSE_NAMES
  renders = True

  def __init__(self, seed: int, batch_size: int, sharding: jax.sharding.Sharding, *,
               image_size: int = 32, num_eval_images: int = 1024):
    """Builds the dataset; nothing is rendered until asked for.

    Args:
      seed: an integer; all randomness derives from it.
      batch_size: `B`, the global number of training triplets, a multiple of the process count
        that `sharding` can split.
      sharding: the sharding of the `[B, ...]` training arrays.
      image_size: `S`, the side of the images, an integer >= `MIN_IMAGE_SIZE` (16).
      num_eval_images: `N`, the examples of each split in `arrays`.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
      raise ValueError(f'seed={seed!r}: expected an integer.')
    for arg, value in (('batch_size', batch_size), ('num_eval_images', num_eval_images)):
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f'{arg}={value!r}: expected a positive integer.')
    if (isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral)
        or image_size < MIN_IMAGE_SIZE):
      raise ValueError(f'image_size={image_size!r}: expected an integer >= {MIN_IMAGE_SIZE}.')
    if not isinstance(sharding, jax.sharding.Sharding):
      raise ValueError(f'sharding={sharding!r}: expected a jax.sharding.Sharding.')
    try:
      sharding.shard_shape((batch_size, image_size, image_size, 3))
    except ValueError as error:
      raise ValueError(f'batch_size={batch_size}: the sharding cannot split it ({error}).'
                       ) from None
    if batch_size % jax.process_count():
      raise ValueError(f'batch_size={batch_size}: expected a multiple of the process count '
                       f'{jax.process_count()}.')
    self.seed = int(seed)
    self.batch_size = int(batch_size)
    self.image_size = int(image_size)
    self.num_eval_images = int(num_eval_images)
    self.sharding = sharding
    self.sample_shape = (self.image_size, self.image_size, 3)
    self.train_key, self.eval_key = jax.random.split(jax.random.key(self.seed))
    local_rows = self.batch_size // jax.process_count()
    self._local_indices = np.arange(local_rows) + jax.process_index() * local_rows
    self._train_fn = jax.jit(self._local_train_batch)
    self._arrays: dict[str, dict[str, np.ndarray]] = {}

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> Sprites:
    """Builds the dataset from `config.seed`, `batch_size`, `image_size` and, if present,
    `num_eval_images` (default 1024)."""
    return cls(config.seed, config.batch_size, sharding, image_size=config.image_size,
               num_eval_images=config.get('num_eval_images', 1024))

  def _local_train_batch(self, step: jax.Array, indices: jax.Array) -> dict[str, jax.Array]:
    rows = _train_rows(jax.random.fold_in(self.train_key, step), indices)
    count = indices.shape[0]
    poses = rows['poses']
    identities = jnp.concatenate([rows['id1'], rows['id1'], rows['id2']])
    images = _draw(identities, jnp.concatenate([poses[:, 0], poses[:, 1], poses[:, 2]]),
                   size=self.image_size)
    return {'y1': images[:count], 'y1_same': images[count:2 * count], 'y2': images[2 * count:],
            'id1': rows['id1'], 'id2': rows['id2']}

  def train_rows(self, step: int) -> dict[str, np.ndarray]:
    """The identities and poses of the global batch of `step`: `'id1'`, `'id2'` `[B, 7]` int32
    and `'poses'` `[B, 3, P]` float32 (the poses of `y1`, `y1_same`, `y2`)."""
    base.check_step(step)
    return jax.device_get(jax.jit(_train_rows)(jax.random.fold_in(self.train_key, step),
                                               np.arange(self.batch_size)))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of `step` (see `IdentityDataset.train_batch`), sharded with `sharding`."""
    base.check_step(step)
    local = jax.device_get(self._train_fn(np.uint32(step), self._local_indices))
    return base.make_global_batch(local, self.sharding)

  def render(self, identity: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Images `[N, S, S, 3]` float32 in [-1, 1] of identities `[N, 7]` in poses `[N, P]`,
    rendered in chunks of a fixed size on the host."""
    _check_render_inputs(identity, pose)
    identity = np.asarray(identity, np.int32)
    pose = np.asarray(pose, np.float32)
    total = identity.shape[0]
    chunk = max(1, _CHUNK_PIXELS // self.image_size**2)
    padded = -(-total // chunk) * chunk
    # Pad with copies of the first row; the extra images are dropped.
    identity = np.concatenate([identity, np.repeat(identity[:1], padded - total, axis=0)])
    pose = np.concatenate([pose, np.repeat(pose[:1], padded - total, axis=0)])
    chunks = [np.asarray(_draw_jit(identity[i:i + chunk], pose[i:i + chunk],
                                   size=self.image_size)) for i in range(0, padded, chunk)]
    return np.concatenate(chunks)[:total] if chunks else np.zeros((0, *self.sample_shape),
                                                                  np.float32)

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """`num_eval_images` fixed examples of `split` (see `IdentityDataset.arrays`), read-only."""
    identity_data.check_split(split)
    if split not in self._arrays:
      table = _TRAIN_IDENTITIES if split == 'train' else _TEST_IDENTITIES
      key = jax.random.fold_in(self.eval_key, identity_data.SPLITS.index(split))
      rows = jax.device_get(jax.jit(_eval_rows)(key, np.arange(self.num_eval_images), table))
      ids = np.asarray(rows['identity'], np.int32)
      poses = np.asarray(rows['pose'], np.float32)
      result = {'images': self.render(ids, poses), 'identity': ids,
                'factors': np.concatenate([ids.astype(np.float32), poses], axis=1),
                'pose': poses}
      self._arrays[split] = {name: _read_only(value) for name, value in result.items()}
    return self._arrays[split]
