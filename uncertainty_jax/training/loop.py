"""The one training loop every system runs: resume, train, log, evaluate, checkpoint.

`train_and_evaluate(config, workdir)` is what `experiments/main.py` and the notebooks call. It
builds the task named by the config, a mesh over all devices, the sharded initial state and the
compiled step; resumes from the latest checkpoint in `workdir`; and trains to `total_steps`, writing
metrics, samples and checkpoints as it goes. `evaluate_checkpoint(config, workdir)` scores the
latest checkpoint alone. Both write the latest evaluation to `workdir/eval.json`.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from typing import Any, Optional

import jax
import numpy as np
from absl import logging

from uncertainty_jax import tasks as tasks_lib
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib
from uncertainty_jax.training import writers as writers_lib
from uncertainty_jax.training.checkpoint import CheckpointError
from uncertainty_jax.training.checkpoint import PairCheckpointer

BUDGETS = ("auto", "cpu", "full")
_PROGRESS_KEYS = ("g/loss", "d/loss")


class NonFiniteLossError(FloatingPointError):
  """A training metric became NaN or infinite."""


def resolve_budget(config) -> str:
  """Fills the fields left as None from the preset of `config.budget`; returns the budget used.

  'auto' means 'cpu' when the default backend is the CPU and 'full' (the thesis' schedule) on
  accelerators. Fields set explicitly (by the config or an override) are kept.
  """
  budget = config.get("budget", None)
  if budget is None:
    return "none"
  if budget not in BUDGETS:
    raise ValueError(f"budget: unknown budget {budget!r}; valid: {list(BUDGETS)}")
  if budget == "auto":
    budget = "cpu" if jax.default_backend() == "cpu" else "full"
  config.budget = budget
  for field, value in config.budgets[budget].items():
    if config[field] is None:
      config[field] = value
  return budget


def _check_intervals(config) -> None:
  for field in ("total_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    value = config[field]
    if not isinstance(value, int) or value <= 0:
      raise ValueError(f"{field}: {value!r} must be a positive integer")


def prepare_workdir(workdir: str) -> str:
  """Creates `workdir` if needed and checks that it is writable; returns its absolute path."""
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"workdir: cannot write to {workdir} ({e.strerror or e}); choose a writable "
                     f"--workdir") from e
  return workdir


def _write_json(path: str, obj: Any) -> None:
  """Writes `obj` atomically as strict JSON, non-finite floats spelled as in `metrics.jsonl`."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(writers_lib.to_json_safe(obj), f, indent=2, sort_keys=True, allow_nan=False)
    f.write("\n")
  os.replace(tmp, path)


def _record_eval(workdir: str, writer: writers_lib.MetricWriter, step: int,
                 results: dict[str, float]) -> None:
  """An evaluation as `eval/...` metrics and, from the chief, as `eval.json` (the latest one)."""
  writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
  if writer.is_chief:
    _write_json(os.path.join(workdir, "eval.json"), {"step": step, **results})


def _setup(config, workdir: str):
  """Everything a run needs before its first step; raises before writing anything on bad input."""
  budget = resolve_budget(config)
  _check_intervals(config)
  task = tasks_lib.get_task(config)
  mesh = sharding_lib.make_mesh()
  sharding_lib.check_batch_size(config.batch_size, mesh)
  workdir = prepare_workdir(workdir)
  task.prepare(workdir)
  return task, mesh, workdir, budget


def _init_or_restore(task, mesh, config, workdir: str, *, require_checkpoint: bool = False):
  checkpointer = PairCheckpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  if require_checkpoint and checkpointer.latest_step() is None:
    raise CheckpointError(f"checkpoint: no checkpoint in {checkpointer.directory}; train first "
                          f"(--mode=train) or point --workdir at a trained run")
  key = jax.random.PRNGKey(config.seed)
  init_key, step_key = jax.random.split(key)
  init = jax.jit(task.init_state, out_shardings=sharding_lib.replicated(mesh))
  state = init(init_key)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state)
  return state, step_key, checkpointer


def _finite_or_raise(step: int, scalars: dict, checkpointer: PairCheckpointer) -> None:
  bad = {k: v for k, v in scalars.items() if not math.isfinite(v)}
  if bad:
    last = checkpointer.latest_step()
    kept = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint"
    shown = ", ".join(f"{k}={v}" for k, v in sorted(bad.items())[:4])
    raise NonFiniteLossError(f"training diverged at step {step}: {shown}; {kept} in "
                             f"{checkpointer.directory}")


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains the task of `config` in `workdir` to `config.total_steps`, resuming if possible.

  Args:
    config: a chapter config (see `experiments/`); fields left None are filled from its budget.
    workdir: where the run's files go (see the README's "What a run writes").

  Returns:
    The last evaluation's metrics (empty if none ran).
  """
  task, mesh, workdir, budget = _setup(config, workdir)
  is_chief = jax.process_index() == 0
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  state, step_key, checkpointer = _init_or_restore(task, mesh, config, workdir)
  start = int(jax.device_get(state.step))
  if is_chief:
    _write_json(os.path.join(workdir, "config.json"), config.to_dict())
  logging.info("task %s, budget %s, %d devices (%s), workdir %s, %s at step %d", config.task,
               budget, mesh.devices.size, jax.default_backend(), workdir,
               "resuming" if start else "starting", start)
  train_step = steps_lib.make_train_step(task, mesh)
  # Lines a killed run logged after its last checkpoint are dropped: the run replays those steps.
  writer = writers_lib.MetricWriter(workdir, is_chief=is_chief, resume_step=start)
  sample_dir = os.path.join(workdir, "samples")
  progress = writers_lib.ProgressLine(config.total_steps, start_step=start,
                                      stream=None if is_chief else io.StringIO())
  total = config.total_steps
  last_eval: dict[str, float] = {}
  pending: Optional[tuple[int, Any]] = None

  def finish(done: int, metrics) -> None:
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
    _finite_or_raise(done, scalars, checkpointer)
    progress.update(done, {k: scalars[k] for k in _PROGRESS_KEYS if k in scalars})
    if done % config.log_every == 0 or done == total:
      writer.write_scalars(done, scalars)

  try:
    if start >= total:
      logging.info("already at step %d >= total_steps %d; nothing to train", start, total)
    for step in range(start, total):
      batch = dataset.train_batch(step)
      state, metrics = train_step(state, batch, step_key)
      # The previous step's metrics are read while this one runs, keeping the device busy.
      if pending is not None:
        finish(*pending)
      pending = (step + 1, metrics)
      done = step + 1
      boundary = done == total or done % config.eval_every == 0 or (
          done % config.checkpoint_every == 0)
      if not boundary:
        continue
      finish(*pending)
      pending = None
      if done % config.checkpoint_every == 0 or done == total:
        checkpointer.save(state, config=config.to_dict())
      if done % config.eval_every == 0 or done == total:
        t0 = time.time()
        last_eval = task.evaluate(state, dataset, mesh)
        _record_eval(workdir, writer, done, last_eval)
        # Every process runs the sample predictions (a global computation); the chief writes them.
        task.write_samples(state, dataset, mesh, sample_dir, done, writer)
        writer.flush()
        logging.info("step %d eval (%.1f s): %s", done, time.time() - t0, _summary(last_eval))
    if pending is not None:
      finish(*pending)
  finally:
    progress.close()
    writer.close()
    checkpointer.close()
  return last_eval


def restore(config, workdir: str):
  """The latest checkpoint in `workdir`, ready for inference.

  Returns:
    `(task, state, mesh)`: the config's task, its `PairState` restored on a mesh over all devices.

  Raises:
    CheckpointError: `workdir` has no checkpoint, or one of another model.
  """
  task, mesh, workdir, _ = _setup(config, workdir)
  state, _, checkpointer = _init_or_restore(task, mesh, config, workdir, require_checkpoint=True)
  checkpointer.close()
  return task, state, mesh


def evaluate_checkpoint(config, workdir: str) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir`; writes `eval.json` and a `metrics.jsonl` line."""
  task, state, mesh = restore(config, workdir)
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  step = int(jax.device_get(state.step))
  results = task.evaluate(state, dataset, mesh)
  if jax.process_index() == 0:
    with writers_lib.MetricWriter(workdir) as writer:
      _record_eval(workdir, writer, step, results)
  logging.info("step %d eval: %s", step, _summary(results))
  return {"step": step, **results}


def _summary(results: dict[str, float]) -> str:
  keys = [k for k in ("moving/frame1/psnr", "last_input/moving/frame1/psnr",
                      "flow/moving/frame1/psnr", "full/frame1/psnr", "last_input/full/frame1/psnr",
                      "inception_score", "inception_score_data", "modes_covered",
                      "high_quality_fraction")
          if k in results]
  return ", ".join(f"{k}={results[k]:.2f}" for k in keys) or ", ".join(
      f"{k}={v:.4g}" for k, v in list(results.items())[:6])
