"""Chapter 6: the fully connected Ladder Network of the semi-supervised experiment (thesis 6.3.2).

EBGAN-LN (Table 6.2) uses a "bottom-layer-cost" Ladder Network (Rasmus et al., 2015,
"Semi-supervised learning with ladder networks", NeurIPS) as the EBGAN discriminator: its energy is
the decoder's reconstruction error of the input. The thesis gives no further detail, so the
network follows Rasmus et al.'s Algorithm 1 and their public code (github.com/CuriousAI/ladder),
restricted to fully connected layers on flat inputs (permutation-invariant MNIST):

* Encoder, run twice with shared parameters: a clean path, and a noisy path that adds
  `noise_std * N(0, 1)` to the input and to every layer's normalised pre-activation. Layer `l`
  computes `z_pre = W_l h_{l-1}` (no bias), `z = batchnorm(z_pre)` (+ noise in the noisy path),
  `h_l = relu(z + beta_l)` below the top and `softmax(gamma * (z + beta_L))` at the top: a learned
  shift per layer, a learned scale only at the top, since ReLU commutes with positive scales.
* Decoder, top to bottom: `u_L = batchnorm(h~_L)`, the noisy path's softmax output, and
  `u_l = batchnorm(V_{l+1} z^_{l+1})` below; `z^_l = combinator(z~_l, u_l, a_l)` combines the
  noisy encoder's `z~_l` (the lateral connection) with `u_l`. The decoder's batch norms have no
  learned scale or shift (the combinator has its own). `z^_0` is the reconstruction of the input.
* Denoising targets: the clean path's normalised `z_l` (the input itself at l = 0), compared with
  `z^_l` normalised by the clean path's batch mean and standard deviation of layer `l`
  (`z^_l,BN` of Algorithm 1; the input layer has no batch norm, so `z^_0,BN = z^_0`).

The whole decoder always runs: every layer's `z^_l` is needed to reach `z^_0`, so a zero cost
weight saves no computation.

Batch normalisation, where the paper's code is specific to its Theano graph, follows the flax
convention instead: in training every batch norm uses the statistics of the batch it is given
(biased variance, `+ epsilon` under the square root) and the clean path's and the decoder's batch
norms update running averages in the 'batch_stats' collection (`m <- momentum * m + (1 - momentum)
* batch_m`); at evaluation they use those running averages, so outputs do not depend on the batch
composition. The noisy path reads the running averages of the clean one (shared variables) but
never updates them. Rasmus et al. normalise the labelled and unlabelled parts of a mixed batch
separately; this module normalises over whatever batch it is given, so a caller wanting the
paper's scheme calls it once on each part.

Weights start from N(0, 1 / fan_in) (the reference code's `randn(in, out) / sqrt(in)`), shifts
at 0, the top scale at 1; combinator parameters as in `combinator_init`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

# Rasmus et al. (2015), section 4.1: the fully connected MNIST network, 784 inputs, and its noise.
MNIST_LAYER_SIZES = (1000, 500, 250, 250, 250, 10)
NOISE_STD = 0.3
# Flax's BatchNorm defaults.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-5
# a1 .. a10 of the vanilla combinator (Rasmus et al., eq. 2).
NUM_COMBINATOR_PARAMS = 10
# Rows of `a` that start at 1 (a2 and a7, the sigmoids' input scales); the others start at 0.
_COMBINATOR_UNIT_ROWS = (1, 6)


def combinator(z_noisy: jax.Array, u: jax.Array, a: jax.Array) -> jax.Array:
  """The vanilla combinator g of Rasmus et al. (2015), eq. (2), elementwise.

    mu(u) = a1 * sigmoid(a2 * u + a3) + a4 * u + a5
    v(u)  = a6 * sigmoid(a7 * u + a8) + a9 * u + a10
    z^    = (z_noisy - mu(u)) * v(u) + mu(u)

  It denoises a unit assuming Gaussian noise: `mu(u)` is the prior mean predicted from above and
  `v(u)` how much of the lateral signal to keep.

  Args:
    z_noisy: `[B, n]`, the noisy encoder's normalised pre-activations of the layer (the lateral
      input `z~`).
    u: `[B, n]`, the decoder's normalised projection from the layer above.
    a: `[10, n]`, one set of parameters per unit: row `i` is `a_{i+1}` (`a[0]` is a1, `a[9]` a10).

  Returns:
    `[B, n]`, the estimate `z^`.

  Raises:
    ValueError: if `z_noisy` and `u` differ in shape or `a` is not `[10, n]`.
  """
  z_noisy, u, a = jnp.asarray(z_noisy), jnp.asarray(u), jnp.asarray(a)
  if z_noisy.shape != u.shape:
    raise ValueError(f'u: shape {u.shape} differs from z_noisy\'s {z_noisy.shape}')
  if a.shape != (NUM_COMBINATOR_PARAMS, z_noisy.shape[-1]):
    raise ValueError(f'a: shape {a.shape} is not ({NUM_COMBINATOR_PARAMS}, '
                     f'{z_noisy.shape[-1]}), one column per unit of z_noisy')
  mu = a[0] * jax.nn.sigmoid(a[1] * u + a[2]) + a[3] * u + a[4]
  v = a[5] * jax.nn.sigmoid(a[6] * u + a[7]) + a[8] * u + a[9]
  return (z_noisy - mu) * v + mu


def combinator_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
  """The initial combinator parameters `[10, n]` of Rasmus et al.'s code: a2 = a7 = 1, others 0.

  Then `mu = v = 0` and `combinator` returns 0 for every input, so the first reconstruction is
  zero. The gradient of `z^` with respect to a1, a4, a5, a6, a9 and a10 is nonzero from the first
  step (`dz^/da5 = 1 - v`, `dz^/da10 = z~ - mu`, ...), and once a4, a9 (or a1, a6) leave 0 the
  signal and the gradients flow through `u` to the layers above. A start at `mu = 0, v = 1`
  (`z^ = z~`) would instead make the decoder copy its noisy input and ignore `u`. `key` is unused:
  the start is deterministic.

  Args:
    key: a PRNG key (unused; a flax initializer's signature).
    shape: `(10, n)`.
    dtype: the parameters' dtype.

  Returns:
    `[10, n]`.
  """
  del key
  shape = tuple(shape)
  if len(shape) != 2 or shape[0] != NUM_COMBINATOR_PARAMS:
    raise ValueError(f'shape: {shape} is not ({NUM_COMBINATOR_PARAMS}, n)')
  a = jnp.zeros(shape, dtype)
  return a.at[jnp.array(_COMBINATOR_UNIT_ROWS)].set(1)


def _fan_in_normal(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
  """N(0, 1 / fan_in) weights, drawn flat and reshaped.

  XLA:CPU compiles random draws of small multi-dimensional shapes slowly; flat draws are fast (the
  same reason as `models.ebgan._normal_init`).
  """
  std = 1.0 / math.sqrt(shape[0])
  return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


@flax.struct.dataclass
class LadderOutputs:
  """What one pass of `LadderNetwork` returns. `L = len(layer_sizes)`; layer 0 is the input.

  Attributes:
    logits_clean: `[B, C]`, the clean path's pre-softmax `gamma * (z_L + beta_L)`: for prediction.
    logits_noisy: `[B, C]`, the noisy path's: for the supervised training cost (Rasmus et al.
      train on the noisy output). Equal to `logits_clean` at `train=False`.
    z_clean: `L + 1` arrays `[B, n_l]` (`n_0 = D`): the input, then the clean path's normalised
      pre-activations; the denoising targets.
    z_hat_bn: `L + 1` arrays `[B, n_l]`: the decoder's estimates `z^_l`, normalised with the clean
      path's statistics of layer `l` (batch statistics in training, running averages at
      evaluation); `z_hat_bn[0]` is `reconstruction`.
    reconstruction: `[B, D]`, the decoder's bottom output `z^_0`, unnormalised: the `x^` of the
      EBGAN energy `||x - x^||^2`.
  """

  logits_clean: jax.Array
  logits_noisy: jax.Array
  z_clean: tuple[jax.Array, ...]
  z_hat_bn: tuple[jax.Array, ...]
  reconstruction: jax.Array


class _BatchNorm(nn.Module):
  """Normalisation without scale or shift that also returns the statistics it used.

  Running averages live in 'batch_stats' (`mean`, `var`, as in `nn.BatchNorm`). The batch axis is
  the first; statistics are per feature.
  """

  momentum: float
  epsilon: float

  @nn.compact
  def __call__(self, z: jax.Array, use_batch_stats: bool, update: bool
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns `(z - mean) / std`, `mean [n]` and `std [n]`, `std = sqrt(var + epsilon)`.

    Args:
      z: `[B, n]`.
      use_batch_stats: normalise with the batch's statistics, else with the running averages.
      update: with `use_batch_stats`, fold the batch's statistics into the running averages
        (needs 'batch_stats' mutable); not during initialisation, as in `nn.BatchNorm`.
    """
    features = z.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    if use_batch_stats:
      mean = jnp.mean(z, axis=0)
      var = jnp.var(z, axis=0)
      if update and not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    else:
      mean, var = ra_mean.value, ra_var.value
    std = jnp.sqrt(var + self.epsilon)
    return (z - mean) / std, mean, std


def _check_positive_ints(name: str, values: Any) -> None:
  if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values
      or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
             for v in values)):
    raise ValueError(f'{name}: {values!r} is not a non-empty sequence of positive integers')


def _check_weights(values: Any, length: int) -> None:
  if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence)
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values)):
    raise ValueError(f'cost_weights: {values!r} is not a sequence of numbers')
  if len(values) != length:
    raise ValueError(f'cost_weights: {len(values)} weights {tuple(values)!r}, expected '
                     f'len(layer_sizes) + 1 = {length} (index 0 is the input layer)')
  if any(not (math.isfinite(v) and v >= 0) for v in values):
    raise ValueError(f'cost_weights: {tuple(values)!r} has a negative or non-finite weight; '
                     'expected finite numbers >= 0')


def _check_real(name: str, value: Any, low: float, high: float | None, low_open: bool) -> None:
  ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
  if ok:
    ok = (value > low if low_open else value >= low) and (high is None or value < high)
  if not ok:
    bracket = '(' if low_open else '['
    upper = f'{high})' if high is not None else 'inf)'
    raise ValueError(f'{name}: {value!r} is not a number in {bracket}{low}, {upper}')


class LadderNetwork(nn.Module):
  """The fully connected Ladder Network of Rasmus et al. (2015); see the module docstring.

  Usage (training; `x` is `[B, D]`):

    model = LadderNetwork(layer_sizes=MNIST_LAYER_SIZES, cost_weights=(1.0,) + (0.0,) * 6)
    variables = model.init({'params': k1, 'noise': k2}, x, train=True)
    out, updates = model.apply(variables, x, train=True, rngs={'noise': k3},
                               mutable=['batch_stats'])
    cost = masked_cross_entropy(out.logits_noisy, y, mask) + denoising_cost(
        out.z_clean, out.z_hat_bn, model.cost_weights)

  and `model.apply(variables, x, train=False).logits_clean` to classify. The losses are in
  `uncertainty_jax.losses`; the EBGAN energy is `losses.ladder_energy(x, out.reconstruction)`.

  Attributes:
    layer_sizes: widths of the encoder's layers `n_1 .. n_L`, the last being the class count `C`,
      e.g. `MNIST_LAYER_SIZES` for 784 inputs. The input size `D` is read from `x`.
    cost_weights: the denoising cost weights `lambda_0 .. lambda_L`, `L + 1` numbers >= 0, index 0
      the input layer. The network does not use them itself (the decoder always runs whole);
      they travel with it for `losses.denoising_cost`. The bottom-layer-cost Ladder Network of
      EBGAN-LN is `(w, 0, ..., 0)`; Rasmus et al.'s 100-label MNIST run uses
      `(1000, 10, 0.1, 0.1, 0.1, 0.1, 0.1)`.
    noise_std: standard deviation of the Gaussian noise of the noisy path, added to the input and
      to every layer's normalised pre-activation (0.3 in Rasmus et al.); at 0 the noisy path
      computes what the clean one does (equal up to float rounding) and needs no 'noise' rng.
    momentum: decay of the batch norms' running averages, in [0, 1).
    epsilon: added to the variance before the square root, > 0.
  """

  layer_sizes: Sequence[int]
  cost_weights: Sequence[float]
  noise_std: float = NOISE_STD
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON

  def __post_init__(self):
    _check_positive_ints('layer_sizes', self.layer_sizes)
    _check_weights(self.cost_weights, len(self.layer_sizes) + 1)
    _check_real('noise_std', self.noise_std, 0.0, None, low_open=False)
    _check_real('momentum', self.momentum, 0.0, 1.0, low_open=False)
    _check_real('epsilon', self.epsilon, 0.0, None, low_open=True)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> LadderOutputs:
    """Runs the clean and noisy encoders and the decoder.

    Args:
      x: `[B, D]` flat inputs (images in [-1, 1] flattened).
      train: batch statistics, noise, and running-average updates (make 'batch_stats' mutable;
        with `noise_std > 0` pass a 'noise' rng). At `train=False` no noise is drawn and every
        batch norm uses its running averages, so the noisy path is the clean one: only the clean
        encoder runs and its quantities serve both (`logits_noisy == logits_clean`, and the
        decoder denoises the clean `z`).

    Returns:
      A `LadderOutputs`.

    Raises:
      ValueError: if `x` is not `[B, D]`.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
      raise ValueError(f'x: shape {x.shape} is not [B, D] (flatten images first)')
    num_layers = len(self.layer_sizes)
    sizes = (x.shape[1], *self.layer_sizes)
    encoder = [nn.Dense(n, use_bias=False, kernel_init=_fan_in_normal, name=f'encoder_{l}')
               for l, n in enumerate(sizes[1:], start=1)]
    encoder_bn = [_BatchNorm(self.momentum, self.epsilon, name=f'encoder_bn_{l}')
                  for l in range(1, num_layers + 1)]
    betas = [self.param(f'beta_{l}', nn.initializers.zeros, (n,))
             for l, n in enumerate(sizes[1:], start=1)]
    gamma = self.param('gamma', nn.initializers.ones, (sizes[-1],))

    def encode(noise: Callable[[int, jax.Array], jax.Array] | None, update: bool):
      """Returns per-layer z (input included), means and stds (layers 1..L), logits, softmax."""
      h = x if noise is None else x + noise(0, x)
      zs, means, stds = [h], [], []
      for l in range(1, num_layers + 1):
        z, mean, std = encoder_bn[l - 1](encoder[l - 1](h), train, update)
        if noise is not None:
          z = z + noise(l, z)
        zs.append(z)
        means.append(mean)
        stds.append(std)
        if l < num_layers:
          h = nn.relu(z + betas[l - 1])
        else:
          logits = gamma * (z + betas[l - 1])
      return zs, means, stds, logits, jax.nn.softmax(logits)

    z_clean, means, stds, logits_clean, _ = encode(None, update=train)
    if train and self.noise_std > 0:
      keys = jax.random.split(self.make_rng('noise'), num_layers + 1)
      noise = lambda l, z: self.noise_std * jax.random.normal(keys[l], z.shape, z.dtype)
      z_noisy, _, _, logits_noisy, probs_noisy = encode(noise, update=False)
    elif train:
      # The clean path's computation again; equal to it up to float rounding (XLA may fuse the
      # two passes differently).
      z_noisy, _, _, logits_noisy, probs_noisy = encode(None, update=False)
    else:
      z_noisy, logits_noisy, probs_noisy = z_clean, logits_clean, jax.nn.softmax(logits_clean)

    # The decoder, top to bottom: V_l maps layer l back to layer l - 1.
    z_hat = [None] * (num_layers + 1)
    for l in range(num_layers, -1, -1):
      if l == num_layers:
        u = probs_noisy
      else:
        u = nn.Dense(sizes[l], use_bias=False, kernel_init=_fan_in_normal,
                     name=f'decoder_{l + 1}')(z_hat[l + 1])
      u, _, _ = _BatchNorm(self.momentum, self.epsilon, name=f'decoder_bn_{l}')(u, train, train)
      a = self.param(f'combinator_{l}', combinator_init, (NUM_COMBINATOR_PARAMS, sizes[l]))
      z_hat[l] = combinator(z_noisy[l], u, a)

    z_hat_bn = [z_hat[0]] + [(z_hat[l] - means[l - 1]) / stds[l - 1]
                             for l in range(1, num_layers + 1)]
    return LadderOutputs(logits_clean=logits_clean, logits_noisy=logits_noisy,
                         z_clean=tuple(z_clean), z_hat_bn=tuple(z_hat_bn),
                         reconstruction=z_hat[0])


__all__ = ['BN_EPSILON', 'BN_MOMENTUM', 'LadderNetwork', 'LadderOutputs', 'MNIST_LAYER_SIZES',
           'NOISE_STD', 'NUM_COMBINATOR_PARAMS', 'combinator', 'combinator_init']
