"""Energy-based GAN losses of chapter 6: the auto-encoder energy (eq. 6.60), the margin losses of
the discriminator and the generator (eq. 6.1, 6.2) and the pulling-away term (PT, eq. 6.61).

The discriminator of an EBGAN outputs an energy per sample, low on the data and high elsewhere.
The losses take those energies, not the networks, so any energy model fits; `autoencoder_energy`
computes the one the thesis uses, the reconstruction error of an auto-encoder. Eq. 6.1 and 6.2 are
written for a general convex increasing `f`; the thesis' experiments use the identity, as these
functions do.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

_REDUCTIONS = ('mean', 'sum')

# Added to the squared norm of each embedding before the square root: the gradient of
# `sqrt(|s|^2 + eps^2)` is finite at s = 0, where that of `|s|` is 0 / 0.
_PT_EPS = 1e-8


def autoencoder_energy(x: jax.Array, reconstruction: jax.Array,
                       reduction: str = 'mean') -> jax.Array:
  """The auto-encoder energy of eq. 6.60, `D(x) = ||Dec(Enc(x)) - x||^2`, one value per sample.

  Eq. 6.60 writes the squared L2 norm, a sum over pixels: `reduction='sum'` is that. The default
  `reduction='mean'` divides it by the number of elements per sample (`H * W * C`), the mean
  squared error of the reconstruction, as the "MSE" box of the thesis' Figure 6.1 labels it. The
  mean keeps the energy's scale, and with it the meaning of a margin `m` (eq. 6.1), the same for
  any image size. The thesis states no normalisation, only that `m` is positive (section 6.2.1)
  and that at equilibrium the energy of the data is `m / 2` (Corollary 6.2), so `m` must lie
  within the range the energy can reach. For images in [-1, 1] and a reconstruction in [-1, 1],
  the mean energy is at most 4 and the summed one at most `4 * H * W * C`.

  Args:
    x: the discriminator's inputs, `[B, ...]`, e.g. images `[B, H, W, C]` or flat `[B, D]`.
    reconstruction: the auto-encoder's output `Dec(Enc(x))`, the shape of `x`.
    reduction: 'mean' (default) or 'sum' over all axes but the first, as above.

  Returns:
    `[B]`, the non-negative energy of each sample; zero where the reconstruction is exact.

  Raises:
    ValueError: if the shapes differ, `x` has no axis besides the batch axis, or `reduction` is
      unknown.
  """
  x, reconstruction = jnp.asarray(x), jnp.asarray(reconstruction)
  if x.shape != reconstruction.shape:
    raise ValueError(f'x and reconstruction must have the same shape, got x {x.shape} and '
                     f'reconstruction {reconstruction.shape}')
  if x.ndim < 2:
    raise ValueError(f'x must be a batch [B, ...] of rank >= 2, got shape {x.shape}')
  if reduction not in _REDUCTIONS:
    raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')
  axes = tuple(range(1, x.ndim))
  squared = jnp.square(reconstruction - x)
  if reduction == 'sum':
    return jnp.sum(squared, axis=axes)
  return jnp.mean(squared, axis=axes)


def _check_margin(margin):
  # A scalar JAX array is a margin schedule's value at the current step (EBGAN-LN); it is used as
  # given, its range being the schedule's business. Everything else must be a Python number.
  if isinstance(margin, jax.Array) and margin.ndim == 0:
    return margin
  if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
    raise ValueError(f'margin must be a Python number >= 0 or a scalar JAX array, got '
                     f'{margin!r} of type {type(margin).__name__}')
  margin = float(margin)
  if not (margin >= 0 and math.isfinite(margin)):
    raise ValueError(f'margin must be a finite number >= 0, got {margin}')
  return margin


def ebgan_discriminator_loss(energy_real: jax.Array, energy_fake: jax.Array,
                             margin: float) -> jax.Array:
  """The discriminator loss of eq. 6.1 with `f` the identity, averaged over the batch.

    mean_i D(x_i) + mean_j [m - D(G(eps_j))]^+,   [.]^+ = max(0, .)

  The first term pulls the energy of the data down; the hinge pushes the energy of generated
  samples up until it reaches the margin `m`, after which they no longer contribute. With `m = 0`
  and non-negative energies the hinge is always zero and only the first term remains.

  Args:
    energy_real: `D(x)` on data samples, `[B]` (as returned by `autoencoder_energy`).
    energy_fake: `D(G(eps))` on generated samples, `[B']`; `B'` may differ from `B`.
    margin: `m`, a Python number >= 0, or a scalar JAX array (a schedule's value inside a
      compiled step, e.g. EBGAN-LN's decaying margin). The thesis requires it positive (section
      6.2.1) and uses `m = 10` in its MNIST grid search (Figure 6.4).

  Returns:
    A scalar.

  Raises:
    ValueError: if `margin` is neither a finite Python number >= 0 nor a scalar JAX array.
  """
  margin = _check_margin(margin)
  energy_real, energy_fake = jnp.asarray(energy_real), jnp.asarray(energy_fake)
  return jnp.mean(energy_real) + jnp.mean(jnp.maximum(margin - energy_fake, 0.0))


def ebgan_generator_loss(energy_fake: jax.Array) -> jax.Array:
  """The generator loss of eq. 6.2 with `f` the identity: `mean_j D(G(eps_j))`.

  Unlike the hinge of eq. 6.1, it keeps a nonzero gradient when `D(G(eps)) >= m` (section 6.2.1).

  Args:
    energy_fake: `D(G(eps))` on generated samples, `[B]`.

  Returns:
    A scalar.
  """
  return jnp.mean(jnp.asarray(energy_fake))


def pulling_away_term(embeddings: jax.Array) -> jax.Array:
  """The pulling-away term (repelling regularizer) of eq. 6.61.

    f_PT(S) = 1 / (N (N - 1)) sum_i sum_{j != i} (S_i^T S_j / (||S_i|| ||S_j||))^2,

  the mean over the `N (N - 1)` ordered pairs of distinct samples of their SQUARED cosine
  similarity, in [0, 1]: 1 when all embeddings point along one line (either way), 0 when they are
  pairwise orthogonal. The square is part of eq. 6.61; some public ports omit it, which makes the
  term signed and rewards anti-parallel embeddings instead of orthogonal ones. The term is
  invariant to rescaling each embedding. Section 6.2.4 adds it to the generator's loss only,
  computed on the encoder's output for a batch of generated samples.

  Each norm is `sqrt(||S_i||^2 + eps^2)` with `eps = 1e-8`, so a zero embedding has cosine
  similarity 0 with every other one and finite gradients, instead of 0 / 0. For embeddings of norm
  well above `eps` the change is below float32 rounding.

  Args:
    embeddings: `[N, ...]`, one representation per sample (the encoder's output), flattened to
      `[N, d]`; `N >= 2`.

  Returns:
    A scalar in [0, 1].

  Raises:
    ValueError: if `embeddings` has rank < 2 or fewer than 2 samples.
  """
  embeddings = jnp.asarray(embeddings)
  if embeddings.ndim < 2:
    raise ValueError(f'embeddings must be [N, ...] of rank >= 2, got shape {embeddings.shape}')
  n = embeddings.shape[0]
  if n < 2:
    raise ValueError(f'embeddings must hold N >= 2 samples (eq. 6.61 averages over pairs), got '
                     f'N = {n} from shape {embeddings.shape}')
  if not jnp.issubdtype(embeddings.dtype, jnp.floating):
    embeddings = embeddings.astype(jnp.float32)
  flat = embeddings.reshape(n, -1)
  norms = jnp.sqrt(jnp.sum(jnp.square(flat), axis=1, keepdims=True) + _PT_EPS ** 2)
  unit = flat / norms
  cosines = unit @ unit.T
  off_diagonal = 1.0 - jnp.eye(n, dtype=cosines.dtype)
  return jnp.sum(jnp.square(cosines) * off_diagonal) / (n * (n - 1))
