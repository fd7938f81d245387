"""The interface every video dataset implements, and helpers to build global batches."""

from __future__ import annotations

import abc
from typing import Iterator

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


def make_global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.Sharding
                      ) -> dict[str, jax.Array]:
  """Assembles each process' share of a batch into global arrays sharded with `sharding`.

  Args:
    local: this process' rows of the global batch, `[B / process_count, ...]` each.
    sharding: the batch sharding (batch axis over the mesh's data axis).
  """
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}
