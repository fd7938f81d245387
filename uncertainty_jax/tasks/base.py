"""What a chapter gives the loop: data, an initial pair state, two losses, an evaluator, samples."""

from __future__ import annotations

import abc
from typing import Any

import jax
from jax.sharding import Mesh

from uncertainty_jax.training.state import PairState


class Task(abc.ABC):
  """One system of the thesis, as the generic loop (`training.loop`) drives it.

  The losses are pure functions `(params, state, batch, rng) -> (loss, (metrics, batch_stats))`
  differentiated with respect to `params` by the step builder (`training.steps`);
  `discriminator_loss` is unused when `init_state` returns a state without discriminator.
  """

  def __init__(self, config):
    self.config = config
    self._jitted_fns: dict[str, Any] = {}

  def jitted(self, name: str, fn):
    """`jax.jit(fn)`, built once per task under `name` (evaluation helpers reuse their compiles)."""
    if name not in self._jitted_fns:
      self._jitted_fns[name] = jax.jit(fn)
    return self._jitted_fns[name]

  def prepare(self, workdir: str) -> None:
    """Loads (or builds and saves under `workdir`) what evaluation needs besides the state, e.g. a
    pretrained classifier; called once before training or evaluation. Optional."""

  @abc.abstractmethod
  def make_dataset(self, sharding: jax.sharding.Sharding) -> Any:
    """The dataset, its global training batches sharded with `sharding`."""

  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> PairState:
    """A fresh state (pure; the loop jits it with the shardings of the mesh)."""

  def discriminator_loss(self, params, state: PairState, batch, rng):
    raise NotImplementedError(f"{type(self).__name__} trains no discriminator")

  @abc.abstractmethod
  def generator_loss(self, params, state: PairState, batch, rng):
    """The generator's loss (for systems without discriminator, the model's loss)."""

  @abc.abstractmethod
  def evaluate(self, state: PairState, dataset: Any, mesh: Mesh) -> dict[str, float]:
    """Evaluation metrics on the dataset's test set, a flat dict of floats."""

  def write_samples(self, state: PairState, dataset: Any, mesh: Mesh, sample_dir: str, step: int,
                    writer: Any) -> None:
    """Writes pictures of what the model does (PNG grids, GIFs); optional.

    Called on every process (the predictions are a global computation); only process 0 writes.
    """
