"""Parameter initialisers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def torch_uniform(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """Torch7's default weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = prod(shape[:-1]).

  This is how the thesis' Torch models started. The numbers are drawn as a flat vector and
  reshaped: XLA:CPU compiles random draws of small multi-dimensional shapes very slowly (seconds
  each), while flat draws compile in milliseconds.
  """
  fan_in = math.prod(shape[:-1])
  bound = 1.0 / math.sqrt(max(fan_in, 1))
  flat = jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound)
  return flat.reshape(shape)
