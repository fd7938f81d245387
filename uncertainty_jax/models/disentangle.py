"""Chapter 5: the s/z encoder, the decoder and the label-conditioned discriminator (Table 5.1).

* `Encoder` (eq. 5.6): a convolutional trunk (batch norm, ReLU) that splits into two fully
  connected heads: `s`, the specified component (a real vector, so that unseen identities get a
  code too), and `(mu, logvar)` of the Gaussian posterior of `z`, the unspecified component.
  `separate=True` gives `s` and `z` a trunk each: the `pretrained_s` ablation of 5.4.6, where the
  `s` branch is pretrained as a classifier (`SpecifiedClassifier`) and frozen.
* `Decoder`: `s` and `z` each through a fully connected layer to the trunk's top feature map,
  merged by addition, then the mirror of the trunk with fractional strides, tanh output.
* `ConditionalDiscriminator`: strided convolutions with leaky ReLU (slope 0.2) and batch norm (not
  on the input layer, as DCGAN), the identity looked up in a table per attribute and added to the
  first three layers' feature maps (constant over space: the "UpSample" of Table 5.1), then one
  logit. With `A` attributes (seven for sprites), each layer's width is split into `A` equal
  blocks, one per attribute's table, which is why the sprites discriminator's widths are
  multiples of 7.

Trunks are lists of `ConvLayer`s. `TRUNKS` names the two of 5.4.1: `conv3`, three 5x5 convolutions
of stride 2 (MNIST, sprites), and `conv6`, six 3x3 convolutions with stride 2 every other layer
(NORB, YaleB). Table 5.1's widths are legible only in part; `trunk(name, widths)` builds either
shape from the widths a config chooses (see `experiments/disentangle.py`). Convolutions pad
'SAME', so a stride-2 layer halves the size exactly and its mirror doubles it; weights start from
N(0, 0.02) as in DCGAN; a layer followed by batch norm has no bias. The decoder's fractionally
strided convolutions are `layers.SubpixelConvTranspose`, the function of `nn.ConvTranspose`
computed several times faster on a CPU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from uncertainty_jax import layers as layers_lib

LEAKY_SLOPE = 0.2
INIT_STD = 0.02
# Layers of the discriminator that receive the identity (Table 5.1: "added at the three first
# layers of representation").
CONDITIONED_LAYERS = 3
# Hidden units of the two-layer classifier on top of s in the pretrained_s ablation (5.4.6 gives
# none; Table 5.2's probes use 256).
CLASSIFIER_HIDDEN = 256


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One convolution of a trunk: `features` filters of `kernel x kernel`, stride `stride`."""

  features: int
  kernel: int
  stride: int


TRUNKS = ("conv3", "conv6")
DECONVS = layers_lib.CONV_TRANSPOSE_METHODS


def trunk(name: str, widths: Sequence[int]) -> tuple[ConvLayer, ...]:
  """The encoder trunk `name` with the given widths.

  Args:
    name: 'conv3' (three 5x5 convolutions of stride 2; `widths` has 3 entries) or 'conv6' (six
      3x3 convolutions, stride 1 then 2, repeated; `widths` has 6 entries).
    widths: the number of filters of each layer.
  """
  widths = tuple(widths)
  if name == "conv3":
    kernel, strides = 5, (2, 2, 2)
  elif name == "conv6":
    kernel, strides = 3, (1, 2, 1, 2, 1, 2)
  else:
    raise ValueError(f"trunk: unknown trunk {name!r}; valid: {list(TRUNKS)}")
  if len(widths) != len(strides) or any(
      isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
    raise ValueError(f"widths: {widths!r} is not {len(strides)} positive integers, one per layer "
                     f"of trunk {name!r}")
  return tuple(ConvLayer(w, kernel, s) for w, s in zip(widths, strides))


def discriminator_layers(name: str, widths: Sequence[int]) -> tuple[ConvLayer, ...]:
  """The conditional discriminator's convolutions: one of stride 2 per entry of `widths`, with the
  kernel of trunk `name` (5 for 'conv3', 3 for 'conv6')."""
  kernel = trunk(name, (1,) * (3 if name == "conv3" else 6))[0].kernel
  widths = tuple(widths)
  if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
    raise ValueError(f"d_features: {widths!r} is not a non-empty sequence of positive integers")
  return tuple(ConvLayer(w, kernel, 2) for w in widths)


def downsampling(layers: Sequence[ConvLayer]) -> int:
  """The factor by which `layers` shrink an image: the product of their strides."""
  return math.prod(layer.stride for layer in layers)


def check_image_size(layers: Sequence[ConvLayer], image_size: int, what: str) -> None:
  """Raises unless `image_size` is a multiple of the layers' total stride."""
  factor = downsampling(layers)
  if image_size % factor:
    raise ValueError(f"image_size: {image_size} is not a multiple of {factor}, the total stride "
                     f"of the {what}'s {len(layers)} layers")


def _normal_init(std: float) -> Callable[..., jax.Array]:
  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)
  return init


def _batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _check_images(x: jnp.ndarray, layers: Sequence[ConvLayer]) -> None:
  if x.ndim != 4:
    raise ValueError(f"x: shape {x.shape} is not [B, H, W, C]")
  factor = downsampling(layers)
  if x.shape[1] % factor or x.shape[2] % factor:
    raise ValueError(f"x: spatial size {x.shape[1:3]} is not divisible by {factor}, the total "
                     f"stride of the network's layers")


class Trunk(nn.Module):
  """Convolutions with batch norm and ReLU; returns the flattened top feature map `[B, h*w*F]`."""

  layers: Sequence[ConvLayer]

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    _check_images(x, self.layers)
    for i, layer in enumerate(self.layers):
      x = nn.Conv(layer.features, (layer.kernel, layer.kernel), strides=layer.stride,
                  padding="SAME", use_bias=False, kernel_init=_normal_init(INIT_STD),
                  name=f"conv{i}")(x)
      x = nn.relu(_batch_norm(train, f"bn{i}")(x))
    return x.reshape(x.shape[0], -1)


class SpecifiedEncoder(nn.Module):
  """f_s: a trunk and a fully connected layer to `s` `[B, s_dim]`."""

  layers: Sequence[ConvLayer]
  s_dim: int

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    h = Trunk(self.layers, name="trunk")(x, train)
    return nn.Dense(self.s_dim, kernel_init=_normal_init(INIT_STD), name="s_head")(h)


class Encoder(nn.Module):
  """Enc(y) = (s, (mu, logvar)) of eq. 5.6.

  Attributes:
    layers: the trunk.
    s_dim: size of the specified component s.
    z_dim: size of the unspecified component z.
    separate: a trunk for s (submodule `specified`, a `SpecifiedEncoder`) and another for z,
      instead of one shared trunk.
  """

  layers: Sequence[ConvLayer]
  s_dim: int
  z_dim: int
  separate: bool = False

  def setup(self):
    for name in ("s_dim", "z_dim"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {value!r} is not a positive integer")
    if self.separate:
      self.specified = SpecifiedEncoder(self.layers, self.s_dim)
      self.z_trunk = Trunk(self.layers)
    else:
      self.trunk = Trunk(self.layers)
      self.s_head = nn.Dense(self.s_dim, kernel_init=_normal_init(INIT_STD))
    self.z_head = nn.Dense(2 * self.z_dim, kernel_init=_normal_init(INIT_STD))

  def __call__(self, x: jnp.ndarray, train: bool = False, specified_train: bool | None = None
               ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Encodes images.

    Args:
      x: `[B, H, W, C]` images in [-1, 1].
      train: batch norm on batch statistics (make 'batch_stats' mutable).
      specified_train: the same for the separate s trunk (default `train`); False keeps a frozen,
        pretrained s branch on its running averages.

    Returns:
      `s` `[B, s_dim]`, `mu` `[B, z_dim]`, `logvar` `[B, z_dim]` (log of the posterior variance).
    """
    if self.separate:
      s = self.specified(x, train if specified_train is None else specified_train)
      h = self.z_trunk(x, train)
    else:
      h = self.trunk(x, train)
      s = self.s_head(h)
    mu, logvar = jnp.split(self.z_head(h), 2, axis=-1)
    return s, mu, logvar


class Decoder(nn.Module):
  """Dec(z, s): the images of codes `z` `[B, z_dim]` and `s` `[B, s_dim]`, `[B, H, W, channels]`.

  Attributes:
    layers: the encoder's trunk, mirrored: layer `i` becomes a transposed convolution of the same
      kernel and stride whose width is layer `i - 1`'s (`channels` for the first).
    image_size: H = W of the output.
    channels: channels of the output.
    deconv: 'subpixel' (`layers.SubpixelConvTranspose`) or 'flax' (`nn.ConvTranspose`): the same
      function and parameters, computed two ways (`benchmarks.disentangle_step` compares them).
  """

  layers: Sequence[ConvLayer]
  image_size: int
  channels: int
  deconv: str = "subpixel"

  @nn.compact
  def __call__(self, z: jnp.ndarray, s: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    check_image_size(self.layers, self.image_size, "decoder")
    if self.deconv not in DECONVS:
      raise ValueError(f"deconv: unknown {self.deconv!r}; valid: {list(DECONVS)}")
    if z.ndim != 2 or s.ndim != 2 or z.shape[0] != s.shape[0]:
      raise ValueError(f"z, s: shapes {z.shape} and {s.shape} are not [B, z_dim] and [B, s_dim]")
    side = self.image_size // downsampling(self.layers)
    top = self.layers[-1].features
    size = side * side * top
    h = (nn.Dense(size, kernel_init=_normal_init(INIT_STD), name="s_fc")(s)
         + nn.Dense(size, kernel_init=_normal_init(INIT_STD), name="z_fc")(z))
    h = h.reshape(z.shape[0], side, side, top)
    widths = [layer.features for layer in self.layers[:-1]]
    for i in reversed(range(len(self.layers))):
      layer = self.layers[i]
      last = i == 0
      features = self.channels if last else widths[i - 1]
      h = layers_lib.conv_transpose(features, layer.kernel, layer.stride, self.deconv,
                                    use_bias=last, kernel_init=_normal_init(INIT_STD),
                                    name=f"deconv{i}")(h)
      if not last:
        h = nn.relu(_batch_norm(train, f"bn{i}")(h))
    return jnp.tanh(h)


class ConditionalDiscriminator(nn.Module):
  """D(y, id): the logit of `y` being a real image of identity `id` (Table 5.1).

  Attributes:
    layers: the convolutions (stride 2 in Table 5.1); the first `CONDITIONED_LAYERS` receive the
      identity.
    identity_sizes: the number of values of each identity attribute (one lookup table each).
  """

  layers: Sequence[ConvLayer]
  identity_sizes: Sequence[int]

  def __post_init__(self):
    num = len(self.identity_sizes)
    if num < 1 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                      for n in self.identity_sizes):
      raise ValueError(f"identity_sizes: {tuple(self.identity_sizes)!r} is not a non-empty "
                       f"sequence of positive integers")
    for layer in self.layers[:CONDITIONED_LAYERS]:
      if layer.features % num:
        raise ValueError(
            f"d_features: {tuple(l.features for l in self.layers)!r}: the widths of the first "
            f"{CONDITIONED_LAYERS} layers must be multiples of {num}, the number of identity "
            f"attributes (one lookup table each)")
    super().__post_init__()

  @nn.compact
  def __call__(self, y: jnp.ndarray, identity: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """Scores images.

    Args:
      y: `[B, H, W, C]` images.
      identity: `[B, A]` int attribute indices.
      train: batch norm on batch statistics (make 'batch_stats' mutable).

    Returns:
      `[B]` logits.
    """
    _check_images(y, self.layers)
    num = len(self.identity_sizes)
    if identity.shape != (y.shape[0], num):
      raise ValueError(f"identity: shape {identity.shape} is not [B, A] = {(y.shape[0], num)}")
    h = y
    for i, layer in enumerate(self.layers):
      h = nn.Conv(layer.features, (layer.kernel, layer.kernel), strides=layer.stride,
                  padding="SAME", use_bias=i == 0, kernel_init=_normal_init(INIT_STD),
                  name=f"conv{i}")(h)
      if i > 0:
        h = _batch_norm(train, f"bn{i}")(h)
      h = nn.leaky_relu(h, LEAKY_SLOPE)
      if i < CONDITIONED_LAYERS:
        block = layer.features // num
        lookup = jnp.concatenate(
            [nn.Embed(size, block, embedding_init=_normal_init(INIT_STD),
                      name=f"lookup{i}_{a}")(identity[:, a])
             for a, size in enumerate(self.identity_sizes)], axis=-1)
        h = h + lookup[:, None, None, :]
    h = h.reshape(h.shape[0], -1)
    return nn.Dense(1, kernel_init=_normal_init(INIT_STD), name="logit")(h)[:, 0]


class SpecifiedClassifier(nn.Module):
  """f_s with a two-layer network on top, predicting each identity attribute (5.4.6's pretraining).

  Its `specified` submodule has the structure of `Encoder(separate=True).specified`, so its
  variables move there unchanged.
  """

  layers: Sequence[ConvLayer]
  s_dim: int
  identity_sizes: Sequence[int]
  hidden: int = CLASSIFIER_HIDDEN

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> list[jnp.ndarray]:
    """`[B, identity_sizes[a]]` logits per attribute `a`."""
    s = SpecifiedEncoder(self.layers, self.s_dim, name="specified")(x, train)
    h = nn.relu(nn.Dense(self.hidden, name="hidden")(s))
    return [nn.Dense(size, name=f"out{a}")(h) for a, size in enumerate(self.identity_sizes)]


def reparameterize(rng: jax.Array, mu: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
  """A sample of N(mu, exp(logvar)) as `mu + exp(logvar / 2) * eps` (Kingma & Welling, 2013)."""
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape, mu.dtype)

