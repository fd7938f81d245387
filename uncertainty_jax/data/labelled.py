"""Semi-supervised batches for chapter 6's Ladder Network experiment (thesis 6.3.2, Table 6.2).

The protocol of Rasmus et al. (2015): a few labelled examples (100, 200 or 1000 on MNIST), the same
number of each class, drawn from the training split; every training step takes a batch of
labelled examples and a batch of unlabelled ones. The unlabelled pool is the whole training split,
the labelled examples included (Rasmus et al. use all of MNIST's training images, unlabelled,
alongside the labelled ones). Keeping the test split apart is the caller's job: pass the training
split only.

Batches are pure functions of `(seed, step)`, as in `data.images`: the labelled and the unlabelled
rows are each example `g = step * B + i` of an endless stream of epochs, epoch `e` visiting the pool
in the order of `np.random.default_rng([seed, stream, e]).permutation(pool size)` (stream 0 for the
labelled rows, 1 for the unlabelled ones); a batch may straddle two epochs, or more when it is
larger than its pool. `balanced_labelled_subset` draws the labelled examples with
`np.random.default_rng(seed)`, so one seed fixes both the subset and the order.

For training several seeds at once under `jax.vmap`, `SemiSupervisedBatches.for_seeds` builds one
sampler per seed (each its own subset and order) and `stack_batches` stacks their batches on a
leading seed axis.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from uncertainty_jax.data import base
from uncertainty_jax.data.images import check_positive, check_seed

# Streams of the per-epoch orders: the labelled rows and the unlabelled rows.
_LABELLED_STREAM, _UNLABELLED_STREAM = 0, 1
# Epoch orders kept per stream (a batch rarely spans more than two epochs).
_CACHED_EPOCHS = 4


def _check_labels(labels: Any) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels: shape {labels.shape} dtype {labels.dtype}, expected a 1-D integer '
                     'array [N]')
  return labels


def balanced_labelled_subset(labels: np.ndarray, num_labels: int, seed: int) -> np.ndarray:
  """Indices of `num_labels` examples, `num_labels // K` of each of the `K` classes.

  Each class's examples are drawn without replacement with `np.random.default_rng(seed)`, class
  after class in ascending label order. The classes are the distinct values of `labels`.

  Args:
    labels: `[N]` integer labels of the training split.
    num_labels: how many labelled examples, a positive multiple of the class count.
    seed: a non-negative integer.

  Returns:
    `[num_labels]` int64 indices into `labels`, ascending.

  Raises:
    ValueError: if `num_labels` is not positive, exceeds `N` or is not divisible by the class
      count, a class has fewer than `num_labels // K` examples, or `labels` is not 1-D integer.
  """
  labels = _check_labels(labels)
  num_labels = check_positive('num_labels', num_labels)
  seed = check_seed(seed)
  if num_labels > len(labels):
    raise ValueError(f'num_labels={num_labels}: more than the {len(labels)} examples of labels.')
  classes, counts = np.unique(labels, return_counts=True)
  if num_labels % len(classes):
    raise ValueError(f'num_labels={num_labels}: not divisible by the class count {len(classes)}; '
                     'expected a multiple of it.')
  per_class = num_labels // len(classes)
  if counts.min() < per_class:
    short = classes[np.argmin(counts)]
    raise ValueError(f'num_labels={num_labels}: class {short} has {counts.min()} examples, fewer '
                     f'than the {per_class} per class it needs.')
  rng = np.random.default_rng(seed)
  chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


class SemiSupervisedBatches:
  """Labelled and unlabelled training batches addressed by step (see the module docstring).

  Attributes:
    labelled_indices: `[L]` int64, the rows of `images` whose labels are used, ascending.
    seed: the seed of the epoch orders.
    labelled_batch_size: `B_l`, labelled rows per batch.
    unlabelled_batch_size: `B_u`, unlabelled rows per batch.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, labelled_indices: np.ndarray, *,
               labelled_batch_size: int, unlabelled_batch_size: int, seed: int):
    """Holds the training split and the labelled subset.

    Args:
      images: `[N, ...]` training examples, e.g. `[N, D]` flat images in [-1, 1] (the shape the
        model takes; `LadderNetwork` wants them flat).
      labels: `[N]` integer labels; only those of `labelled_indices` are ever returned.
      labelled_indices: `[L]` distinct indices into `images`, e.g. from
        `balanced_labelled_subset`.
      labelled_batch_size: `B_l`, a positive integer (may exceed `L`: rows then repeat).
      unlabelled_batch_size: `B_u`, a positive integer.
      seed: a non-negative integer, seeds the epoch orders.
    """
    images = np.asarray(images)
    labels = _check_labels(labels)
    if images.ndim < 2 or len(images) != len(labels):
      raise ValueError(f'images: shape {images.shape}, expected [N, ...] with N = {len(labels)} '
                       'as labels')
    indices = np.asarray(labelled_indices)
    if (indices.ndim != 1 or not indices.size or not np.issubdtype(indices.dtype, np.integer)
        or indices.min() < 0 or indices.max() >= len(labels)
        or len(np.unique(indices)) != len(indices)):
      raise ValueError(f'labelled_indices: expected a non-empty 1-D array of distinct integers in '
                       f'[0, {len(labels)}), got shape {indices.shape} dtype {indices.dtype}.')
    self.labelled_batch_size = check_positive('labelled_batch_size', labelled_batch_size)
    self.unlabelled_batch_size = check_positive('unlabelled_batch_size', unlabelled_batch_size)
    self.seed = check_seed(seed)
    self.labelled_indices = np.sort(indices).astype(np.int64)
    self.labelled_indices.setflags(write=False)
    self._images = images
    self._labels = labels
    self._orders: dict[tuple[int, int], np.ndarray] = {}

  @classmethod
  def balanced(cls, images: np.ndarray, labels: np.ndarray, *, num_labels: int,
               labelled_batch_size: int, unlabelled_batch_size: int,
               seed: int) -> SemiSupervisedBatches:
    """The sampler of `seed` with `balanced_labelled_subset(labels, num_labels, seed)`."""
    indices = balanced_labelled_subset(labels, num_labels, seed)
    return cls(images, labels, indices, labelled_batch_size=labelled_batch_size,
               unlabelled_batch_size=unlabelled_batch_size, seed=seed)

  @classmethod
  def for_seeds(cls, images: np.ndarray, labels: np.ndarray, *, num_labels: int,
                labelled_batch_size: int, unlabelled_batch_size: int,
                seeds: Sequence[int]) -> list[SemiSupervisedBatches]:
    """One `balanced` sampler per seed, each with its own labelled subset and order."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
      raise ValueError(f'seeds: {seeds!r} is not a non-empty sequence of seeds')
    return [cls.balanced(images, labels, num_labels=num_labels,
                         labelled_batch_size=labelled_batch_size,
                         unlabelled_batch_size=unlabelled_batch_size, seed=seed)
            for seed in seeds]

  def _epoch_order(self, stream: int, epoch: int, size: int) -> np.ndarray:
    key = (stream, epoch)
    if key not in self._orders:
      if len(self._orders) >= 2 * _CACHED_EPOCHS:
        self._orders.pop(min(self._orders, key=lambda k: k[1]))
      self._orders[key] = np.random.default_rng([self.seed, stream, epoch]).permutation(size)
    return self._orders[key]

  def _stream_rows(self, stream: int, step: int, batch_size: int, size: int) -> np.ndarray:
    """Positions `[batch_size]` in `range(size)` of the rows of `step` in `stream`."""
    examples = step * batch_size + np.arange(batch_size, dtype=np.int64)
    epochs, positions = np.divmod(examples, size)
    rows = np.empty_like(positions)
    for epoch in np.unique(epochs):
      where = epochs == epoch
      rows[where] = self._epoch_order(stream, int(epoch), size)[positions[where]]
    return rows

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """The batch of `step`, a pure function of `(seed, step)`.

    Returns:
      `{'x_labelled': [B_l, ...], 'y_labelled': [B_l] int32, 'x_unlabelled': [B_u, ...]}`, numpy
      arrays with the dtype of `images`.
    """
    base.check_step(step)
    step = int(step)
    labelled = self.labelled_indices[self._stream_rows(
        _LABELLED_STREAM, step, self.labelled_batch_size, len(self.labelled_indices))]
    unlabelled = self._stream_rows(_UNLABELLED_STREAM, step, self.unlabelled_batch_size,
                                   len(self._labels))
    return {'x_labelled': self._images[labelled],
            'y_labelled': self._labels[labelled].astype(np.int32),
            'x_unlabelled': self._images[unlabelled]}


def stack_batches(samplers: Sequence[SemiSupervisedBatches], step: int) -> dict[str, np.ndarray]:
  """The batches of `step` of several samplers (one per seed), stacked on a leading axis.

  Args:
    samplers: `S` samplers with equal batch sizes, e.g. from `SemiSupervisedBatches.for_seeds`.
    step: the training step.

  Returns:
    `{'x_labelled': [S, B_l, ...], 'y_labelled': [S, B_l], 'x_unlabelled': [S, B_u, ...]}`.
  """
  if isinstance(samplers, (str, bytes)) or not isinstance(samplers, Sequence) or not samplers:
    raise ValueError(f'samplers: {samplers!r} is not a non-empty sequence of samplers')
  sizes = {(s.labelled_batch_size, s.unlabelled_batch_size) for s in samplers}
  if len(sizes) != 1:
    raise ValueError(f'samplers: batch sizes (labelled, unlabelled) differ: {sorted(sizes)}; '
                     'expected one pair for all')
  batches = [sampler.batch(step) for sampler in samplers]
  return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


__all__ = ['SemiSupervisedBatches', 'balanced_labelled_subset', 'stack_batches']
