"""Phase pooling and unpooling (thesis 3.2.1, eq. 3.7 and 3.8).

Phase pooling splits each pooling group of a feature map into a magnitude (a soft max, "what") and a
phase (a soft argmax in local coordinates, "where"). Within a group N_k with softmax weights
`w = softmax(beta * z)`:

  m_k = sum_{N_k} w z                    (eq. 3.7; beta = 0 is average pooling)
  p_k = sum_{N_k} w [f, x, y]^T          (eq. 3.8)

where the local coordinates run from -1 to 1 in equal steps over the group along each pooled axis.
Groups span a `[B, H, W, F]` map spatially (H, W) and along a 1-D feature topology (F), possibly
overlapping, and possibly circular along F. An axis with group size 1 adds no phase component, so
the phase has one component per pooled axis, ordered (f, x, y) with x the W axis and y the H axis.

Unpooling, the first step of the chapter 3 decoders, places each magnitude at its phase by
(multi)linear interpolation between the group members around it; overlapping groups add up.

Both are written once for every configuration: the flat input index of each (group, member) pair is
precomputed with numpy, pooling gathers `[B, G, S]` through it, and unpooling scatter-adds the
`2 ** D` interpolation corners of each group.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np


def _is_positive_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _as_int_pair(name: str, value) -> tuple[int, int]:
  try:
    pair = tuple(value)
  except TypeError:
    pair = ()
  if len(pair) != 2 or not all(_is_positive_int(v) for v in pair):
    raise ValueError(f"PoolSpec.{name}: got {value!r}; expected two positive ints (over H, W)")
  return int(pair[0]), int(pair[1])


@dataclasses.dataclass(frozen=True)
class PoolSpec:
  """Pooling groups over a `[B, H, W, F]` feature map.

  Attributes:
    spatial: group size `(gh, gw)` over H and W.
    spatial_stride: step between groups over H and W; None means `spatial` (non-overlapping).
    feature: group size over the 1-D feature topology F.
    feature_stride: step between groups over F; None means `feature`.
    feature_wrap: whether the feature topology is circular, so the last groups wrap around F.
  """

  spatial: tuple[int, int] = (1, 1)
  spatial_stride: tuple[int, int] | None = None
  feature: int = 1
  feature_stride: int | None = None
  feature_wrap: bool = False

  def __post_init__(self):
    # Normalised to tuples of ints so that the spec is hashable (a static jit argument, cache key).
    object.__setattr__(self, "spatial", _as_int_pair("spatial", self.spatial))
    if self.spatial_stride is not None:
      object.__setattr__(self, "spatial_stride",
                         _as_int_pair("spatial_stride", self.spatial_stride))
    if not _is_positive_int(self.feature):
      raise ValueError(f"PoolSpec.feature: got {self.feature!r}; expected a positive int")
    object.__setattr__(self, "feature", int(self.feature))
    if self.feature_stride is not None:
      if not _is_positive_int(self.feature_stride):
        raise ValueError(f"PoolSpec.feature_stride: got {self.feature_stride!r}; expected a "
                         "positive int or None")
      object.__setattr__(self, "feature_stride", int(self.feature_stride))
    if not isinstance(self.feature_wrap, (bool, np.bool_)):
      raise ValueError(f"PoolSpec.feature_wrap: got {self.feature_wrap!r}; expected a bool")
    object.__setattr__(self, "feature_wrap", bool(self.feature_wrap))

  @property
  def _strides(self) -> tuple[int, int, int]:
    sh, sw = self.spatial if self.spatial_stride is None else self.spatial_stride
    sf = self.feature if self.feature_stride is None else self.feature_stride
    return sh, sw, sf

  @property
  def phase_dims(self) -> int:
    """Number of phase components D: one per axis (f, x, y) whose group size is above 1."""
    return sum(g > 1 for g in (self.feature, self.spatial[1], self.spatial[0]))

  def output_shape(self, h: int, w: int, f: int) -> tuple[int, int, int]:
    """The pooled map size `(H', W', F')` for an input of size `(h, w, f)`.

    Raises:
      ValueError: when a size is not a positive int or its groups do not tile it: over a
        non-circular axis `(size - group) % stride == 0` and `size >= group`; over a circular F,
        `f % stride == 0` and `f >= group`.
    """
    sh, sw, sf = self._strides
    out = []
    for name, size, group, stride, field in (("h", h, self.spatial[0], sh, "spatial[0]"),
                                             ("w", w, self.spatial[1], sw, "spatial[1]")):
      out.append(_axis_output(name, size, group, stride, field))
    if self.feature_wrap:
      if not _is_positive_int(f):
        raise ValueError(f"input feature size f={f!r}: expected a positive int")
      if f % sf or f < self.feature:
        raise ValueError(f"input feature size f={f} does not fit circular PoolSpec.feature="
                         f"{self.feature} with stride {sf}: need f % {sf} == 0 and f >= "
                         f"{self.feature}")
      out.append(f // sf)
    else:
      out.append(_axis_output("f", f, self.feature, sf, "feature"))
    return tuple(out)


def _axis_output(name: str, size, group: int, stride: int, field: str) -> int:
  if not _is_positive_int(size):
    raise ValueError(f"input size {name}={size!r}: expected a positive int")
  if size < group or (size - group) % stride:
    raise ValueError(f"input size {name}={size} does not fit PoolSpec.{field}={group} with stride "
                     f"{stride}: need {name} >= {group} and ({name} - {group}) % {stride} == 0")
  return (size - group) // stride + 1


def pooled_code_size(spec: PoolSpec, h: int, w: int, f: int) -> int:
  """Numbers per example in the pooled code (m and p together): `H' W' F' (1 + D)`."""
  ho, wo, fo = spec.output_shape(h, w, f)
  return ho * wo * fo * (1 + spec.phase_dims)


def _phase_axes(spec: PoolSpec) -> list[tuple[int, int]]:
  """`(axis, group size)` of each phase component in (f, x, y) order; axis 0, 1, 2 = H, W, F."""
  axes = [(2, spec.feature), (1, spec.spatial[1]), (0, spec.spatial[0])]
  return [(axis, g) for axis, g in axes if g > 1]


def _readonly(a: np.ndarray) -> np.ndarray:
  a.flags.writeable = False
  return a


@functools.lru_cache(maxsize=128)
def _layout(spec: PoolSpec, h: int, w: int, f: int):
  """Group origins `[3, G]` (H, W, F), member flat indices `[G, S]`, member coordinates `[S, D]`."""
  ho, wo, fo = spec.output_shape(h, w, f)
  sh, sw, sf = spec._strides
  gh, gw = spec.spatial
  gf = spec.feature
  origins = np.stack([a.ravel() for a in np.meshgrid(np.arange(ho) * sh, np.arange(wo) * sw,
                                                     np.arange(fo) * sf, indexing="ij")])
  offsets = np.stack([a.ravel() for a in np.meshgrid(np.arange(gh), np.arange(gw), np.arange(gf),
                                                     indexing="ij")])
  hh, ww, ff = (origins[a][:, None] + offsets[a][None, :] for a in range(3))
  if spec.feature_wrap:
    ff = ff % f
  index = (hh * w + ww) * f + ff
  coords = np.zeros((offsets.shape[1], spec.phase_dims))
  for k, (axis, g) in enumerate(_phase_axes(spec)):
    coords[:, k] = np.linspace(-1.0, 1.0, g)[offsets[axis]]
  return (_readonly(origins.astype(np.int32)), _readonly(index.astype(np.int32)),
          _readonly(coords.astype(np.float32)))


def _check_beta(beta) -> None:
  try:
    value = float(beta)
  except jax.errors.ConcretizationTypeError:
    return  # A traced beta cannot be inspected; its range is the caller's to keep.
  except (TypeError, ValueError):
    raise ValueError(f"beta: got {beta!r}; expected a number >= 0") from None
  if not value >= 0:
    raise ValueError(f"beta: got {beta!r}; expected a number >= 0")


def phase_pool(z: jnp.ndarray, spec: PoolSpec, beta: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Soft max (magnitude) and soft argmax (phase) over every pooling group (eq. 3.7, 3.8).

  Args:
    z: `[B, H, W, F]` feature map.
    spec: the pooling groups; `spec.output_shape(H, W, F)` must succeed.
    beta: softmax inverse temperature, >= 0; 0 is average pooling (and a phase of 0), large values
      approach max pooling and the argmax coordinates.

  Returns:
    `m`: `[B, H', W', F']` magnitudes.
    `p`: `[B, H', W', F', D]` phases in [-1, 1], D = `spec.phase_dims`, ordered (f, x, y).
  """
  if z.ndim != 4:
    raise ValueError(f"z: shape {z.shape}; expected [B, H, W, F]")
  _check_beta(beta)
  b, h, w, f = z.shape
  out_shape = spec.output_shape(h, w, f)
  _, index, coords = _layout(spec, h, w, f)
  groups = jnp.take(z.reshape(b, -1), jnp.asarray(index), axis=1)  # [B, G, S]
  weights = jax.nn.softmax(beta * groups, axis=-1)
  m = jnp.sum(weights * groups, axis=-1)
  # HIGHEST keeps the GPU from rounding the weights to TF32, which would blur the phase.
  p = jnp.einsum("bgs,sd->bgd", weights, jnp.asarray(coords, z.dtype),
                 precision=jax.lax.Precision.HIGHEST)
  return m.reshape(b, *out_shape), p.reshape(b, *out_shape, coords.shape[1])


def phase_unpool(m: jnp.ndarray, p: jnp.ndarray, spec: PoolSpec,
                 input_shape: tuple[int, int, int]) -> jnp.ndarray:
  """Places each magnitude at its phase inside its group by (multi)linear interpolation.

  Along a phase axis with group size g, the coordinate c (clipped to [-1, 1]) is the continuous
  member index u = (c + 1) / 2 (g - 1); the magnitude is split between members floor(u) and
  floor(u) + 1 with weights 1 - frac(u) and frac(u), the product over the phase axes. Overlapping
  groups add up; over a circular feature topology the member indices wrap modulo F.

  Args:
    m: `[B, H', W', F']` magnitudes.
    p: `[B, H', W', F', D]` phases, D = `spec.phase_dims`, ordered (f, x, y).
    spec: the pooling groups that produced (m, p).
    input_shape: `(H, W, F)`, the size of the map that was pooled.

  Returns:
    `[B, H, W, F]` reconstructed activations.
  """
  try:
    h, w, f = input_shape
  except (TypeError, ValueError):
    raise ValueError(f"input_shape: got {input_shape!r}; expected (H, W, F)") from None
  out_shape = spec.output_shape(h, w, f)
  d = spec.phase_dims
  if m.ndim != 4 or tuple(m.shape[1:]) != out_shape:
    raise ValueError(f"m: shape {m.shape}; expected [B, {', '.join(map(str, out_shape))}] for "
                     f"input_shape {tuple(input_shape)}")
  if tuple(p.shape) != tuple(m.shape) + (d,):
    raise ValueError(f"p: shape {p.shape}; expected {tuple(m.shape) + (d,)} (m's shape plus "
                     f"phase_dims={d})")
  b = m.shape[0]
  origins, _, _ = _layout(spec, h, w, f)
  dtype = jnp.result_type(m, p)
  m = m.reshape(b, -1).astype(dtype)  # [B, G]
  p = p.reshape(b, m.shape[1], d).astype(dtype)  # [B, G, D]

  # Per phase axis: the lower member index and the weight of the upper one.
  lower, upper_weight = [], []
  for k, (_, g) in enumerate(_phase_axes(spec)):
    u = (jnp.clip(p[..., k], -1.0, 1.0) + 1.0) * (0.5 * (g - 1))
    # Clamped to g - 2 so that c = 1 lands on the last member with full weight.
    i0 = jnp.clip(jnp.floor(jax.lax.stop_gradient(u)), 0, g - 2)
    lower.append(i0.astype(jnp.int32))
    upper_weight.append(u - i0)

  base = [jnp.broadcast_to(jnp.asarray(origins[a]), (b, origins.shape[1])) for a in range(3)]
  indices, weights = [], []
  for corner in itertools.product((0, 1), repeat=d):
    pos = list(base)
    weight = jnp.ones_like(m)
    for k, (axis, _) in enumerate(_phase_axes(spec)):
      pos[axis] = pos[axis] + lower[k] + corner[k]
      weight = weight * (upper_weight[k] if corner[k] else 1.0 - upper_weight[k])
    ff = pos[2] % f if spec.feature_wrap else pos[2]
    indices.append((pos[0] * w + pos[1]) * f + ff)
    weights.append(weight)
  index = jnp.stack(indices, axis=-1)  # [B, G, 2^D]
  values = jnp.stack(weights, axis=-1) * m[..., None]
  out = jnp.zeros((b, h * w * f), dtype).at[jnp.arange(b)[:, None, None], index].add(values)
  return out.reshape(b, h, w, f)
