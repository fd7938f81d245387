"""Dense optical flow for evaluation: motion masks and the constant-flow reference predictor.

The thesis masks its moving-area metrics with EpicFlow (4.3.2, footnote 2) and compares against a
predictor that propagates the optical flow of the previous frames (Table 4.4b, "Optical flow").
EpicFlow is not packaged; OpenCV's Farneback flow is, and runs on the host in a millisecond per
64x64 frame pair, so both are built on it here.

Flows are `[..., H, W, 2]` float32 arrays of `(dy, dx)` in pixels with the convention of the
embedded data (`moving_photos`): `flow[t](p)` is the displacement of the surface seen at `p` in
frame `t` since frame `t - 1`, so frame `t` at `p` shows what frame `t - 1` showed at
`p - flow[t](p)`.
"""

from __future__ import annotations

import cv2
import numpy as np

# Farneback's parameters: a 3-level pyramid and 9-pixel windows suit the 32-256 pixel frames of
# chapter 4 (OpenCV's sample uses 15-pixel windows on 640x480 video).
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1,
                 flags=0)


def _gray_uint8(image: np.ndarray) -> np.ndarray:
  """`[H, W, C]` (C = 1 or 3) in [-1, 1] -> `[H, W]` uint8 luminance (ITU-R BT.601 weights)."""
  image = np.asarray(image, np.float32)
  if image.shape[-1] == 3:
    image = image @ np.asarray([0.299, 0.587, 0.114], np.float32)
  else:
    image = image[..., 0]
  return np.clip(np.rint((image + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _check_pair(previous: np.ndarray, current: np.ndarray) -> None:
  if np.shape(previous) != np.shape(current):
    raise ValueError(f"frames: shapes {np.shape(previous)} and {np.shape(current)} differ")
  if np.ndim(previous) < 3 or np.shape(previous)[-1] not in (1, 3):
    raise ValueError(f"frames: shape {np.shape(previous)}; expected [..., H, W, C] with C = 1 or 3")


def farneback_flow(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
  """The flow of `current` since `previous` (OpenCV's Farneback), at `current`'s pixels.

  Args:
    previous, current: frames `[..., H, W, C]` (C = 1 or 3) in [-1, 1]; leading axes are a batch.

  Returns:
    `[..., H, W, 2]` float32 `(dy, dx)`: `current` at `p` shows `previous` at `p - flow(p)`.
  """
  _check_pair(previous, current)
  previous = np.asarray(previous, np.float32)
  current = np.asarray(current, np.float32)
  batch_shape = previous.shape[:-3]
  prev_flat = previous.reshape((-1,) + previous.shape[-3:])
  curr_flat = current.reshape((-1,) + current.shape[-3:])
  flows = []
  for prev_img, curr_img in zip(prev_flat, curr_flat):
    # OpenCV's flow from `current` to `previous`: current(p) ~ previous(p + back(p)), as (dx, dy).
    back = cv2.calcOpticalFlowFarneback(_gray_uint8(curr_img), _gray_uint8(prev_img), None,
                                        **FARNEBACK)
    flows.append(-back[..., ::-1])
  height, width = prev_flat.shape[1:3]
  return np.stack(flows).reshape(batch_shape + (height, width, 2)).astype(np.float32)


def flow_magnitude_mask(flow: np.ndarray, threshold: float) -> np.ndarray:
  """`[..., H, W]` bool: pixels whose flow is longer than `threshold` pixels."""
  if not threshold >= 0:
    raise ValueError(f"threshold: {threshold!r} must be a number >= 0 (pixels per frame)")
  return np.linalg.norm(np.asarray(flow, np.float32), axis=-1) > threshold


def motion_mask(previous: np.ndarray, current: np.ndarray, threshold: float) -> np.ndarray:
  """The moving areas of `current`, as the thesis masks Table 4.4b: flow magnitude > threshold.

  Args:
    previous, current: frames `[..., H, W, C]` in [-1, 1].
    threshold: pixels per frame.

  Returns:
    `[..., H, W]` bool.
  """
  return flow_magnitude_mask(farneback_flow(previous, current), threshold)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
  """Moves `image` along `flow`: `out(p) = image(p - flow(p))`, bilinear, edges replicated.

  Args:
    image: `[H, W, C]`.
    flow: `[H, W, 2]` `(dy, dx)`, sampled at the output's pixels.

  Returns:
    `[H, W, C]` float32.
  """
  image = np.asarray(image, np.float32)
  flow = np.asarray(flow, np.float32)
  if image.ndim != 3 or flow.shape != image.shape[:2] + (2,):
    raise ValueError(f"warp: image {image.shape} and flow {flow.shape}; expected [H, W, C] and "
                     f"[H, W, 2]")
  height, width = image.shape[:2]
  grid_y, grid_x = np.meshgrid(np.arange(height, dtype=np.float32),
                               np.arange(width, dtype=np.float32), indexing="ij")
  out = cv2.remap(image, grid_x - flow[..., 1], grid_y - flow[..., 0],
                  interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  return out.reshape(image.shape)


def extrapolate(inputs: np.ndarray, num_frames: int, flows: np.ndarray | None = None
                ) -> np.ndarray:
  """The constant-flow reference predictor of Table 4.4b.

  The flow between the last two inputs is assumed to go on: each predicted frame is the previous
  one moved along it (`out_1 = warp(x_m, f)`, `out_2 = warp(out_1, f)`, ...). Warping samples the
  flow at the output's pixels, which is exact for a uniform motion and a close approximation where
  the flow is smooth.

  Args:
    inputs: `[B, m, H, W, C]` in [-1, 1], m >= 2.
    num_frames: how many frames to predict.
    flows: `[B, H, W, 2]`, the flow of the last input since the one before; computed with
      `farneback_flow` when None (given, e.g. exact, to test the predictor apart from the flow).

  Returns:
    `[B, num_frames, H, W, C]` float32 in [-1, 1].
  """
  inputs = np.asarray(inputs, np.float32)
  if inputs.ndim != 5 or inputs.shape[1] < 2:
    raise ValueError(f"inputs: shape {inputs.shape}; expected [B, m, H, W, C] with m >= 2 (the "
                     f"flow needs two frames)")
  if num_frames < 1:
    raise ValueError(f"num_frames: {num_frames} must be at least 1")
  if flows is None:
    flows = farneback_flow(inputs[:, -2], inputs[:, -1])
  preds = []
  for clip, flow in zip(inputs, flows):
    frame, frames = clip[-1], []
    for _ in range(num_frames):
      frame = warp(frame, flow)
      frames.append(frame)
    preds.append(np.stack(frames))
  return np.clip(np.stack(preds), -1.0, 1.0)
