"""Images with identities, served as the same-identity pairs of chapter 5 (Algorithm 5.1).

Chapter 5 learns a code `s` for what a label specifies (the identity: a digit's class, a toy
instance, a sprite's body, hair, armour, ...) and a code `z` for everything else (the pose). Its
training step needs, per row, two images `y1`, `y1'` that share an identity and an image `y2` of
another identity. Every dataset of `IDENTITY_DATASETS` is an `IdentityDataset`:

* `train_batch(step)` gives those triplets, a pure function of `(seed, step)` so that a resumed
  run sees the batches an uninterrupted one would; each process builds its own rows
  (`batch_size / process_count` consecutive rows, `process_index` giving the block).
* `arrays(split)` gives fixed examples of the 'train' and 'test' splits on the host, with their
  identities and, where the data knows them, their ground-truth factors (identity attributes and
  pose), for the evaluation of 5.4 (probes, retrieval, disentanglement scores).
* Datasets whose images come from a renderer (`renders` True) render any (identity, pose): the
  ground truth of a swap, the identity of one image in the pose of another.

An identity is a row of `identity_sizes`-bounded attribute indices, `[A]` int32: one attribute
for digits (the class) and toys (the instance), seven for sprites. The conditional discriminator
(Table 5.1) looks each attribute up in its own table, so `identity_sizes` sizes those tables.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import numpy as np

SPLITS = ('train', 'test')


class IdentityDataset(abc.ABC):
  """Same-identity pairs for training and fixed labelled splits for evaluation.

  Attributes:
    name: the dataset's name in `IDENTITY_DATASETS` (the config's `dataset`).
    sample_shape: `(H, W, C)` of one image.
    identity_names: the names of the `A` identity attributes, e.g. `('digit',)`.
    identity_sizes: the number of values of each attribute, `[A]` ints; attribute `a` of an
      identity is in `0 .. identity_sizes[a] - 1`.
    factor_names: the names of the `F` columns of `arrays(split)['factors']`: the identity
      attributes (and any label derived from the identity, like a toy's category) first, then
      the pose factors the data knows (empty tuple of pose factors for digits and MNIST).
    factor_discrete: `[F]` bools, True where a factor takes integer values (a class), False where
      it is continuous (a position, an angle).
    probe_names: the factors Table 5.2's classifiers predict from `s` and from `z` (sprites: its
      identity attributes; toys and smallNORB: the category; digits: the class).
    pose_names: the factors of `factor_names` that are not determined by the identity.
    renders: whether `render` can draw any (identity, pose).
    batch_size: the global training batch size `B`.
    sharding: the sharding of `[B, H, W, C]` training batches.
  """

  name: str
  sample_shape: tuple[int, int, int]
  identity_names: tuple[str, ...]
  identity_sizes: tuple[int, ...]
  factor_names: tuple[str, ...]
  factor_discrete: tuple[bool, ...]
  probe_names: tuple[str, ...]
  pose_names: tuple[str, ...]
  renders: bool = False
  batch_size: int
  sharding: jax.sharding.Sharding

  @abc.abstractmethod
  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """The global training batch of `step`, from training identities only.

    Returns:
      Global `jax.Array`s sharded over the batch axis with `sharding`:
      `'y1'`, `'y1_same'`, `'y2'`: `[B, H, W, C]` float32 in [-1, 1], where row `i` of `y1` and
      of `y1_same` are two draws of the same identity (two different images wherever the
      identity has more than one) and row `i` of `y2` has another identity;
      `'id1'`, `'id2'`: `[B, A]` int32, the identities of `y1` (and `y1_same`) and of `y2`.
    """

  @abc.abstractmethod
  def arrays(self, split: str) -> dict[str, np.ndarray]:
    """Fixed examples of `split` ('train' or 'test') on the host, read-only.

    The test split holds the test identities where the dataset has disjoint ones (sprites, toys,
    smallNORB: identities never seen in training, as in 5.4.3-5.4.4).

    Returns:
      `'images'`: `[N, H, W, C]` float32 in [-1, 1];
      `'identity'`: `[N, A]` int32;
      `'factors'`: `[N, F]` float32, columns as `factor_names`;
      `'pose'`: `[N, P]` float32, the arguments `render` takes (only when `renders`).
    """

  def render(self, identity: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Images `[N, H, W, C]` of identities `[N, A]` in poses `[N, P]` (rows of `arrays()`)."""
    raise NotImplementedError(f'dataset {self.name!r} has no renderer')

  def factor_index(self, name: str) -> int:
    """The column of `factor_names` called `name`."""
    if name not in self.factor_names:
      raise ValueError(f'factor {name!r}: not a factor of dataset {self.name!r}; valid: '
                       f'{list(self.factor_names)}')
    return self.factor_names.index(name)


def check_split(split: Any) -> str:
  """Returns `split` if it is 'train' or 'test', else raises a one-line ValueError."""
  if split not in SPLITS:
    raise ValueError(f'split={split!r}: expected one of {SPLITS}.')
  return split
