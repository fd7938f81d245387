"""Mode coverage of samples from a mixture with known modes (the 2-D ring and grid of `toy2d`).

A generator trained on a mixture of `K` well separated Gaussians of standard deviation `std` can
fail in two ways: its samples fall between the modes (poor quality), or they gather on a few modes
and miss the others (mode collapse). The measures follow the synthetic experiments of Srivastava
et al. (2017, "VEEGAN"), on the 2-D mixtures of Metz et al. (2017, "Unrolled GANs"):

* a sample is *high quality* when it lies within `radius_stds * std` (3 standard deviations for
  the 2-D mixtures) of its nearest mode;
* a mode is *covered* (VEEGAN's "captured") when at least `min_count` high-quality samples have it
  as their nearest mode. VEEGAN's rule is `min_count = 1`, the default here, so the numbers
  compare with theirs (2500 samples per model); pass a larger `min_count` (e.g. 1% of the
  samples) to ignore a mode that a few stray samples happen to hit;
* the balance of the covered modes is the KL divergence between the distribution of the
  high-quality samples over the modes and the uniform distribution, the measure Metz et al.
  (2017) report over the 1000 modes of stacked MNIST.

Each sample is assigned to one mode only, its nearest, so a sample is never counted twice even
when `radius_stds * std` exceeds half the distance between two modes.

Everything here is numpy on the host.
"""

from __future__ import annotations

import math

import numpy as np

# VEEGAN's rule: one high-quality sample is enough to cover a mode.
DEFAULT_MIN_COUNT = 1


def _check_points(name: str, points, *, allow_nonfinite: bool) -> np.ndarray:
  """`points` as float64 `[N, D]`, N >= 1, D >= 1."""
  try:
    array = np.asarray(points, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError(f'{name}: {type(points).__name__} that is not numeric; expected a float '
                     'array [N, D]') from None
  if array.ndim != 2 or 0 in array.shape:
    raise ValueError(f'{name}.shape={array.shape}: expected a non-empty float array [N, D]')
  if not allow_nonfinite and not np.all(np.isfinite(array)):
    raise ValueError(f'{name}: contains NaN or infinite values; expected finite coordinates')
  return array


def _check_positive_number(name: str, value) -> float:
  if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
      or not math.isfinite(value) or value <= 0):
    raise ValueError(f'{name}={value!r}: expected a finite number > 0')
  return float(value)


def nearest_mode(points, modes) -> tuple[np.ndarray, np.ndarray]:
  """The nearest mode of each point, and the Euclidean distance to it.

  Ties go to the mode of lowest index. A point with a NaN or infinite coordinate (a diverged
  generator's output) has no nearest mode: its index is -1 and its distance `inf`, so it is
  never high quality.

  Args:
    points: `[N, D]` (D = 2 for the toy mixtures); may contain non-finite values.
    modes: `[K, D]`, finite.

  Returns:
    `(index, distance)`: int64 `[N]` in `[0, K)` (or -1, see above) and float64 `[N]`.

  Raises:
    ValueError: `points` or `modes` not non-empty 2-D arrays of the same `D`, or non-finite modes.
  """
  points = _check_points('points', points, allow_nonfinite=True)
  modes = _check_points('modes', modes, allow_nonfinite=False)
  if points.shape[1] != modes.shape[1]:
    raise ValueError(f'points.shape={points.shape}: expected [N, {modes.shape[1]}], the '
                     f'dimension of modes.shape={modes.shape}')
  finite = np.all(np.isfinite(points), axis=1)
  safe = np.where(finite[:, None], points, 0.0)
  # Differences rather than the |x|^2 - 2 x.m + |m|^2 expansion: exact zeros for points at a mode.
  squared = np.sum((safe[:, None, :] - modes[None, :, :]) ** 2, axis=-1)
  index = np.argmin(squared, axis=1).astype(np.int64)
  distance = np.sqrt(squared[np.arange(points.shape[0]), index])
  index[~finite] = -1
  distance[~finite] = np.inf
  return index, distance


def mode_coverage(points, modes, std, *, radius_stds: float = 3.0,
                  min_count: int | None = None) -> dict:
  """How many modes of a mixture the samples cover, and how well (see the module docstring).

  Args:
    points: `[N, D]` samples, N >= 1; non-finite samples count as low quality.
    modes: `[K, D]` the mixture's means, finite.
    std: the standard deviation of each mixture component, > 0 (`Toy2D.mode_std`).
    radius_stds: a sample is high quality within `radius_stds * std` of its nearest mode, > 0.
    min_count: high-quality samples a mode needs to count as covered, an int >= 1; None means
      `DEFAULT_MIN_COUNT` (1, VEEGAN's rule).

  Returns:
    A dict:
      `modes_covered`: int, modes with at least `min_count` high-quality samples.
      `high_quality_fraction`: float in [0, 1], the fraction of the N samples that are high
        quality.
      `num_modes`: int, K.
      `counts`: int64 `[K]`, high-quality samples per mode (by nearest mode).
      `kl_to_uniform`: float, `KL(p || u) = sum_k p_k log(K p_k)` in nats, with `p = counts /
        counts.sum()` and `u` uniform over the K modes; an empty mode contributes 0
        (`0 log 0 = 0`), so the value is finite, 0 for perfectly balanced counts and `log K` when
        every high-quality sample is on one mode. NaN when there is no high-quality sample (p is
        undefined).
      `radius`: float, `radius_stds * std`.
      `min_count`: int, the threshold used.

  Raises:
    ValueError: bad shapes (see `nearest_mode`), or a non-positive `std` / `radius_stds` /
      `min_count`.
  """
  std = _check_positive_number('std', std)
  radius_stds = _check_positive_number('radius_stds', radius_stds)
  if min_count is None:
    min_count = DEFAULT_MIN_COUNT
  if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
    raise ValueError(f'min_count={min_count!r}: expected an int >= 1 or None '
                     f'(None means {DEFAULT_MIN_COUNT})')
  index, distance = nearest_mode(points, modes)
  num_modes = np.asarray(modes).shape[0]
  radius = radius_stds * std
  high_quality = distance <= radius
  counts = np.bincount(index[high_quality], minlength=num_modes).astype(np.int64)
  total = int(counts.sum())
  if total:
    p = counts / total
    nonzero = p > 0
    kl = float(np.sum(p[nonzero] * np.log(num_modes * p[nonzero])))
  else:
    kl = float('nan')
  return {
      'modes_covered': int(np.sum(counts >= min_count)),
      'high_quality_fraction': float(np.mean(high_quality)),
      'num_modes': int(num_modes),
      'counts': counts,
      'kl_to_uniform': kl,
      'radius': float(radius),
      'min_count': int(min_count),
  }
