"""Evaluation of next-frame predictors as in thesis 4.3.2 (Table 4.4).

Each test clip gives `m` input frames; the predictor produces the 1st next frame and, fed its own
prediction back, the 2nd. Both are scored with PSNR (eq. 4.7), SSIM and the sharpness difference
(eq. 4.8), on the full frame and on the moving areas only: following footnote 2 of 4.3.2, pixels
outside the motion mask are set to 0 in both prediction and truth before the metric. Clips whose
target frame has no moving pixel are left out of the moving-area means. The same code scores the
reference predictor that copies the last input frame.
"""

from __future__ import annotations

from typing import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from uncertainty_jax import metrics as metrics_lib
from uncertainty_jax.training import sharding as sharding_lib

# Images live in [-1, 1]: the peak-to-peak range is 2.
MAX_VAL = 2.0
METRICS = ("psnr", "ssim", "sharpness")


def predict_frames(generator: nn.Module, variables: dict, inputs: jax.Array, *,
                   num_frames: int) -> jax.Array:
  """Predicts `num_frames` frames recursively, each from the last `m` (real or predicted) frames.

  The generator is fully convolutional, so `inputs` may be larger than the training patches (any
  size divisible by `2 ** (num_scales - 1)`).

  Args:
    generator: a `MultiScaleGenerator`.
    variables: its variables.
    inputs: `[B, m, H, W, C]`.
    num_frames: how many frames to predict.

  Returns:
    `[B, num_frames, H, W, C]`, the finest-scale predictions in [-1, 1].
  """
  def step(window, _):
    pred = generator.apply(variables, window, train=False)[-1]
    pred = jnp.clip(pred, -1.0, 1.0)
    return jnp.concatenate([window[:, 1:], pred[:, None]], axis=1), pred

  _, preds = jax.lax.scan(step, inputs, None, length=num_frames)
  return jnp.swapaxes(preds, 0, 1)


def replicate(x: np.ndarray, mesh: Mesh) -> jax.Array:
  """A host array made a global array replicated on every device of `mesh`."""
  return jax.make_array_from_process_local_data(sharding_lib.replicated(mesh), np.asarray(x))


@jax.jit
def frame_scores(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
                 ) -> dict[str, jax.Array]:
  """PSNR, SSIM and sharpness difference per image, full frame and (with a mask) moving areas.

  Args:
    pred, target: `[B, H, W, C]` in [-1, 1].
    mask: `[B, H, W]` bool, the moving pixels, or None.

  Returns:
    `{'full/psnr': [B], ...}` and, with a mask, `{'moving/psnr': [B], ...}`.
  """
  def scores(p, t):
    return {"psnr": metrics_lib.psnr(p, t, MAX_VAL), "ssim": metrics_lib.ssim(p, t, MAX_VAL),
            "sharpness": metrics_lib.sharpness_difference(p, t, MAX_VAL)}

  out = {f"full/{k}": v for k, v in scores(pred, target).items()}
  if mask is not None:
    out.update({f"moving/{k}": v for k, v in scores(*metrics_lib.masked(pred, target, mask)).items()})
  return out


def evaluate(predict: Callable[[jax.Array], jax.Array], batches: Iterable[dict], *,
             num_input_frames: int, mesh: Mesh, num_frames: int = 2) -> dict[str, float]:
  """Scores a predictor and the last-input baseline on a test set.

  Args:
    predict: `inputs [B, m, H, W, C] (global array) -> [B, >= num_frames, H, W, C]`.
    batches: test batches `{'frames': [B, T, H, W, C], 'motion_mask'?: [B, T, H, W]}`.
    num_input_frames: m.
    mesh: where the predictor runs.
    num_frames: how many predicted frames to score (the thesis scores 2).

  Returns:
    Means over the test clips: `'{region}/frame{k}/{metric}'` for the model and
    `'last_input/{region}/frame{k}/{metric}'` for the baseline, regions 'full' and (when the data
    has a motion mask) 'moving'; and `num_clips`.
  """
  m = num_input_frames
  sums: dict[str, float] = {}
  counts: dict[str, int] = {}

  def add(prefix: str, scores: dict, keep: np.ndarray | None):
    for name, values in scores.items():
      values = np.asarray(values, np.float64)
      sel = np.ones(values.shape, bool) if keep is None or not name.startswith("moving") else keep
      key = f"{prefix}{name.split('/')[0]}/frame{k + 1}/{name.split('/')[1]}"
      sums[key] = sums.get(key, 0.0) + float(values[sel].sum())
      counts[key] = counts.get(key, 0) + int(sel.sum())

  num_clips = 0
  for batch in batches:
    frames = np.asarray(batch["frames"])
    num_clips += frames.shape[0]
    preds = np.asarray(predict(replicate(frames[:, :m], mesh)))
    last = frames[:, m - 1]
    for k in range(num_frames):
      target = frames[:, m + k]
      mask = batch.get("motion_mask")
      mask_k = None if mask is None else np.asarray(mask[:, m + k])
      keep = None if mask_k is None else mask_k.reshape(mask_k.shape[0], -1).any(axis=1)
      add("", frame_scores(preds[:, k], target, mask_k), keep)
      add("last_input/", frame_scores(last, target, mask_k), keep)
  result = {key: sums[key] / counts[key] for key in sums if counts[key]}
  result["num_clips"] = float(num_clips)
  return result
