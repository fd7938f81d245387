"""Evaluation of next-frame predictors as in thesis 4.3.2 (Table 4.4).

Each test clip gives `m` input frames; the predictor produces the 1st next frame and, fed its own
prediction back, the 2nd. Both are scored with PSNR (eq. 4.7), SSIM and the sharpness difference
(eq. 4.8), on the full frame and on the moving areas only: following footnote 2 of 4.3.2, pixels
outside the motion mask are set to 0 in both prediction and truth before the metric. The mask is
where an optical flow (OpenCV's Farneback, in place of the thesis' EpicFlow) between successive
true frames exceeds a threshold; on the embedded data the renderer's exact mask is scored too.
Clips whose target frame has no moving pixel are left out of the moving-area means. The same code
scores the two reference predictors of Table 4.4: copying the last input frame, and moving it
along the optical flow between the last two inputs.
"""

from __future__ import annotations

from typing import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from uncertainty_jax import metrics as metrics_lib
from uncertainty_jax.evaluation import flow as flow_lib
from uncertainty_jax.evaluation import modes as modes_lib
from uncertainty_jax.training import sharding as sharding_lib

# Images live in [-1, 1]: the peak-to-peak range is 2.
MAX_VAL = 2.0
METRICS = ("psnr", "ssim", "sharpness")


def predict_frames(generator: nn.Module, variables: dict, inputs: jax.Array, *,
                   num_frames: int, rng: jax.Array | None = None) -> jax.Array:
  """Predicts `num_frames` frames recursively, each from the last `m` (real or predicted) frames.

  The generator is fully convolutional, so `inputs` may be larger than the training patches (any
  size divisible by `2 ** (num_scales - 1)`).

  Args:
    generator: a `MultiScaleGenerator`.
    variables: its variables.
    inputs: `[B, m, H, W, C]`.
    num_frames: how many frames to predict.
    rng: with a generator that has noise (Model 2), a key to draw one sample of the future with
      the noise on; None predicts without noise.

  Returns:
    `[B, num_frames, H, W, C]`, the finest-scale predictions in [-1, 1].
  """
  def step(window, key):
    if rng is None:
      pred = generator.apply(variables, window, train=False)[-1]
    else:
      pred = generator.apply(variables, window, train=False, sample=True,
                             rngs={"noise": key})[-1]
    pred = jnp.clip(pred, -1.0, 1.0)
    return jnp.concatenate([window[:, 1:], pred[:, None]], axis=1), pred

  keys = None if rng is None else jax.random.split(rng, num_frames)
  _, preds = jax.lax.scan(step, inputs, keys, length=num_frames)
  return jnp.swapaxes(preds, 0, 1)


def replicate(x: np.ndarray, mesh: Mesh) -> jax.Array:
  """A host array made a global array replicated on every device of `mesh`."""
  return jax.make_array_from_process_local_data(sharding_lib.replicated(mesh), np.asarray(x))


@jax.jit
def frame_scores(pred: jax.Array, target: jax.Array, masks: dict[str, jax.Array] | None = None
                 ) -> dict[str, jax.Array]:
  """PSNR, SSIM and sharpness difference per image, on the full frame and under each mask.

  Args:
    pred, target: `[B, H, W, C]` in [-1, 1].
    masks: `{region: [B, H, W] bool}`, e.g. the moving pixels; pixels outside a mask are set to 0
      in both images before the metric (footnote 2 of 4.3.2).

  Returns:
    `{'full/psnr': [B], ...}` and `{f'{region}/psnr': [B], ...}` for each mask.
  """
  def scores(p, t):
    return {"psnr": metrics_lib.psnr(p, t, MAX_VAL), "ssim": metrics_lib.ssim(p, t, MAX_VAL),
            "sharpness": metrics_lib.sharpness_difference(p, t, MAX_VAL)}

  out = {f"full/{k}": v for k, v in scores(pred, target).items()}
  for region, mask in (masks or {}).items():
    out.update({f"{region}/{k}": v
                for k, v in scores(*metrics_lib.masked(pred, target, mask)).items()})
  return out


def reference_predictions(inputs: np.ndarray, num_frames: int) -> dict[str, np.ndarray]:
  """The reference predictors of Table 4.4, `{name: [B, num_frames, H, W, C]}`.

  'last_input' copies the last input frame; 'flow' moves it along the optical flow between the
  last two inputs, frame after frame (`flow.extrapolate`); it needs m >= 2 inputs.
  """
  refs = {"last_input": np.repeat(inputs[:, -1:], num_frames, axis=1)}
  if inputs.shape[1] >= 2:
    refs["flow"] = flow_lib.extrapolate(inputs, num_frames)
  return refs


def frame_masks(frames: np.ndarray, batch: dict, *, num_input_frames: int, num_frames: int,
               flow_threshold: float) -> list[dict[str, np.ndarray]]:
  """The masks of each predicted frame: `[{region: [B, H, W] bool}]`, one dict per frame.

  'moving' is the thesis' mask: the Farneback flow of the true frame since the true frame before
  it, longer than `flow_threshold` pixels. 'moving_exact' is the dataset's exact motion mask, where
  it has one (the embedded renderers), to check the flow mask against.
  """
  m = num_input_frames
  out = []
  for k in range(num_frames):
    masks = {"moving": flow_lib.motion_mask(frames[:, m + k - 1], frames[:, m + k],
                                            flow_threshold)}
    if batch.get("motion_mask") is not None:
      masks["moving_exact"] = np.asarray(batch["motion_mask"][:, m + k])
    out.append(masks)
  return out


def evaluate(predict: Callable[[jax.Array], jax.Array], batches: Iterable[dict], *,
             num_input_frames: int, mesh: Mesh, num_frames: int = 2,
             flow_threshold: float = 0.5, mode_probs: np.ndarray | None = None,
             sample: Callable[[jax.Array, int], jax.Array] | None = None,
             num_samples: int = 1) -> dict[str, float]:
  """Scores a predictor and the reference predictors on a test set, as Table 4.4.

  Args:
    predict: `inputs [B, m, H, W, C] (global array) -> [B, >= num_frames, H, W, C]`.
    batches: test batches `{'frames': [B, T, H, W, C], 'motion_mask'?: [B, T, H, W]}`.
    num_input_frames: m.
    mesh: where the predictor runs.
    num_frames: how many predicted frames to score (the thesis scores 2).
    flow_threshold: the flow magnitude, pixels per frame, above which a pixel counts as moving.
    mode_probs: `[K]`, for data whose test batches carry every possible next frame
      (`'futures' [B, K, H, W, C]`, the multimodal data): the probability of each; adds the
      mode-fidelity scores of `evaluation.modes` under `'modes/...'` (`'{reference}/modes/...'`).
    sample: `(inputs, i) -> [B, >= 1, H, W, C]`, the i-th random draw of a stochastic predictor
      (Model 2's noise); None scores the deterministic prediction as the only sample.
    num_samples: draws per input when `sample` is given.

  Returns:
    Means over the test clips of `'{region}/frame{k}/{metric}'` for the model and
    `'{reference}/{region}/frame{k}/{metric}'` for the references 'last_input' and 'flow'; regions
    'full', 'moving' (flow mask) and, when the data has an exact motion mask, 'moving_exact', with
    `'mask/frame{k}/iou'`, the flow mask's intersection over union with the exact one. Also
    `'mask/frame{k}/moving_fraction'` (of the flow mask) and `num_clips`. A clip whose mask is empty
    is left out of that region's means.
  """
  m = num_input_frames
  sums: dict[str, float] = {}
  counts: dict[str, int] = {}

  def add(key: str, values, keep: np.ndarray | None = None):
    values = np.asarray(values, np.float64)
    keep = np.ones(values.shape, bool) if keep is None else keep
    sums[key] = sums.get(key, 0.0) + float(values[keep].sum())
    counts[key] = counts.get(key, 0) + int(keep.sum())

  num_clips = 0
  drawn: dict[str, list[np.ndarray]] = {}
  futures: list[np.ndarray] = []
  for batch in batches:
    frames = np.asarray(batch["frames"])
    num_clips += frames.shape[0]
    inputs = frames[:, :m]
    global_inputs = replicate(inputs, mesh)
    predictions = {"": np.asarray(predict(global_inputs))}
    predictions.update({f"{name}/": preds for name, preds
                        in reference_predictions(inputs, num_frames).items()})
    if mode_probs is not None and "futures" in batch:
      futures.append(np.asarray(batch["futures"]))
      for prefix, preds in predictions.items():
        if prefix == "" and sample is not None:
          draws = np.stack([np.asarray(sample(global_inputs, i))[:, 0]
                            for i in range(num_samples)], axis=1)
        else:
          draws = preds[:, :1]
        drawn.setdefault(prefix, []).append(draws)
    masks = frame_masks(frames, batch, num_input_frames=m, num_frames=num_frames,
                       flow_threshold=flow_threshold)
    for k in range(num_frames):
      target = frames[:, m + k]
      keep = {region: mask.reshape(mask.shape[0], -1).any(axis=1)
              for region, mask in masks[k].items()}
      for prefix, preds in predictions.items():
        for name, values in frame_scores(preds[:, k], target, masks[k]).items():
          region, metric = name.split("/")
          add(f"{prefix}{region}/frame{k + 1}/{metric}", values, keep.get(region))
      flow_mask = masks[k]["moving"]
      add(f"mask/frame{k + 1}/moving_fraction", flow_mask.mean(axis=(1, 2)))
      if "moving_exact" in masks[k]:
        exact = masks[k]["moving_exact"]
        union = (flow_mask | exact).sum(axis=(1, 2))
        add(f"mask/frame{k + 1}/iou", (flow_mask & exact).sum(axis=(1, 2)) / np.maximum(union, 1),
            union > 0)
  result = {key: sums[key] / counts[key] for key in sums if counts[key]}
  if futures:
    all_futures = np.concatenate(futures)
    for prefix, draws in drawn.items():
      scores = modes_lib.mode_scores(np.concatenate(draws), all_futures, np.asarray(mode_probs))
      result.update({f"{prefix}modes/{name}": float(v) for name, v in scores.items()})
  result["num_clips"] = float(num_clips)
  return result
