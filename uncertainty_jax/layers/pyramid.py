"""Image pyramids: the downscaled inputs x_k and the fixed bilinear upscaling u_k of thesis 4.2.1."""

from __future__ import annotations

import jax.numpy as jnp


def downsample(images: jnp.ndarray, factor: int) -> jnp.ndarray:
  """Area (box-filter) downsampling by an integer factor.

  Args:
    images: `[..., H, W, C]`, with H and W divisible by `factor`.
    factor: a positive integer; 1 returns `images` unchanged.

  Returns:
    `[..., H / factor, W / factor, C]`, each pixel the mean of a `factor x factor` block.
  """
  if factor == 1:
    return images
  *lead, h, w, c = images.shape
  if h % factor or w % factor:
    raise ValueError(f"downsample: image size {h}x{w} is not divisible by factor {factor}")
  blocks = images.reshape(*lead, h // factor, factor, w // factor, factor, c)
  return blocks.mean(axis=(-4, -2))


def _upsample2x_axis(x: jnp.ndarray, axis: int) -> jnp.ndarray:
  """Doubles one axis with half-pixel bilinear weights (0.75, 0.25) and edge clamping."""
  n = x.shape[axis]
  prev = jnp.concatenate([x.take(jnp.array([0]), axis), x.take(jnp.arange(n - 1), axis)], axis)
  nxt = jnp.concatenate([x.take(jnp.arange(1, n), axis), x.take(jnp.array([n - 1]), axis)], axis)
  even = 0.75 * x + 0.25 * prev
  odd = 0.75 * x + 0.25 * nxt
  out = jnp.stack([even, odd], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] = 2 * n
  return out.reshape(shape)


def upsample2x(images: jnp.ndarray) -> jnp.ndarray:
  """Fixed bilinear 2x upsampling (u_k in thesis 4.2.1).

  Equal to `jax.image.resize(images, ..., 'bilinear')` for a factor of 2 (half-pixel centres), written
  as two shifted weighted sums because the generic resize is a dense matmul, far slower on CPU.

  Args:
    images: `[..., H, W, C]`.

  Returns:
    `[..., 2H, 2W, C]`.
  """
  nd = images.ndim
  return _upsample2x_axis(_upsample2x_axis(images, nd - 3), nd - 2)


def image_pyramid(images: jnp.ndarray, num_scales: int) -> list[jnp.ndarray]:
  """The multi-scale versions of `images`, coarsest first.

  Args:
    images: `[..., H, W, C]` with H and W divisible by `2 ** (num_scales - 1)`.
    num_scales: number of scales N; scale k (0-based) has size `H / 2 ** (N - 1 - k)`.

  Returns:
    A list of N arrays, coarsest first, the last one `images` itself.
  """
  return [downsample(images, 2 ** (num_scales - 1 - k)) for k in range(num_scales)]
