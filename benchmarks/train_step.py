"""Measures a config's compiled train step and its data pipeline on the available devices.

    python -m benchmarks.train_step --config=experiments/video_pred.py --config.budget=full
    python -m benchmarks.train_step --config=experiments/video_pred.py:l1 --steps=10

Prints: compile time, steady train steps/s, images/s, model GFLOP per step (XLA's cost analysis of
the compiled step) and GFLOP/s, and the data pipeline's own batches/s. Timings exclude compilation
and the first step; each is the median of `--steps` timed steps.
"""

from __future__ import annotations

import statistics
import time

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks.common import compiled_flops
from uncertainty_jax import tasks as tasks_lib
from uncertainty_jax.training import loop
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed train steps.")
_DATA_STEPS = flags.DEFINE_integer("data_steps", 50, "Timed data-pipeline batches.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  config = _CONFIG.value
  budget = loop.resolve_budget(config)
  task = tasks_lib.get_task(config)
  mesh = sharding_lib.make_mesh()
  sharding_lib.check_batch_size(config.batch_size, mesh)
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  key = jax.random.PRNGKey(config.seed)
  state = jax.jit(task.init_state, out_shardings=sharding_lib.replicated(mesh))(key)
  step_fn = steps_lib.make_train_step(task, mesh)
  batch = dataset.train_batch(0)
  jax.block_until_ready(batch)

  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  flops = compiled_flops(compiled)

  state, metrics = compiled(state, batch, key)
  jax.block_until_ready(metrics)
  times = []
  for i in range(_STEPS.value):
    batch = dataset.train_batch(i + 1)
    jax.block_until_ready(batch)
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)

  jax.block_until_ready(dataset.train_batch(10_000))
  t0 = time.perf_counter()
  for i in range(_DATA_STEPS.value):
    out = dataset.train_batch(10_001 + i)
  jax.block_until_ready(out)
  data_s = (time.perf_counter() - t0) / _DATA_STEPS.value

  devices = jax.devices()
  print(f"config: {config.task}/{config.variant} budget={budget} width={config.width_multiplier} "
        f"batch={config.batch_size} image={config.image_size} scales={config.num_scales}")
  print(f"devices: {len(devices)} x {devices[0].device_kind} ({jax.default_backend()})")
  print(f"compile: {compile_s:.1f} s")
  print(f"train step: {step_s:.3f} s  ({1 / step_s:.2f} steps/s, "
        f"{config.batch_size / step_s:.2f} images/s)")
  print(f"model: {flops / 1e9:.1f} GFLOP/step, {flops / 1e9 / step_s:.1f} GFLOP/s")
  print(f"data pipeline: {data_s * 1e3:.2f} ms/batch ({1 / data_s:.0f} batches/s, "
        f"{step_s / data_s:.0f}x the step rate)")


if __name__ == "__main__":
  app.run(main)
