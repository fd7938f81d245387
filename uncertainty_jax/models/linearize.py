"""Chapter 3: linearizing auto-encoders — Shallow 1, 2 and Deep 1, 2, 3 of Table 3.1.

An encoder maps each frame to a code; a predictor extrapolates the codes of two frames to the code
of the third (eq. 3.4, or eq. 3.9-3.10 with phase pooling); a decoder maps a code to a frame
(eq. 3.5). All three frames go through one shared encoder (Figure 3.2).

Codes are dicts. Architectures without phase pooling have `{'z': [B, N]}`; phase-pooled ones have
`{'m': [B, N], 'p': [B, N, D]}` (magnitudes and phases, flattened over the pool groups, D phase
components per group). Deep 1 has no predictor: its decoder takes the concatenated codes of the two
input frames (a learned extrapolation); the others decode one code.

Architectures (inputs 32x32; `width` scales every width, 1.0 is the thesis'):

* Shallow 1: 9x9 padded conv to 64 maps, ReLU, phase pooling over non-overlapping 4x4 spatial
  groups and groups of 4 features (code 16 x 4 x 8x8); decoder: unpooling, 9x9 padded conv.
* Shallow 2: the same with 2x2 spatial groups and groups of 4 features overlapping by 2 on a
  circular feature topology (code 32 x 16x16 magnitudes).
* Deep 1: two unpadded 9x9 convs (16, 32 maps; 32 -> 24 -> 16 pixels) with ReLUs, a fully
  connected layer to 4096 and a ReLU; decoder on the two codes concatenated: a fully connected
  layer to 8192 and a ReLU, reshaped to 32 maps of 16x16, then two 9x9 convs each on its input
  padded by 8 (16 -> 24 -> 32 pixels), a ReLU between.
* Deep 2: Deep 1's encoder and decoder with the fixed extrapolation a = [2, -1] on one code.
* Deep 3: Deep 2 with phase pooling of the 4096 code laid out as 64 features on an 8x8 grid, one
  group per feature (64 magnitudes, 64 x 2 phases: 192 numbers); the decoder unpools first.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from uncertainty_jax.layers import phase_pooling as pp

Code = dict[str, jax.Array]
PREDICTORS = ("learned", "extrapolate", "phase")


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One row of Table 3.1.

  Attributes:
    kind: 'shallow' (one conv, phase pooling on its maps) or 'deep' (two convs, a fully connected
      code).
    predictor: 'learned' (Deep 1: the decoder sees both codes), 'extrapolate' (a = [2, -1] on the
      whole code) or 'phase' (eq. 3.9-3.10 on phase-pooled codes).
    channels: image channels (3 for the shallow models' photographs, 1 for the NORB-like toys).
    conv_features: widths of the encoder's convolutions.
    kernel: their kernel size.
    code_features: width of the deep models' fully connected code.
    pool: the phase-pooling groups, or None.
    pool_grid: for deep phase pooling, the (H, W) grid the code is laid out on (its features are
      `code_features / (H * W)`).
  """

  kind: str
  predictor: str
  channels: int
  conv_features: tuple[int, ...]
  kernel: int = 9
  code_features: int = 0
  pool: Optional[pp.PoolSpec] = None
  pool_grid: tuple[int, int] = (8, 8)


ARCHITECTURES = {
    "shallow1": Architecture("shallow", "phase", 3, (64,),
                             pool=pp.PoolSpec(spatial=(4, 4), feature=4)),
    "shallow2": Architecture("shallow", "phase", 3, (64,),
                             pool=pp.PoolSpec(spatial=(2, 2), feature=4, feature_stride=2,
                                              feature_wrap=True)),
    "deep1": Architecture("deep", "learned", 1, (16, 32), code_features=4096),
    "deep2": Architecture("deep", "extrapolate", 1, (16, 32), code_features=4096),
    "deep3": Architecture("deep", "phase", 1, (16, 32), code_features=4096,
                          pool=pp.PoolSpec(spatial=(8, 8))),
}


def _scaled(width: int, multiplier: float, multiple: int = 1) -> int:
  return max(multiple, int(round(width * multiplier / multiple)) * multiple)


def architecture(name: str, width: float = 1.0, channels: Optional[int] = None) -> Architecture:
  """The architecture `name` with every width scaled by `width` (`channels` overrides the input's).

  Raises:
    ValueError: an unknown name, or a width that is not positive.
  """
  if name not in ARCHITECTURES:
    raise ValueError(f"architecture: unknown architecture {name!r}; valid: {sorted(ARCHITECTURES)}")
  if not width > 0:
    raise ValueError(f"width_multiplier: {width} must be positive")
  arch = ARCHITECTURES[name]
  grid = arch.pool_grid[0] * arch.pool_grid[1]
  return dataclasses.replace(
      arch, channels=channels or arch.channels,
      # Shallow maps keep a multiple of the feature group; the deep code a multiple of the grid.
      conv_features=tuple(_scaled(f, width, arch.pool.feature if arch.kind == "shallow" else 1)
                          for f in arch.conv_features),
      code_features=_scaled(arch.code_features, width, grid) if arch.code_features else 0)


def _conv(features: int, kernel: int, padding, name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), padding=padding, name=name)


class LinearizingAutoencoder(nn.Module):
  """Encoder, predictor and decoder of one architecture; see the module docstring.

  Attributes:
    arch: the architecture.
    image_size: side of the square frames (32 in the thesis; the deep models need
      `image_size - 2 * (kernel - 1) >= 1`).
    beta: the phase-pooling softmax temperature (eq. 3.7-3.8), >= 0.
    latent_dim: size of the latent delta (eq. 3.11); 0 for none.
  """

  arch: Architecture
  image_size: int = 32
  beta: float = 10.0
  latent_dim: int = 0

  # --- shapes -----------------------------------------------------------------------------------

  @property
  def _conv_out(self) -> int:
    return self.image_size - len(self.arch.conv_features) * (self.arch.kernel - 1)

  @property
  def _shallow_maps(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, self.arch.conv_features[-1])

  @property
  def _deep_grid(self) -> tuple[int, int, int]:
    h, w = self.arch.pool_grid
    return (h, w, self.arch.code_features // (h * w))

  def _pool_input_shape(self) -> tuple[int, int, int]:
    return self._shallow_maps if self.arch.kind == "shallow" else self._deep_grid

  def correction_size(self) -> int:
    """How many numbers delta corrects: the phases with phase pooling, else the whole code."""
    if self.arch.pool is None:
      return self.arch.code_features
    h, w, f = self.arch.pool.output_shape(*self._pool_input_shape())
    return h * w * f * self.arch.pool.phase_dims

  # --- modules ----------------------------------------------------------------------------------

  def setup(self):
    arch = self.arch
    if arch.predictor not in PREDICTORS:
      raise ValueError(f"predictor: {arch.predictor!r} is not one of {PREDICTORS}")
    if (arch.predictor == "phase") != (arch.pool is not None):
      raise ValueError("predictor 'phase' needs a pool spec, and a pool spec needs it")
    if self.beta < 0:
      raise ValueError(f"beta: {self.beta} must be >= 0")
    if arch.kind == "deep" and self._conv_out < 1:
      raise ValueError(f"image_size: {self.image_size} is too small for {len(arch.conv_features)} "
                       f"unpadded {arch.kernel}x{arch.kernel} convolutions")
    if arch.pool is not None:
      arch.pool.output_shape(*self._pool_input_shape())  # raises if the groups do not fit
    padding = "SAME" if arch.kind == "shallow" else "VALID"
    self.enc_convs = [_conv(f, arch.kernel, padding, f"enc_conv{i}")
                      for i, f in enumerate(arch.conv_features)]
    if arch.kind == "deep":
      self.enc_fc = nn.Dense(arch.code_features, name="enc_fc")
      flat = self._conv_out ** 2 * arch.conv_features[-1]
      self.dec_fc = nn.Dense(flat, name="dec_fc")
      # Mirror of the encoder: each conv on its input padded by kernel - 1 grows it back.
      widths = tuple(reversed(arch.conv_features[:-1])) + (arch.channels,)
      self.dec_convs = [_conv(f, arch.kernel, [(arch.kernel - 1,) * 2] * 2, f"dec_conv{i}")
                        for i, f in enumerate(widths)]
    else:
      self.dec_convs = [_conv(arch.channels, arch.kernel, "SAME", "dec_conv0")]
    if self.latent_dim:
      self.delta_w = self.param("delta_w", nn.initializers.lecun_normal(),
                                (self.latent_dim, self.correction_size()))

  # --- encoder ----------------------------------------------------------------------------------

  def encode(self, x: jax.Array) -> Code:
    """Frames `[B, S, S, C]` -> their codes (see the module docstring)."""
    h = x
    for conv in self.enc_convs:
      h = nn.relu(conv(h))
    if self.arch.kind == "deep":
      h = nn.relu(self.enc_fc(h.reshape(h.shape[0], -1)))
      if self.arch.pool is None:
        return {"z": h}
      h = h.reshape((h.shape[0],) + self._deep_grid)
    m, p = pp.phase_pool(h, self.arch.pool, self.beta)
    return {"m": m.reshape(m.shape[0], -1), "p": p.reshape(p.shape[0], -1, p.shape[-1])}

  # --- predictor --------------------------------------------------------------------------------

  def predict_code(self, code1: Code, code2: Code, delta: Optional[jax.Array] = None,
                   correction: str = "thesis") -> Code:
    """The code of the third frame from those of the first two (eq. 3.4, 3.9-3.11).

    Args:
      code1, code2: codes of frames 1 and 2.
      delta: `[B, latent_dim]`, the latent correction of eq. 3.11, or None.
      correction: how delta enters. 'thesis' is eq. 3.11 as written:
        `z2 + (W delta) * (2 z2 - z1)`, which at delta = 0 is z2; 'residual' adds it to the
        extrapolation instead: `(2 z2 - z1) + (W delta) * (z2 - z1)`, which at delta = 0 is eq. 3.4.
        With phase pooling both act on the phases only.

    Returns:
      The predicted code. Deep 1 ('learned') has none: it returns both codes concatenated under
      'pair', which only its decoder reads.
    """
    if self.arch.predictor == "learned":
      if delta is not None:
        raise ValueError("latent delta needs a fixed predictor; Deep 1's is learned")
      return {"pair": jnp.concatenate([code1["z"], code2["z"]], axis=-1)}
    key = "p" if self.arch.predictor == "phase" else "z"
    a, b = code1[key], code2[key]
    extrapolated = 2.0 * b - a
    if delta is not None:
      if not self.latent_dim:
        raise ValueError("delta given to a model built with latent_dim=0")
      scale = (delta @ self.delta_w).reshape(b.shape)
      if correction == "thesis":
        extrapolated = b + scale * extrapolated
      elif correction == "residual":
        extrapolated = extrapolated + scale * (b - a)
      else:
        raise ValueError(f"latent_correction: {correction!r} is not 'thesis' or 'residual'")
    if key == "z":
      return {"z": extrapolated}
    return {"m": 0.5 * (code1["m"] + code2["m"]), "p": extrapolated}

  # --- decoder ----------------------------------------------------------------------------------

  def decode(self, code: Code) -> jax.Array:
    """A code (or Deep 1's 'pair') -> a frame `[B, S, S, C]`."""
    arch = self.arch
    if arch.kind == "shallow" or arch.pool is not None:
      hp, wp, fp = arch.pool.output_shape(*self._pool_input_shape())
      batch = code["m"].shape[0]
      m = code["m"].reshape(batch, hp, wp, fp)
      p = code["p"].reshape(batch, hp, wp, fp, -1)
      h = pp.phase_unpool(m, p, arch.pool, self._pool_input_shape())
      if arch.kind == "shallow":
        return self.dec_convs[0](h)
      h = h.reshape(batch, -1)
    else:
      h = code["pair"] if arch.predictor == "learned" else code["z"]
    h = nn.relu(self.dec_fc(h))
    side = self._conv_out
    h = h.reshape(h.shape[0], side, side, arch.conv_features[-1])
    for i, conv in enumerate(self.dec_convs):
      h = conv(h)
      if i < len(self.dec_convs) - 1:
        h = nn.relu(h)
    return h

  def __call__(self, x1: jax.Array, x2: jax.Array, delta: Optional[jax.Array] = None,
               correction: str = "thesis") -> jax.Array:
    """The predicted third frame `[B, S, S, C]` from frames 1 and 2."""
    return self.decode(self.predict_code(self.encode(x1), self.encode(x2), delta, correction))

  def init_all(self, x: jax.Array) -> jax.Array:
    """Touches every submodule (encoder, predictor with delta, decoder), for `init`."""
    code = self.encode(x)
    delta = jnp.zeros((x.shape[0], self.latent_dim)) if self.latent_dim else None
    return self.decode(self.predict_code(code, code, delta))


def code_at(code1: Code, code2: Code, t: float) -> Code:
  """The code at time `t` on the line through the codes of frames 1 (t = 1) and 2 (t = 2).

  Everything is linear in `t` (t = 3 is eq. 3.4's extrapolation), except phase-pooled magnitudes:
  between t = 1 and 2 they interpolate, elsewhere they are the predictor's mean (eq. 3.9), the
  stable magnitude the model is trained to assume. Deep 1 decodes a pair: its frame at `t` comes
  from the codes at `t - 2` and `t - 1`, as its training pair (1, 2) gives frame 3.
  """
  def lerp(a, b, s):
    return a + (s - 1.0) * (b - a)

  if "m" in code1:
    m = lerp(code1["m"], code2["m"], t) if 1.0 <= t <= 2.0 else 0.5 * (code1["m"] + code2["m"])
    return {"m": m, "p": lerp(code1["p"], code2["p"], t)}
  return {"z": lerp(code1["z"], code2["z"], t)}


def flat_code(code: Code, phases_only: bool = False) -> jax.Array:
  """A code as `[B, N]`: z, or the phases (and, unless `phases_only`, the magnitudes)."""
  if "z" in code:
    return code["z"]
  p = code["p"].reshape(code["p"].shape[0], -1)
  return p if phases_only else jnp.concatenate([code["m"], p], axis=-1)


def num_parameters(params: Any) -> int:
  """Total number of parameters of a pytree."""
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))
