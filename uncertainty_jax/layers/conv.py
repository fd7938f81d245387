"""Convolutions that compute the same function faster on XLA:CPU."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from uncertainty_jax.layers.init import torch_uniform


class ValidConv(nn.Module):
  """An unpadded ('VALID') stride-1 convolution, computed as a padded one then centre-cropped.

  For an odd kernel and stride 1, the VALID output equals the centre crop of the SAME output with
  the same kernel, and XLA:CPU computes SAME convolutions 2-2.5x faster (forward and backward).
  Parameters have the shapes and names of `nn.Conv`, so the module is a drop-in replacement.

  Attributes:
    features: output channels.
    kernel_size: odd square kernel size.
  """

  features: int
  kernel_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, H - k + 1, W - k + 1, features]`."""
    k = self.kernel_size
    if k % 2 != 1:
      raise ValueError(f"ValidConv: kernel_size must be odd, got {k}")
    if x.shape[-3] < k or x.shape[-2] < k:
      raise ValueError(f"ValidConv: input {x.shape[-3]}x{x.shape[-2]} is smaller than kernel {k}")
    y = nn.Conv(self.features, (k, k), padding="SAME", dtype=self.dtype, kernel_init=torch_uniform,
                name="conv")(x)
    r = (k - 1) // 2
    if r == 0:
      return y
    return y[..., r:-r, r:-r, :]
