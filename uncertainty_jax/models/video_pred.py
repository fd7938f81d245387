"""Chapter 4: the multi-scale video prediction generator and its per-scale discriminators.

Thesis 4.2.1-4.2.2 and Tables 4.1-4.2. The generator G = (G_1, ..., G_N) is a Laplacian pyramid of
fully convolutional networks: G_1 sees the input frames at the coarsest scale; G_k sees the inputs at
scale k concatenated with the bilinearly upsampled prediction of scale k-1 and predicts the residual
added to it. One discriminator D_k per scale sees the input frames and a real or predicted next frame at
that scale: unpadded convolutions, then fully connected layers, one logit.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from uncertainty_jax.layers import ValidConv
from uncertainty_jax.layers import conv as conv_lib
from uncertainty_jax.layers import image_pyramid
from uncertainty_jax.layers import torch_uniform
from uncertainty_jax.layers import upsample2x


@dataclasses.dataclass(frozen=True)
class GeneratorScale:
  """One G_k: hidden widths and kernel sizes (one more kernel than widths: the output conv)."""

  features: tuple[int, ...]
  kernels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class DiscriminatorScale:
  """One D_k: convolution widths and kernels, a max-pool factor after the convs, FC widths."""

  features: tuple[int, ...]
  kernels: tuple[int, ...]
  fc: tuple[int, ...]
  pool: int = 1


# Model 1 (Table 4.1, with the kernel sizes of Mathieu, Couprie & LeCun, ICLR 2016), coarse to fine.
MODEL1_GENERATOR = (
    GeneratorScale((128, 256, 128), (3, 3, 3, 3)),
    GeneratorScale((128, 256, 128), (5, 3, 3, 5)),
    GeneratorScale((128, 256, 512, 256, 128), (5, 3, 3, 3, 5)),
    GeneratorScale((128, 256, 512, 256, 128), (7, 5, 5, 5, 5, 7)),
)
MODEL1_DISCRIMINATOR = (
    DiscriminatorScale((64,), (3,), (512, 256)),
    DiscriminatorScale((64, 128, 128), (3, 3, 3), (1024, 512)),
    DiscriminatorScale((128, 256, 256), (5, 5, 5), (1024, 512)),
    DiscriminatorScale((128, 256, 512, 128), (7, 7, 5, 5), (1024, 512), pool=2),
)

ARCHITECTURES = {
    "model1": (MODEL1_GENERATOR, MODEL1_DISCRIMINATOR),
    # Model 2's table (4.2) was lost from the thesis text; it keeps Model 1's widths and takes what
    # 4.3.1 states (batch norm, a per-frame first discriminator layer, generator noise) from the
    # config. Its 64x64 patches double every scale, so each D_k max-pools its last feature maps to
    # about the size Model 1's have at 32x32 (3x3, 5x5, 5x5, 5x5), keeping the FC layers of the
    # same size.
    "model2": (MODEL1_GENERATOR, tuple(
        dataclasses.replace(d, pool=p) for d, p in zip(MODEL1_DISCRIMINATOR, (2, 2, 4, 8)))),
}


def _scaled(width: int, multiplier: float) -> int:
  return max(4, int(round(width * multiplier)))


def architecture(name: str, num_scales: int, width_multiplier: float = 1.0
                 ) -> tuple[tuple[GeneratorScale, ...], tuple[DiscriminatorScale, ...]]:
  """The per-scale specs of a named architecture, using its `num_scales` finest scales.

  A single-scale model (Table 4.3's first row) is the finest scale's network alone.

  Args:
    name: one of `ARCHITECTURES`.
    num_scales: 1 to the number of scales of the architecture.
    width_multiplier: multiplies every hidden width (rounded, at least 4).
  """
  if name not in ARCHITECTURES:
    raise ValueError(f"model: unknown architecture {name!r}; valid: {sorted(ARCHITECTURES)}")
  gen, disc = ARCHITECTURES[name]
  if not 1 <= num_scales <= len(gen):
    raise ValueError(f"num_scales: {num_scales} is not in 1..{len(gen)} for model {name!r}")
  gen = tuple(GeneratorScale(tuple(_scaled(f, width_multiplier) for f in g.features), g.kernels)
              for g in gen[-num_scales:])
  disc = tuple(dataclasses.replace(
      d, features=tuple(_scaled(f, width_multiplier) for f in d.features),
      fc=tuple(_scaled(f, width_multiplier) for f in d.fc)) for d in disc[-num_scales:])
  return gen, disc


def _frames_to_channels(frames: jnp.ndarray) -> jnp.ndarray:
  """`[B, T, H, W, C] -> [B, H, W, T * C]`, frames concatenated along channels."""
  b, t, h, w, c = frames.shape
  return jnp.transpose(frames, (0, 2, 3, 1, 4)).reshape(b, h, w, t * c)


def _clip_straight_through(x: jnp.ndarray) -> jnp.ndarray:
  """Clips to [-1, 1] in the forward pass and passes gradients through unchanged.

  The residual sum u_k(y_{k-1}) + r_k can leave the image range; clipping keeps every prediction a
  valid image while never cutting a pixel's gradient (a hard clip would freeze saturated pixels).
  """
  return x + jax.lax.stop_gradient(jnp.clip(x, -1.0, 1.0) - x)


class _GeneratorScaleNet(nn.Module):
  """The convolutional network of one G_k: padded convs, ReLU, a Tanh output."""

  spec: GeneratorScale
  out_channels: int
  batch_norm: bool
  noise_std: float
  conv_method: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, sample: bool) -> jnp.ndarray:
    middle = len(self.spec.features) // 2
    conv = functools.partial(conv_lib.same_conv_general_dilated, self.conv_method)
    for i, (feat, k) in enumerate(zip(self.spec.features, self.spec.kernels)):
      x = nn.Conv(feat, (k, k), padding="SAME", use_bias=not self.batch_norm,
                  kernel_init=torch_uniform, conv_general_dilated=conv)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if i == middle and self.noise_std > 0 and sample:
        x = x + self.noise_std * jax.random.normal(self.make_rng("noise"), x.shape, x.dtype)
    k = self.spec.kernels[-1]
    x = nn.Conv(self.out_channels, (k, k), padding="SAME", kernel_init=torch_uniform,
                conv_general_dilated=conv)(x)
    return jnp.tanh(x)


class MultiScaleGenerator(nn.Module):
  """The multi-scale generator G of thesis 4.2.1 (Figure 4.3).

  Attributes:
    scales: per-scale specs, coarsest first; scale k works at `H / 2 ** (N - 1 - k)`.
    out_channels: channels of a frame.
    batch_norm: batch norm after every convolution but the last (Model 2).
    noise_std: additive Gaussian noise in the middle features of each G_k during training
      (Model 2); needs a 'noise' rng.
    conv_method: how the padded convolutions are differentiated (`layers.conv.SAME_METHODS`);
      every method gives the same function and gradients, 'auto' the fastest measured on CPU.
  """

  scales: Sequence[GeneratorScale]
  out_channels: int = 3
  batch_norm: bool = False
  noise_std: float = 0.0
  conv_method: str = "auto"

  @nn.compact
  def __call__(self, inputs: jnp.ndarray, train: bool = False, sample: bool | None = None
               ) -> list[jnp.ndarray]:
    """Predicts the next frame at every scale.

    Args:
      inputs: `[B, m, H, W, C]` input frames in [-1, 1]; H, W divisible by `2 ** (N - 1)`.
      train: batch norm in training mode (and, by default, noise on).
      sample: whether to add the noise (needs a 'noise' rng); defaults to `train`. At test time,
        `sample=True` draws one of the futures the generator can produce.

    Returns:
      N predictions `[B, H_k, W_k, C]`, coarsest first, each in [-1, 1]; the last is full size.
    """
    sample = train if sample is None else sample
    pyramid = image_pyramid(_frames_to_channels(inputs), len(self.scales))
    preds = []
    for k, spec in enumerate(self.scales):
      net = _GeneratorScaleNet(spec, self.out_channels, self.batch_norm, self.noise_std,
                               self.conv_method, name=f"G_{k}")
      if preds:
        # The coarser prediction keeps its gradient: the loss at scale k trains every G_k', k' <= k.
        upsampled = upsample2x(preds[-1])
        pred = upsampled + net(jnp.concatenate([pyramid[k], upsampled], axis=-1), train, sample)
      else:
        pred = net(pyramid[k], train, sample)
      preds.append(_clip_straight_through(pred))
    return preds


class _DiscriminatorScaleNet(nn.Module):
  """One D_k: unpadded convs with ReLU, optional max pool, FC layers, one logit."""

  spec: DiscriminatorScale
  num_frames: int
  batch_norm: bool
  per_frame_first_layer: bool
  conv_method: str = "auto"

  @nn.compact
  def __call__(self, frames: jnp.ndarray, train: bool) -> jnp.ndarray:
    # frames: [B, T, h, w, C], the inputs followed by the real or predicted next frame.
    b = frames.shape[0]
    for i, (feat, k) in enumerate(zip(self.spec.features, self.spec.kernels)):
      if i == 0:
        if self.per_frame_first_layer:
          # Model 2: the first layer sees each frame alone, then the feature planes are concatenated.
          t = frames.shape[1]
          y = ValidConv(feat, k, method=self.conv_method)(
              frames.reshape(b * t, *frames.shape[2:]))
          x = _frames_to_channels(y.reshape(b, t, *y.shape[1:]))
        else:
          x = ValidConv(feat, k, method=self.conv_method)(_frames_to_channels(frames))
      else:
        x = ValidConv(feat, k, method=self.conv_method)(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
    if self.spec.pool > 1:
      p = self.spec.pool
      x = nn.max_pool(x, (p, p), strides=(p, p))
    x = x.reshape(b, -1)
    for feat in self.spec.fc:
      x = nn.relu(nn.Dense(feat, kernel_init=torch_uniform)(x))
    return nn.Dense(1, kernel_init=torch_uniform)(x)[:, 0]


class MultiScaleDiscriminator(nn.Module):
  """The discriminators D_1..D_N of thesis 4.2.2, one per scale.

  Attributes:
    scales: per-scale specs, coarsest first, matching the generator's scales.
    batch_norm: batch norm after every convolution but the first (Model 2).
    per_frame_first_layer: the first convolution processes each frame independently (Model 2).
    conv_method: how the unpadded convolutions are computed (`layers.conv.METHODS`); every method
      gives the same function, 'auto' the fastest measured on CPU.
  """

  scales: Sequence[DiscriminatorScale]
  batch_norm: bool = False
  per_frame_first_layer: bool = False
  conv_method: str = "auto"

  @nn.compact
  def __call__(self, inputs: jnp.ndarray, next_frames: Sequence[jnp.ndarray],
               train: bool = False) -> list[jnp.ndarray]:
    """Scores a next frame at each scale given the input frames.

    Args:
      inputs: `[B, m, H, W, C]` input frames at full size.
      next_frames: N frames `[B, H_k, W_k, C]`, coarsest first (real, or the generator's outputs).
      train: batch norm in training mode.

    Returns:
      N logits `[B]`; sigmoid(logit) is the probability that the frame is real.
    """
    n = len(self.scales)
    if len(next_frames) != n:
      raise ValueError(f"next_frames: got {len(next_frames)} scales, the discriminator has {n}")
    pyramid = image_pyramid(inputs, n)
    logits = []
    for k, spec in enumerate(self.scales):
      frames = jnp.concatenate([pyramid[k], next_frames[k][:, None]], axis=1)
      net = _DiscriminatorScaleNet(spec, frames.shape[1], self.batch_norm,
                                   self.per_frame_first_layer, self.conv_method, name=f"D_{k}")
      logits.append(net(frames, train))
    return logits
