"""Mode fidelity: how a predictor's frames relate to the several possible futures (thesis 4.4).

When the next frame is uncertain, as in `multimodal_photos` where the object keeps going, turns
or stops with known probabilities, PSNR against the one future that happened rewards hedging.
These scores compare predictions with every possible future instead. Each prediction is assigned
to its nearest future (root mean squared error per pixel), and then:

* `mode_distance`: how far predictions are from the future they resemble most. A sharp model
  whose frames look like one of the futures scores near 0; a model trained with a pixel (L2)
  loss predicts the probability-weighted average of the futures, a blur that matches none of
  them, and scores high.
* `mode_coverage`: per input, the fraction of the `K` possible futures (those of positive
  probability) that its samples land on. A deterministic predictor gives one sample per input
  (`S = 1`), so at most `1 / K`; a stochastic one that collapses onto one mode whatever its noise
  also gets `1 / K`; one that samples every continuation gets 1 once `S >= K`.
* `mode_divergence`: the Jensen-Shannon divergence (natural log, in [0, ln 2]) between how often
  the predictions land on each future, pooled over all inputs and samples, and the true
  probabilities. A sharp model that always picks the same continuation (the MAP inference of 4.4
  for the most likely one) scores high; a faithful sampler scores near 0. Only meaningful when
  `mode_distance` is small: a blur is still assigned to some future.
* `blur_distance`: how far the average of each input's samples is from its nearest future. With
  `S = 1` it is `mode_distance`; for a sampler of sharp modes it grows with how much its samples
  disagree, while the mean of an L2 model's samples stays the same blur.

Everything here is numpy on the host and takes predictions from any model.
"""

from __future__ import annotations

import numpy as np

MODE_SCORES = ('mode_distance', 'mode_coverage', 'mode_divergence', 'blur_distance')
# Tolerance on the sum of `probs`.
_PROB_TOLERANCE = 1e-6


def _check_futures(futures: np.ndarray) -> np.ndarray:
  futures = np.asarray(futures)
  if futures.ndim != 5 or 0 in futures.shape:
    raise ValueError(f'futures.shape={futures.shape}: expected non-empty [N, K, H, W, C].')
  return futures


def _check_samples(samples: np.ndarray, futures: np.ndarray) -> np.ndarray:
  samples = np.asarray(samples)
  if samples.ndim != 5 or 0 in samples.shape:
    raise ValueError(f'samples.shape={samples.shape}: expected non-empty [N, S, H, W, C].')
  if samples.shape[0] != futures.shape[0] or samples.shape[2:] != futures.shape[2:]:
    raise ValueError(f'samples.shape={samples.shape}: expected [N, S, H, W, C] matching '
                     f'futures.shape={futures.shape} in N, H, W and C.')
  return samples


def _check_probs(probs: np.ndarray, num_modes: int) -> np.ndarray:
  try:
    values = np.asarray(probs, dtype=np.float64)
  except (TypeError, ValueError):
    values = None
  if (values is None or values.shape != (num_modes,) or not np.all(np.isfinite(values))
      or np.any(values < 0) or abs(values.sum() - 1) > _PROB_TOLERANCE):
    raise ValueError(f'probs={probs!r}: expected {num_modes} nonnegative probabilities summing '
                     'to 1, one per future.')
  return values


def _rmse_to_futures(images: np.ndarray, futures: np.ndarray) -> np.ndarray:
  """`[N, S, K]` root mean squared errors of `images [N, S, H, W, C]` to `futures`."""
  images = images.astype(np.float64)
  # One future at a time keeps memory at the size of the samples.
  return np.stack([
      np.sqrt(np.mean(np.square(images - futures[:, None, k].astype(np.float64)),
                      axis=(2, 3, 4)))
      for k in range(futures.shape[1])], axis=-1)


def assign_modes(samples: np.ndarray, futures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The future nearest to each prediction, in root mean squared error per pixel.

  Args:
    samples: `[N, S, H, W, C]`, `S` predictions for each of `N` inputs (`S = 1` for a
      deterministic predictor).
    futures: `[N, K, H, W, C]`, the `K` possible true frames of each input.

  Returns:
    `(index [N, S]` int, the nearest future (the first one on ties), `distance [N, S]` float64,
    the root mean squared error to it`)`.
  """
  futures = _check_futures(futures)
  samples = _check_samples(samples, futures)
  rmse = _rmse_to_futures(samples, futures)
  index = np.argmin(rmse, axis=-1)
  return index, np.take_along_axis(rmse, index[..., None], axis=-1)[..., 0]


def average_future(futures: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """The probability-weighted average of the futures: what a pixel L2 loss is minimised by.

  Args:
    futures: `[N, K, H, W, C]`.
    probs: `[K]`, the probabilities of the futures.

  Returns:
    `[N, H, W, C]` float64.
  """
  futures = _check_futures(futures)
  probs = _check_probs(probs, futures.shape[1])
  return np.einsum('k,nk...->n...', probs, futures.astype(np.float64))


def _entropy_terms(p: np.ndarray, m: np.ndarray) -> float:
  """`sum p log(p / m)`, with `0 log 0 = 0`; `m > 0` wherever `p > 0`."""
  positive = p > 0
  return float(np.sum(p[positive] * np.log(p[positive] / m[positive])))


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
  middle = 0.5 * (p + q)
  return 0.5 * _entropy_terms(p, middle) + 0.5 * _entropy_terms(q, middle)


def mode_scores(samples: np.ndarray, futures: np.ndarray, probs: np.ndarray
                ) -> dict[str, float]:
  """Scores predictions against every possible future; see the module docstring.

  Args:
    samples: `[N, S, H, W, C]`, `S` predictions for each of `N` inputs.
    futures: `[N, K, H, W, C]`, the `K` possible true frames of each input.
    probs: `[K]`, the probabilities of the futures, the same for every input.

  Returns:
    `{'mode_distance'`: the mean over inputs and samples of the RMSE to the nearest future;
    `'mode_coverage'`: the mean over inputs of the number of distinct futures of positive
    probability nearest to one of its samples, divided by the number of futures of positive
    probability; `'mode_divergence'`: the Jensen-Shannon divergence (nats) between the
    frequencies of the assigned futures over all `N S` samples and `probs`; `'blur_distance'`:
    the mean over inputs of the RMSE of the mean of its samples to its nearest future`}`.
  """
  futures = _check_futures(futures)
  samples = _check_samples(samples, futures)
  num_modes = futures.shape[1]
  probs = _check_probs(probs, num_modes)
  index, distance = assign_modes(samples, futures)

  possible = probs > 0
  hit = np.zeros((index.shape[0], num_modes), bool)
  np.put_along_axis(hit, index, True, axis=1)
  coverage = np.mean(np.sum(hit & possible, axis=1) / np.sum(possible))

  frequencies = np.bincount(index.ravel(), minlength=num_modes) / index.size
  mean_sample = samples.astype(np.float64).mean(axis=1, keepdims=True)
  blur = np.min(_rmse_to_futures(mean_sample, futures)[:, 0], axis=-1)
  return {'mode_distance': float(np.mean(distance)),
          'mode_coverage': float(coverage),
          'mode_divergence': _jensen_shannon(frequencies, probs),
          'blur_distance': float(np.mean(blur))}
