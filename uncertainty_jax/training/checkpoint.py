"""Orbax checkpoints of a generator/discriminator pair, saved together with the run's position.

One `CheckpointManager` saves a composite of three items per step: the generator's and the
discriminator's variables and optimizer states, and a JSON record of the step (which is also the data
stream's position), the parameter shapes and the config. Orbax writes each checkpoint to a temporary
directory and renames it when complete, so a run killed at any moment leaves only whole checkpoints.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from uncertainty_jax.training.state import NetworkState
from uncertainty_jax.training.state import PairState


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored into this run."""


def _network_tree(net: NetworkState) -> dict:
  return {"params": net.params, "batch_stats": net.batch_stats, "opt_state": net.opt_state}


def _param_shapes(state: PairState) -> dict[str, list[int]]:
  shapes = {}
  for side in ("generator", "discriminator"):
    net = getattr(state, side)
    if net is None:
      continue
    for path, leaf in jax.tree_util.tree_leaves_with_path(net.params):
      shapes[f"{side}/{jax.tree_util.keystr(path)}"] = list(leaf.shape)
  return shapes


class PairCheckpointer:
  """Saves and restores `PairState`s under `directory`, keeping the latest `keep`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, state: PairState, *, config: dict, extra: Optional[dict] = None) -> None:
    """Starts saving `state` at its step (asynchronously; `wait` blocks until written)."""
    step = int(jax.device_get(state.step))
    meta = {"step": step, "data_position": step, "param_shapes": _param_shapes(state),
            "has_discriminator": state.discriminator is not None, "config": config,
            **(extra or {})}
    items = {"generator": ocp.args.StandardSave(_network_tree(state.generator)),
             "meta": ocp.args.JsonSave(meta)}
    if state.discriminator is not None:
      items["discriminator"] = ocp.args.StandardSave(_network_tree(state.discriminator))
    self._manager.save(step, args=ocp.args.Composite(**items))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types for unreadable directories.
      raise CheckpointError(
          f"checkpoint: step {step} in {self.directory} cannot be read ({type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}); move it out of the way or use another "
          f"--workdir") from e
    return restored["meta"]

  def restore(self, target: PairState, step: Optional[int] = None) -> PairState:
    """Restores the checkpoint at `step` (default: latest) into the structure of `target`.

    Args:
      target: a state (concrete or abstract, e.g. from `jax.eval_shape` with shardings) whose
        structure, shapes and shardings the restored arrays take.
      step: which checkpoint; None for the latest.

    Raises:
      CheckpointError: no checkpoint, an unreadable one, or one written by a different model.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"checkpoint: no checkpoint in {self.directory}")
    meta = self.read_meta(step)
    expected = _param_shapes(target)
    found = meta.get("param_shapes", {})
    if found != expected or meta.get("has_discriminator") != (target.discriminator is not None):
      differing = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
      raise CheckpointError(
          f"checkpoint: step {step} in {self.directory} was written by a different model "
          f"configuration ({len(differing)} parameter shapes differ, e.g. {differing[:3]}); use the "
          f"config it was trained with or another --workdir")

    def abstract(net: NetworkState) -> dict:
      return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _network_tree(net))

    items = {"generator": ocp.args.StandardRestore(abstract(target.generator)),
             "meta": ocp.args.JsonRestore()}
    if target.discriminator is not None:
      items["discriminator"] = ocp.args.StandardRestore(abstract(target.discriminator))
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:
      raise CheckpointError(
          f"checkpoint: step {step} in {self.directory} cannot be restored ({type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}); move it out of the way or use another "
          f"--workdir") from e

    def network(net: NetworkState, tree: dict) -> NetworkState:
      return net.replace(**tree)

    disc = target.discriminator
    if disc is not None:
      disc = network(disc, restored["discriminator"])
    step_array = jax.device_put(jax.numpy.asarray(meta["step"], jax.numpy.int32),
                                getattr(target.step, "sharding", None))
    return target.replace(step=step_array, generator=network(target.generator, restored["generator"]),
                          discriminator=disc)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
