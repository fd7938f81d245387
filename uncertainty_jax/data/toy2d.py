"""`toy2d`: 2-D mixtures of Gaussians, the usual probe of a GAN's mode coverage.

Two mixtures, chosen by the config's `toy_modes`, each with equal weights and isotropic modes:

* 'ring': 8 modes on the circle of radius 2, mode `k` at angle `2 pi k / 8` (`(2, 0)` first),
  standard deviation 0.02;
* 'grid': 25 modes on the 5x5 grid `{-4, -2, 0, 2, 4}^2`, mode `5 i + j` at `(c_i, c_j)` with
  `c = (-4, -2, 0, 2, 4)`, standard deviation 0.05.

A point picks a mode uniformly and adds `N(0, std^2 I)` noise. Points are raw coordinates
(float32, not scaled to [-1, 1]).

Determinism: point `g` of a stream is drawn from `fold_in(fold_in(key, g // 2^32), g mod 2^32)`,
so it depends only on the stream's key and `g`. `train_batch(step)` holds points
`step * B .. step * B + B - 1` of the train stream (key: the first half of
`split(key(seed))`); `arrays(split)` holds points `0 .. num_eval_images - 1` of the split's
stream (the test stream's key is the second half), so `arrays('train')` is what the first
training steps see. Batches are drawn on the accelerator, each device computing its own rows.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data import images

DEFAULT_NUM_EVAL_POINTS = 4096


def _ring() -> np.ndarray:
  angles = 2 * np.pi * np.arange(8) / 8
  return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def _grid() -> np.ndarray:
  coords = np.arange(-4.0, 5.0, 2.0)
  return np.stack(np.meshgrid(coords, coords, indexing='ij'), axis=-1).reshape(-1, 2)


# toy_modes -> (modes [K, 2], standard deviation of every mode).
TOY_MODES = {'ring': (_ring(), 0.02), 'grid': (_grid(), 0.05)}


@jax.jit
def _sample_rows(key: jax.Array, high: jax.Array, low: jax.Array, modes: jax.Array,
                 std: float) -> tuple[jax.Array, jax.Array]:
  """Points `g = high * 2^32 + low` (`[N]` uint32 each) of the stream of `key`."""

  def one(h, l):
    mode_key, noise_key = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, h), l))
    mode = jax.random.randint(mode_key, (), 0, modes.shape[0])
    return modes[mode] + std * jax.random.normal(noise_key, (2,)), mode

  points, mode_index = jax.vmap(one)(high, low)
  return points.astype(jnp.float32), mode_index.astype(jnp.int32)


def sample_mixture(key: jax.Array, modes: Any, std: float, n: int
                   ) -> tuple[jax.Array, jax.Array]:
  """Draws `n` points of an equal-weight mixture of isotropic Gaussians; pure and jit-able.

  Row `i` depends only on `key` and `i`, so a larger `n` extends a smaller one.

  Args:
    key: a JAX random key.
    modes: `[K, 2]` the modes' centres.
    std: the standard deviation of every mode, along each axis.
    n: number of points (static under jit).

  Returns:
    `(points [n, 2] float32, mode_index [n] int32)`: each point's mode is uniform in `0..K-1`.
  """
  modes = jnp.asarray(modes, jnp.float32)
  if modes.ndim != 2 or modes.shape[1] != 2 or modes.shape[0] < 1:
    raise ValueError(f'modes.shape={modes.shape}: expected [K, 2] with K >= 1.')
  low = jnp.arange(n, dtype=jnp.uint32)
  return _sample_rows(key, jnp.zeros_like(low), low, modes, std)


def _stream_slice(key: jax.Array, start_high: jax.Array, start_low: jax.Array, *,
                  modes: jax.Array, std: float, size: int) -> jax.Array:
  """Points `start .. start + size - 1` of the stream of `key`, `[size, 2]`."""
  low = start_low + jnp.arange(size, dtype=jnp.uint32)  # wraps modulo 2^32
  high = start_high + (low < start_low).astype(jnp.uint32)  # the carry of that wrap
  return _sample_rows(key, high, low, modes, std)[0]


class Toy2D(images.ImageDataset):
  """A 2-D mixture of Gaussians (see the module doc).

  Args:
    seed: seeds the train and test streams.
    batch_size: global training batch size.
    sharding: the sharding of training batches.
    toy_modes: 'ring' or 'grid'.
    num_eval_images: points in each of `arrays('train')` and `arrays('test')`.

  Attributes:
    modes: `[K, 2]` float64, the modes' centres.
    mode_std: the standard deviation of every mode.
  """

  name = 'toy2d'
  sample_shape = (2,)
  num_classes = None

  def __init__(self, *, seed: int, batch_size: int, sharding: jax.sharding.Sharding,
               toy_modes: str = 'ring', num_eval_images: int = DEFAULT_NUM_EVAL_POINTS):
    self.seed = images.check_seed(seed)
    if toy_modes not in TOY_MODES:
      raise ValueError(f'toy_modes={toy_modes!r}: expected one of {sorted(TOY_MODES)}.')
    self.num_eval_images = images.check_positive('num_eval_images', num_eval_images)
    images.check_batch_sharding(batch_size, sharding, self.sample_shape)
    self.toy_modes = toy_modes
    self.batch_size = int(batch_size)
    self.sharding = sharding
    modes, self.mode_std = TOY_MODES[toy_modes]
    self.modes = modes.copy()
    self.modes.setflags(write=False)
    self.train_key, self.test_key = jax.random.split(jax.random.key(self.seed))
    self._train_fn = jax.jit(
        functools.partial(_stream_slice, self.train_key, modes=jnp.asarray(modes, jnp.float32),
                          std=self.mode_std, size=self.batch_size),
        out_shardings=sharding)
    self._eval: dict[str, dict[str, np.ndarray]] = {}

  @classmethod
  def from_config(cls, config: Any, sharding: jax.sharding.Sharding) -> Toy2D:
    """Reads `seed`, `batch_size` and, if present, `toy_modes` and `num_eval_images`."""
    return cls(seed=config.seed, batch_size=config.batch_size, sharding=sharding,
               toy_modes=config.get('toy_modes', 'ring'),
               num_eval_images=config.get('num_eval_images', DEFAULT_NUM_EVAL_POINTS))

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """`{'images': [B, 2]}` float32 points `step * B + i` of the train stream, sharded."""
    base.check_step(step)
    start = int(step) * self.batch_size
    high, low = divmod(start, 2**32)
    return {'images': self._train_fn(np.uint32(high), np.uint32(low))}

  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """`{'images': [N, 2] float32, 'labels': [N] int32}`, the labels being each point's mode."""
    if images.check_split(split) not in self._eval:
      key = self.train_key if split == 'train' else self.test_key
      points, mode_index = jax.device_get(
          sample_mixture(key, self.modes, self.mode_std, self.num_eval_images))
      self._eval[split] = {'images': np.array(points), 'labels': np.array(mode_index)}
      for array in self._eval[split].values():
        array.setflags(write=False)
    return self._eval[split]


__all__ = ['DEFAULT_NUM_EVAL_POINTS', 'TOY_MODES', 'Toy2D', 'sample_mixture']
