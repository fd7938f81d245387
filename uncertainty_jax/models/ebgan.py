"""Chapter 6: the generators and auto-encoder discriminators of Energy-Based GANs.

Thesis 6.2.3 (eq. 6.60): the EBGAN discriminator is an auto-encoder and its energy is the
reconstruction error D(x) = ||Dec(Enc(x)) - x||^2; the pulling-away term (eq. 6.61) is computed on
the encoder's output, so every auto-encoder here returns its code with the reconstruction. The
energy and the losses are plain functions of these outputs and live in `uncertainty_jax.losses`.

Two families of models, following the experiments of thesis 6.3, whose details the thesis leaves to
the EBGAN paper (Zhao, Mathieu & LeCun, ICLR 2017, appendix C):

* MNIST grid search (6.3.1, Table 6.1): fully connected `FCGenerator` (nLayerG layers of sizeG
  units) and `FCAutoEncoder` (nLayerD layers in Enc and Dec together, sizeD units, optional
  dropout). Batch norm follows every weight layer but the generator's output and the
  discriminator's input, ReLU is the non-linearity, weights start from N(0, 0.02) in G and
  N(0, 0.002) in D, biases at 0.
* 64x64 images (6.3.3, LSUN and CelebA): the DCGAN generator (Radford et al., 2016)
  `DCGANGenerator`; the convolutional auto-encoder `ConvAutoEncoder`, Encoder
  (64)4c2s-(128)4c2s-(256)4c2s and Decoder (128)4c2s-(64)4c2s-(3)4c2s, "(64)4c2s" being 64 filters
  of 4x4 with stride 2, fractionally strided in the decoder; and the DCGAN baseline's discriminator
  `DCGANDiscriminator`. These follow DCGAN's guidelines, as the EBGAN paper says it does: batch norm
  everywhere but the generator's output and the discriminator's input, ReLU in G, leaky ReLU
  (slope 0.2) in D, N(0, 0.02) weights.

Where both papers are silent: 4c2s layers pad by 1, as DCGAN's code does (torch's `padding=1`), so
each exactly halves or doubles the size; a layer followed by batch norm has no bias (the norm's
shift replaces it); the auto-encoders' last layer is linear and has no batch norm, so a
reconstruction is neither squashed nor renormalised over the batch before its energy is measured.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from uncertainty_jax import layers as layers_lib

# How the fractionally strided convolutions are computed (`_deconv_4c2s`).
DECONVS = layers_lib.CONV_TRANSPOSE_METHODS
# DCGAN's leaky ReLU slope (Radford et al., 2016, section 3).
LEAKY_SLOPE = 0.2
# Weight init of the EBGAN paper's appendix C: N(0, 0.02) in G, N(0, 0.002) in D; DCGAN's N(0, 0.02)
# for the convolutional models.
GENERATOR_INIT_STD = 0.02
FC_DISCRIMINATOR_INIT_STD = 0.002
DCGAN_INIT_STD = 0.02
# "dropoutD: true" in Table 6.1 gives no rate; 0.5 is the usual one (Srivastava et al., 2014).
GRID_DROPOUT_RATE = 0.5
# DCGAN's latent size, the one of the EBGAN 64x64 experiments.
DCGAN_LATENT_DIM = 100


@dataclasses.dataclass(frozen=True)
class MnistGrid:
  """The searched values of Table 6.1 for EBGANs and GANs alike (optimizers and lr left out).

  Attributes:
    num_layers_g: nLayerG, weight layers of G (`FCGenerator.num_layers`).
    num_layers_d: nLayerD, weight layers of Enc and Dec together (`FCAutoEncoder.num_layers`).
    size_g: sizeG, units of G's hidden layers (`FCGenerator.hidden`).
    size_d: sizeD, units of D's hidden layers (`FCAutoEncoder.hidden`).
    dropout_d: dropoutD; True means `FCAutoEncoder.dropout = GRID_DROPOUT_RATE`.
  """

  num_layers_g: tuple[int, ...] = (2, 3, 4, 5)
  num_layers_d: tuple[int, ...] = (2, 3, 4, 5)
  size_g: tuple[int, ...] = (400, 800, 1600, 3200)
  size_d: tuple[int, ...] = (128, 256, 512, 1024)
  dropout_d: tuple[bool, ...] = (True, False)


MNIST_GRID = MnistGrid()


def _normal_init(std: float) -> Callable[..., jax.Array]:
  """N(0, std^2) weights, drawn flat and reshaped.

  XLA:CPU compiles random draws of small multi-dimensional shapes slowly; flat draws are fast (the
  same reason as `layers.torch_uniform`).
  """

  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)

  return init


def _batch_norm(train: bool) -> nn.BatchNorm:
  # Torch's BatchNorm defaults (momentum 0.1 there is 0.9 here, eps 1e-5), as in DCGAN's code.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


def _leaky_relu(x: jnp.ndarray) -> jnp.ndarray:
  return nn.leaky_relu(x, LEAKY_SLOPE)


def _dropout(module: nn.Module, x: jnp.ndarray, rate: Any, train: bool) -> jnp.ndarray:
  """Inverted dropout at `rate` (a Python number or a traced scalar), active only in training.

  `nn.Dropout` takes its rate as a static attribute; this one may vary per member of a `vmap`.
  """
  if not train or (isinstance(rate, (int, float)) and rate == 0):
    return x
  keep = 1.0 - jnp.asarray(rate, x.dtype)
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, x.shape)
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


def _check_fc_discriminator(module: nn.Module) -> None:
  _check_int("num_layers", module.num_layers, 2)
  _check_int("hidden", module.hidden, 1)
  if isinstance(module.dropout, bool) or not isinstance(module.dropout, (int, float)) or not (
      0.0 <= module.dropout < 1.0):
    raise ValueError(f"dropout: {module.dropout!r} is not a rate in [0, 1)")
  _check_std(module.init_std)


def _fc_hidden_layer(module: nn.Module, h: jnp.ndarray, index: int, activation, train: bool,
                     dropout_rate: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Hidden layer `index` of a fully connected discriminator: Dense, batch norm (not on the
  first layer, the discriminator's input), `activation`; returns the activation and its dropout."""
  no_norm = not module.batch_norm or index == 0
  h = nn.Dense(module.hidden, use_bias=no_norm, kernel_init=_normal_init(module.init_std))(h)
  if not no_norm:
    h = _batch_norm(train)(h)
  h = activation(h)
  rate = module.dropout if dropout_rate is None else dropout_rate
  return h, _dropout(module, h, rate, train)


def _check_int(name: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name}: {value!r} is not an integer >= {minimum}")


def _check_deconv(value: Any) -> None:
  if value not in DECONVS:
    raise ValueError(f"deconv: unknown method {value!r}; valid: {list(DECONVS)}")


def _check_std(value: Any) -> None:
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
    raise ValueError(f"init_std: {value!r} is not a positive number")


def _check_features(name: str, features: Any) -> None:
  if (not isinstance(features, Sequence) or not features
      or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features)):
    raise ValueError(f"{name}: {features!r} is not a non-empty sequence of positive integers")


def _check_images(x: jnp.ndarray, num_halvings: int, channels: int | None = None) -> None:
  """Checks `x` is `[B, H, W, C]` with H and W divisible by `2 ** num_halvings`."""
  factor = 2 ** num_halvings
  if x.ndim != 4:
    raise ValueError(f"x: shape {x.shape} is not [B, H, W, C]")
  if x.shape[1] % factor or x.shape[2] % factor:
    raise ValueError(f"x: spatial size {x.shape[1:3]} is not divisible by {factor}")
  if channels is not None and x.shape[3] != channels:
    raise ValueError(f"x: {x.shape[3]} channels, the model has channels={channels}")


def _check_latent(z: jnp.ndarray) -> None:
  if z.ndim != 2:
    raise ValueError(f"z: shape {z.shape} is not [B, nz]")


def _conv_4c2s(features: int, bias: bool, init_std: float) -> nn.Conv:
  """A (features)4c2s convolution: 4x4 kernel, stride 2, padding 1, so `[H, W] -> [H/2, W/2]`."""
  return nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=bias,
                 kernel_init=_normal_init(init_std))


def _deconv_4c2s(features: int, bias: bool, init_std: float, index: int, method: str) -> nn.Module:
  """A fractionally strided (features)4c2s: `[H, W] -> [2H, 2W]`.

  `nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME')`, whose 'SAME' pads the
  stride-dilated input by 2 on each side (torch's `ConvTranspose2d(kernel_size=4, stride=2,
  padding=1)`). `method` 'subpixel' computes the same function as `layers.SubpixelConvTranspose`,
  'flax' as `nn.ConvTranspose`. The sub-pixel form made the `full` 64x64 EBGAN step 2.8x faster on
  the 2-core CPU and 2.3x on an H100 (`benchmarks/ebgan_step.py`, README). Both carry the name
  `ConvTranspose_<index>` and the same parameters, so a seed initialises the same weights and a
  checkpoint restores under either.
  """
  return layers_lib.conv_transpose(features, 4, 2, method, use_bias=bias,
                                   kernel_init=_normal_init(init_std),
                                   name=f"ConvTranspose_{index}")


class FCGenerator(nn.Module):
  """The fully connected generator of the MNIST grid search (thesis 6.3.1, Table 6.1).

  `num_layers - 1` hidden layers of `hidden` units (Dense, batch norm, ReLU), then a Dense output
  layer to `prod(out_shape)` values and tanh. nLayerG counts every weight layer, the output one
  included, as nLayerD does for the auto-encoder.

  Attributes:
    num_layers: nLayerG, >= 2 (Table 6.1 searches `MNIST_GRID.num_layers_g`).
    hidden: sizeG, the hidden width (Table 6.1 searches `MNIST_GRID.size_g`).
    out_shape: the shape of one sample, e.g. `(28, 28, 1)`.
    batch_norm: batch norm after every hidden layer (the EBGAN paper's setting); not searched.
    init_std: standard deviation of the N(0, std^2) weights.
    output: 'tanh' (images in [-1, 1]) or 'linear' (unbounded samples, e.g. 2-D points).
  """

  num_layers: int
  hidden: int
  out_shape: tuple[int, ...]
  batch_norm: bool = True
  init_std: float = GENERATOR_INIT_STD
  output: str = "tanh"

  def __post_init__(self):
    _check_int("num_layers", self.num_layers, 2)
    _check_int("hidden", self.hidden, 1)
    _check_features("out_shape", self.out_shape)
    _check_std(self.init_std)
    if self.output not in ("tanh", "linear"):
      raise ValueError(f"output: {self.output!r} is not 'tanh' or 'linear'")
    super().__post_init__()

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """Generates samples.

    Args:
      z: `[B, nz]` latent vectors.
      train: batch norm uses (and updates) batch statistics; make 'batch_stats' mutable.

    Returns:
      `[B, *out_shape]` samples, in [-1, 1] with the tanh output.
    """
    _check_latent(z)
    init = _normal_init(self.init_std)
    x = z
    for _ in range(self.num_layers - 1):
      x = nn.Dense(self.hidden, use_bias=not self.batch_norm, kernel_init=init)(x)
      if self.batch_norm:
        x = _batch_norm(train)(x)
      x = nn.relu(x)
    x = nn.Dense(math.prod(self.out_shape), kernel_init=init)(x)
    if self.output == "tanh":
      x = jnp.tanh(x)
    return x.reshape(z.shape[0], *self.out_shape)


class FCAutoEncoder(nn.Module):
  """The fully connected auto-encoder discriminator of the MNIST grid search (thesis 6.3.1).

  `num_layers` Dense layers in all (nLayerD, Enc and Dec together): every layer but the last has
  `hidden` units and ReLU, the last maps back to the input size, linear. The encoder is the first
  `(num_layers + 1) // 2` layers, so the code is the output of the middle layer (the first of the
  two middle ones when `num_layers` is even). Batch norm follows every hidden layer but the first,
  the discriminator's input layer. Dropout, when on, follows every hidden activation; the code is
  returned before it, so the pulling-away term sees the same representation in train and eval mode.

  Attributes:
    num_layers: nLayerD, >= 2 (Table 6.1 searches `MNIST_GRID.num_layers_d`).
    hidden: sizeD, the hidden width and the code size (Table 6.1 searches `MNIST_GRID.size_d`).
    dropout: dropout rate in [0, 1) (dropoutD: `GRID_DROPOUT_RATE` or 0); active only in training,
      with a 'dropout' rng.
    batch_norm: batch norm after the hidden layers but the first (the EBGAN paper's setting).
    init_std: standard deviation of the N(0, std^2) weights.
  """

  num_layers: int
  hidden: int
  dropout: float = 0.0
  batch_norm: bool = True
  init_std: float = FC_DISCRIMINATOR_INIT_STD

  def __post_init__(self):
    _check_fc_discriminator(self)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, dropout_rate: Any = None
               ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Reconstructs `x`.

    Args:
      x: `[B, *shape]` inputs, e.g. `[B, 28, 28, 1]` images in [-1, 1].
      train: batch norm uses (and updates) batch statistics, and dropout is on (needs a 'dropout'
        rng); make 'batch_stats' mutable.
      dropout_rate: overrides `dropout` for this call; may be a traced scalar in [0, 1), so that
        models differing only in their rate train together under `jax.vmap`.

    Returns:
      reconstruction `[B, *shape]` (unbounded) and code `[B, hidden]`, the encoder's output.
    """
    if x.ndim < 2:
      raise ValueError(f"x: shape {x.shape} is not [B, ...]")
    init = _normal_init(self.init_std)
    batch, shape = x.shape[0], x.shape[1:]
    h = x.reshape(batch, -1)
    code = None
    for i in range(self.num_layers - 1):
      activation, h = _fc_hidden_layer(self, h, i, nn.relu, train, dropout_rate)
      if i == (self.num_layers + 1) // 2 - 1:
        code = activation
    reconstruction = nn.Dense(math.prod(shape), kernel_init=init)(h)
    return reconstruction.reshape(batch, *shape), code


class FCDiscriminator(nn.Module):
  """The fully connected discriminator of the GAN baseline in the MNIST grid search (6.3.1).

  The binary classifier counterpart of `FCAutoEncoder`, with the same searched settings: nLayerD
  Dense layers in all, every layer but the last `hidden` units wide with leaky ReLU (DCGAN's
  discriminator non-linearity), batch norm after the hidden layers but the first, optional dropout
  after every hidden activation; the last layer gives one logit.

  Attributes:
    num_layers: nLayerD, >= 2.
    hidden: sizeD.
    dropout: dropout rate in [0, 1); active only in training, with a 'dropout' rng.
    batch_norm: batch norm after the hidden layers but the first.
    init_std: standard deviation of the N(0, std^2) weights (as the auto-encoder's).
  """

  num_layers: int
  hidden: int
  dropout: float = 0.0
  batch_norm: bool = True
  init_std: float = FC_DISCRIMINATOR_INIT_STD

  def __post_init__(self):
    _check_fc_discriminator(self)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, dropout_rate: Any = None
               ) -> jnp.ndarray:
    """Scores samples.

    Args:
      x: `[B, *shape]` samples.
      train: batch norm uses (and updates) batch statistics and dropout is on.
      dropout_rate: overrides `dropout` for this call (may be traced, as in `FCAutoEncoder`).

    Returns:
      `[B]` logits; sigmoid(logit) is the probability that the sample is real.
    """
    if x.ndim < 2:
      raise ValueError(f"x: shape {x.shape} is not [B, ...]")
    h = x.reshape(x.shape[0], -1)
    for i in range(self.num_layers - 1):
      _, h = _fc_hidden_layer(self, h, i, _leaky_relu, train, dropout_rate)
    return nn.Dense(1, kernel_init=_normal_init(self.init_std))(h)[:, 0]


class DCGANGenerator(nn.Module):
  """The DCGAN generator used by the EBGAN 64x64 experiments (thesis 6.3.3).

  z is projected to `4 x 4 x (base_features * 2 ** (n - 1))` (a Dense layer, the same function as
  DCGAN's 4x4 full convolution of a 1x1 input), then fractionally strided 4c2s convolutions halve
  the width and double the size until `image_size / 2`; all with batch norm and ReLU. A last 4c2s to
  `channels` and tanh gives the image. At 64x64 and `base_features = 64` the feature maps are
  4x4x512, 8x8x256, 16x16x128, 32x32x64; 32x32 drops the first of these widths (4x4x256 onwards).

  Attributes:
    base_features: width of the last hidden layer (DCGAN's ngf).
    image_size: 32 or 64.
    channels: channels of the output images.
    init_std: standard deviation of the N(0, std^2) weights.
    deconv: how the fractionally strided convolutions are computed (`DECONVS`; the same function
      and parameters either way).
  """

  base_features: int = 64
  image_size: int = 64
  channels: int = 3
  init_std: float = DCGAN_INIT_STD
  deconv: str = "subpixel"

  def __post_init__(self):
    _check_deconv(self.deconv)
    _check_int("base_features", self.base_features, 1)
    if self.image_size not in (32, 64):
      raise ValueError(f"image_size: {self.image_size!r} is not 32 or 64")
    _check_int("channels", self.channels, 1)
    _check_std(self.init_std)
    super().__post_init__()

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """Generates images.

    Args:
      z: `[B, nz]` latent vectors (DCGAN's nz is `DCGAN_LATENT_DIM`).
      train: batch norm uses (and updates) batch statistics; make 'batch_stats' mutable.

    Returns:
      `[B, image_size, image_size, channels]` images in [-1, 1].
    """
    _check_latent(z)
    num_hidden = int(math.log2(self.image_size // 4))  # 4x4 up to image_size / 2.
    width = self.base_features * 2 ** (num_hidden - 1)
    x = nn.Dense(4 * 4 * width, use_bias=False, kernel_init=_normal_init(self.init_std))(z)
    x = nn.relu(_batch_norm(train)(x.reshape(z.shape[0], 4, 4, width)))
    for i in range(num_hidden - 1):
      width //= 2
      x = _deconv_4c2s(width, False, self.init_std, i, self.deconv)(x)
      x = nn.relu(_batch_norm(train)(x))
    x = _deconv_4c2s(self.channels, True, self.init_std, num_hidden - 1,
                     self.deconv)(x)
    return jnp.tanh(x)


class ConvAutoEncoder(nn.Module):
  """The convolutional auto-encoder discriminator of the EBGAN 64x64 experiments (thesis 6.3.3).

  Encoder: a 4c2s convolution per entry of `features` ((64)4c2s-(128)4c2s-(256)4c2s), leaky ReLU,
  batch norm on all but the first (the discriminator's input layer). Decoder: fractionally strided
  4c2s back to full size, widths `features[-2::-1]` then `channels` ((128)4c2s-(64)4c2s-(3)4c2s),
  batch norm and leaky ReLU on all but the last, which is linear.

  Attributes:
    features: encoder widths; the code has `features[-1]` channels at `1 / 2 ** len(features)` of
      the input size.
    channels: channels of the images.
    init_std: standard deviation of the N(0, std^2) weights.
    batch_norm: batch norm where the description above puts it; without it, every sample's
      reconstruction depends on that sample alone.
    deconv: how the fractionally strided convolutions are computed (`DECONVS`; the same function
      and parameters either way).
  """

  features: tuple[int, ...] = (64, 128, 256)
  channels: int = 3
  init_std: float = DCGAN_INIT_STD
  batch_norm: bool = True
  deconv: str = "subpixel"

  def __post_init__(self):
    _check_deconv(self.deconv)
    _check_features("features", self.features)
    _check_int("channels", self.channels, 1)
    _check_std(self.init_std)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Reconstructs images.

    Args:
      x: `[B, H, W, channels]` images in [-1, 1]; H and W divisible by `2 ** len(features)`.
      train: batch norm uses (and updates) batch statistics; make 'batch_stats' mutable.

    Returns:
      reconstruction `[B, H, W, channels]` (unbounded) and code
      `[B, H / 2 ** n, W / 2 ** n, features[-1]]`, n = len(features).
    """
    _check_images(x, len(self.features), self.channels)
    h = x
    for i, width in enumerate(self.features):
      norm = self.batch_norm and i > 0
      h = _conv_4c2s(width, not norm, self.init_std)(h)
      if norm:
        h = _batch_norm(train)(h)
      h = _leaky_relu(h)
    code = h
    for i, width in enumerate(self.features[-2::-1]):
      h = _deconv_4c2s(width, not self.batch_norm, self.init_std, i, self.deconv)(h)
      if self.batch_norm:
        h = _batch_norm(train)(h)
      h = _leaky_relu(h)
    reconstruction = _deconv_4c2s(self.channels, True, self.init_std, len(self.features) - 1,
                                  self.deconv)(h)
    return reconstruction, code


class DCGANDiscriminator(nn.Module):
  """The DCGAN discriminator of the GAN baseline of thesis 6.3.3.

  A 4c2s convolution per entry of `features`, leaky ReLU, batch norm on all but the first, then one
  logit from the flattened last feature maps: at 64x64 these are 4x4, and the Dense layer is
  DCGAN's final 4x4 valid convolution.

  Attributes:
    features: convolution widths (DCGAN's ndf, 2 ndf, 4 ndf, 8 ndf).
    init_std: standard deviation of the N(0, std^2) weights.
  """

  features: tuple[int, ...] = (64, 128, 256, 512)
  init_std: float = DCGAN_INIT_STD

  def __post_init__(self):
    _check_features("features", self.features)
    _check_std(self.init_std)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """Scores images.

    Args:
      x: `[B, H, W, C]` images in [-1, 1]; H and W divisible by `2 ** len(features)`.
      train: batch norm uses (and updates) batch statistics; make 'batch_stats' mutable.

    Returns:
      `[B]` logits; sigmoid(logit) is the probability that the image is real.
    """
    _check_images(x, len(self.features))
    h = x
    for i, width in enumerate(self.features):
      h = _conv_4c2s(width, i == 0, self.init_std)(h)
      if i > 0:
        h = _batch_norm(train)(h)
      h = _leaky_relu(h)
    h = h.reshape(x.shape[0], -1)
    return nn.Dense(1, kernel_init=_normal_init(self.init_std))(h)[:, 0]
