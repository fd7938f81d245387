"""Compares the compiled chapter-4 train step across discriminator convolution methods, and profiles it.

    python -m benchmarks.profile_step --config=experiments/video_pred.py --config.budget=full \
        --methods=same_crop:xla,auto:auto --rounds=3
    python -m benchmarks.profile_step --config=experiments/video_pred.py --config.budget=full \
        --methods=auto:auto --trace_dir=/tmp/trace

Every variant computes the same function: `D:G` names how the discriminators' unpadded convolutions
(`uncertainty_jax.layers.conv.METHODS`) and the generator's padded ones (`SAME_METHODS`) are computed;
'same_crop:xla' is the plain XLA formulation. The steps of all
methods are compiled first, then timed in interleaved rounds, so a machine shared with other work
slows each alike; the table gives each method's median and its ratio to the first. With
`--trace_dir`, one profiled step of each method is broken down by operation (CPU seconds summed over
XLA's worker threads, grouped by the op's source: network, scale, layer, forward or transposed).
"""

from __future__ import annotations

import collections
import glob
import os
import re
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
_METHODS = flags.DEFINE_list(
    "methods", ["same_crop:xla", "auto:auto"],
    "Variants to compare, each 'D:G': a discriminator method (layers.conv.METHODS) and a generator "
    "method (layers.conv.SAME_METHODS).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed steps per method, interleaved.")
_TRACE_DIR = flags.DEFINE_string("trace_dir", "", "Where to write and read a profile; '' = none.")
_TOP = flags.DEFINE_integer("top", 25, "Operation groups listed per profiled method.")
flags.mark_flag_as_required("config")


def _op_sources(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> the op_name of its JAX source, shortened."""
  sources = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
    if not m:
      continue
    src = re.search(r'op_name="([^"]+)"', line)
    name = src.group(1) if src else "(no source)"
    name = re.sub(r"^jit\([^)]*\)/", "", name)
    sources[m.group(1)] = re.sub(r"/(conv_general_dilated|dot_general)$", "", name)
  return sources


def _profile(trace_dir: str, hlo_text: str) -> collections.Counter:
  """CPU seconds per op source from the newest xplane file under `trace_dir`."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  path = max(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True),
             key=os.path.getmtime)
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  sources = _op_sources(hlo_text)
  totals = collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_XLAEigen"):
        continue
      for event in line.events:
        name = names.get(event.metadata_id, "?")
        if name.startswith("ThunkExecutor"):
          continue
        totals[sources.get(name, name)] += event.duration_ps / 1e12
  return totals


def main(argv):
  del argv
  config = _CONFIG.value
  loop.resolve_budget(config)
  task = tasks_lib.get_task(config)
  mesh = sharding_lib.make_mesh()
  dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
  key = jax.random.PRNGKey(config.seed)
  batch = dataset.train_batch(0)
  base_discriminator = task.discriminator
  base_generator = task.generator

  compiled, states, flops = {}, {}, {}
  for method in _METHODS.value:
    d_method, _, g_method = method.partition(":")
    task.generator = base_generator.clone(conv_method=g_method or "auto")
    if base_discriminator is not None:
      task.discriminator = base_discriminator.clone(conv_method=d_method)
    state = jax.jit(task.init_state, out_shardings=sharding_lib.replicated(mesh))(key)
    step_fn = steps_lib.make_train_step(task, mesh)
    t0 = time.perf_counter()
    compiled[method] = step_fn.lower(state, batch, key).compile()
    print(f"{method}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
    flops[method] = compiled_flops(compiled[method])
    state, metrics = compiled[method](state, batch, key)
    jax.block_until_ready(metrics)
    states[method] = state

  times = collections.defaultdict(list)
  for _ in range(_ROUNDS.value):
    for method in _METHODS.value:
      t0 = time.perf_counter()
      states[method], metrics = compiled[method](states[method], batch, key)
      jax.block_until_ready(metrics)
      times[method].append(time.perf_counter() - t0)

  first = statistics.median(times[_METHODS.value[0]])
  print(f"{'variant':24s} {'s/step':>8s} {'images/s':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'ratio':>6s}")
  for method in _METHODS.value:
    s = statistics.median(times[method])
    print(f"{method:24s} {s:8.3f} {config.batch_size / s:9.2f} {flops[method] / 1e9:7.1f} "
          f"{flops[method] / 1e9 / s:8.1f} {s / first:6.2f}")

  if _TRACE_DIR.value:
    for method in _METHODS.value:
      trace_dir = os.path.join(_TRACE_DIR.value, method)
      with jax.profiler.trace(trace_dir):
        states[method], metrics = compiled[method](states[method], batch, key)
        jax.block_until_ready(metrics)
      totals = _profile(trace_dir, compiled[method].as_text())
      print(f"--- {method}: {sum(totals.values()):.2f} CPU s in ops")
      for source, seconds in totals.most_common(_TOP.value):
        print(f"{seconds:8.3f}  {source[:110]}")


if __name__ == "__main__":
  app.run(main)
