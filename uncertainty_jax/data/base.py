"""The interface every video dataset implements, and helpers to build global batches."""

from __future__ import annotations

import abc
import numbers
from typing import Any, Iterator

import jax
import numpy as np


class VideoDataset(abc.ABC):
  """Training clips addressed by step, and a fixed test set.

  Frames are float32 in [-1, 1], laid out `[B, T, H, W, C]`. A training batch for step `s` is a
  pure function of the dataset's seed and `s` (or, for streamed datasets, of the position `s` in a
  deterministic stream), so a resumed run sees exactly the batches an uninterrupted run would.
  """

  @abc.abstractmethod
  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global training batch of `step`.

    Returns:
      `{'frames': [B, T, h, w, C]}`, a global `jax.Array` sharded over the batch axis with the
      sharding the dataset was built with; `B` is the global batch size, `T` is
      `num_input_frames + 1`, `h = w = image_size`.
    """

  @abc.abstractmethod
  def test_batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields the fixed test set on the host, in order, as numpy batches.

    Each batch is `{'frames': [b, T_test, H, W, C]}` with `b <= batch_size`, plus
    `'motion_mask': [b, T_test, H, W]` (bool, the pixels that moved between frame t-1 and t) where
    the dataset knows it exactly.
    """


class ClipLengths:
  """`clip_length` and `test_clip_length` for a dataset that stores its `_num_input_frames` and
  `_test_future_frames`."""

  _num_input_frames: int
  _test_future_frames: int

  @property
  def clip_length(self) -> int:
    """`T` of a training clip: the input frames and the one to predict."""
    return self._num_input_frames + 1

  @property
  def test_clip_length(self) -> int:
    """`T_test` of a test clip: the input frames and the future ones to compare."""
    return self._num_input_frames + self._test_future_frames


def make_global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.Sharding
                      ) -> dict[str, jax.Array]:
  """Assembles each process' share of a batch into global arrays sharded with `sharding`.

  Args:
    local: this process' rows of the global batch, `[B / process_count, ...]` each.
    sharding: the batch sharding (batch axis over the mesh's data axis).
  """
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def check_clip_args(*, seed, batch_size: int, num_input_frames: int, image_size: int,
                    test_frame_size: int, num_test_clips: int, test_future_frames: int,
                    sharding, motion_threshold) -> None:
  """Validates the arguments every embedded video dataset takes; raises a one-line ValueError."""
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
    raise ValueError(f'seed={seed!r}: expected an integer.')
  for name, value in dict(batch_size=batch_size, num_input_frames=num_input_frames,
                          image_size=image_size, test_frame_size=test_frame_size,
                          num_test_clips=num_test_clips,
                          test_future_frames=test_future_frames).items():
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
      raise ValueError(f'{name}={value!r}: expected a positive integer.')
  if test_frame_size < image_size:
    raise ValueError(f'test_frame_size={test_frame_size}: expected at least image_size '
                     f'({image_size}).')
  if (isinstance(motion_threshold, bool) or not isinstance(motion_threshold, numbers.Real)
      or not motion_threshold >= 0):
    raise ValueError(f'motion_threshold={motion_threshold!r}: expected a number >= 0.')
  if not isinstance(sharding, jax.sharding.Sharding):
    raise ValueError(f'sharding={sharding!r}: expected a jax.sharding.Sharding.')
  shape = (batch_size, num_input_frames + 1, image_size, image_size, 3)
  try:
    sharding.shard_shape(shape)
  except ValueError as error:
    raise ValueError(f'batch_size={batch_size}: the sharding cannot split it ({error}).'
                     ) from None


def check_step(step) -> None:
  """Raises unless `step` is an integer in [0, 2**32) (the embedded datasets fold it into a key)."""
  if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 0 <= step < 2**32:
    raise ValueError(f'step={step!r}: expected an integer in [0, 2**32).')


TFDS_INSTALL_HINT = "pip install 'uncertainty_jax[tfds]'"


def import_tfds(what: str) -> tuple[Any, Any]:
  """Imports TensorFlow and TFDS for `what` (e.g. 'the TFDS video datasets'), hides the GPUs from
  TensorFlow, or says how to install them."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError(f'{what} need TensorFlow and TensorFlow Datasets ({err}); install them with '
                      f'`{TFDS_INSTALL_HINT}`') from err
  try:
    # JAX owns the accelerators; a TensorFlow that saw them would reserve their memory.
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # Devices were already initialized by someone else; their choice stands.
  return tf, tfds
