"""Grid-search configurations per hour, trained together under `jax.vmap` or one at a time.

    python -m benchmarks.grid_rate --steps=200
    python -m benchmarks.grid_rate --group=g2x400-d2x128 --frameworks=gan --steps=100
    python -m benchmarks.grid_rate --tiny --steps=2 --members=2   # shrunken grid, for the tests

One architecture group of the Table 6.1 search (`--group`, nLayerG x sizeG - nLayerD x sizeD;
default GAN and EBGAN g3x800-d3x256: 24 GAN configurations, dropoutD x optimD x optimG x lr, and
2 EBGAN ones, dropoutD) on the grid's data (`experiments/ebgan.py:grid`: 8x8 digits, batch 64),
trained for `--steps` steps three ways, on the same batches:

* vmap: every member at once, as `experiments.grid` trains them: the sweepable task and
  `training.sweep`'s stacked state, keys and vmapped step (`init_members`, `member_keys`,
  `make_sweep_step`), in chunks of `grid.chunk_size` members, the loop of `sweep.train_members`.
* one per sweep: the same sweepable task and vmapped step with one member at a time (compiled
  once for all of them, initialised together then split), which separates the effect of
  batching the members from that of the sweepable task's own work (Adam's moments kept for SGD
  members, dropout drawn at rate 0).
* one at a time: each configuration as `experiments.main` would train it: the ordinary
  (non-sweepable) task of its config and the loop's compiled step (`steps.make_train_step`), one
  compilation per configuration, since its optimizer, learning rate and dropout are constants of
  the compiled program.

Each way's time is split into state initialisation, compilation (ahead of time) and the training
steps; configurations/hour are given with and without compilation, and the ratios of vmap to the
other two. With `--end_to_end`, `sweep.train_members` itself is also run on all members, as a
check of the first way (its wall time, compilation included).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time

import jax
import jax.numpy as jnp
from absl import app
from absl import flags

from experiments import ebgan as ebgan_config
from uncertainty_jax import data as data_lib
from uncertainty_jax.models import ebgan as ebgan_models
from uncertainty_jax.tasks import ebgan as ebgan_task
from uncertainty_jax.training import grid as grid_lib
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib
from uncertainty_jax.training import sweep as sweep_lib

DEFAULT_GROUP = "g3x800-d3x256"

_GROUP = flags.DEFINE_string("group", None, "Architecture 'g<nLayerG>x<sizeG>-d<nLayerD>x<sizeD>' "
                             f"of Table 6.1 (default {DEFAULT_GROUP}; with --tiny the tiny grid's "
                             "smallest).")
_FRAMEWORKS = flags.DEFINE_list("frameworks", ["gan", "ebgan"],
                                f"Frameworks, from {list(grid_lib.FRAMEWORKS)}.")
_STEPS = flags.DEFINE_integer("steps", 200, "Training steps of every configuration.")
_MEMBERS = flags.DEFINE_integer("members", 0, "Train only the first N configurations of each "
                                "group; 0 = all.")
_END_TO_END = flags.DEFINE_bool("end_to_end", False, "Also time `sweep.train_members` on all "
                                "members (compilation included).")
_TINY = flags.DEFINE_bool("tiny", False, "The shrunken grid of the tests (`grid,tiny`: batch 8).")

_GROUP_RE = re.compile(r"g(\d+)x(\d+)-d(\d+)x(\d+)")


@dataclasses.dataclass
class _Timing:
  init_s: float = 0.0
  compile_s: float = 0.0
  train_s: float = 0.0
  diverged: int = 0

  @property
  def total_s(self) -> float:
    return self.init_s + self.compile_s + self.train_s



def _single_config(config, point: grid_lib.GridPoint):
  """The ordinary task config of one grid point: its optimizers, rates and dropout as constants."""
  c = grid_lib.point_config(config, point)
  c.g_optimizer, c.d_optimizer = point.optimizer_g, point.optimizer_d
  c.g_learning_rate = c.d_learning_rate = point.learning_rate
  c.dropout_d = ebgan_models.GRID_DROPOUT_RATE if point.dropout_d else 0.0
  c.lambda_pt = point.lambda_pt
  c.seed = point.seed
  return c


def _nonfinite(metrics) -> jax.Array:
  return ~jnp.isfinite(metrics["g/loss"]) | ~jnp.isfinite(metrics["d/loss"])


def _train_vmapped(config, points, dataset, steps: int) -> _Timing:
  """All `points` under one vmapped step per chunk, as `sweep.train_members` trains them."""
  task = ebgan_task.EBGANTask(grid_lib.point_config(config, points[0]), sweepable=True)
  size = grid_lib.chunk_size(task, len(points))
  timing = _Timing()
  for start in range(0, len(points), size):
    members = [grid_lib.member(p) for p in points[start:start + size]]
    t0 = time.perf_counter()
    state = jax.block_until_ready(sweep_lib.init_members(task, members))
    keys = sweep_lib.member_keys(members)
    t1 = time.perf_counter()
    compiled = sweep_lib.make_sweep_step(task).lower(state, dataset.train_batch(0), keys).compile()
    t2 = time.perf_counter()
    bad = jnp.zeros((len(members),), bool)
    for i in range(steps):
      state, metrics = compiled(state, dataset.train_batch(i), keys)
      bad = bad | _nonfinite(metrics)
    bad = jax.device_get(bad)
    t3 = time.perf_counter()
    timing.init_s += t1 - t0
    timing.compile_s += t2 - t1
    timing.train_s += t3 - t2
    timing.diverged += int(bad.sum())
  return timing


def _train_one_per_sweep(config, points, dataset, steps: int) -> _Timing:
  """Each point alone in the vmapped sweep step, one compilation shared by all points."""
  task = ebgan_task.EBGANTask(grid_lib.point_config(config, points[0]), sweepable=True)
  members = [grid_lib.member(p) for p in points]
  timing = _Timing()
  t0 = time.perf_counter()
  stacked = jax.block_until_ready(sweep_lib.init_members(task, members))
  keys = sweep_lib.member_keys(members)
  t1 = time.perf_counter()
  first = jax.tree_util.tree_map(lambda x: x[:1], stacked)
  compiled = sweep_lib.make_sweep_step(task).lower(first, dataset.train_batch(0),
                                                   keys[:1]).compile()
  timing.init_s, timing.compile_s = t1 - t0, time.perf_counter() - t1
  for m in range(len(members)):
    state = jax.block_until_ready(jax.tree_util.tree_map(lambda x, m=m: x[m:m + 1], stacked))
    t0 = time.perf_counter()
    bad = jnp.zeros((1,), bool)
    for i in range(steps):
      state, metrics = compiled(state, dataset.train_batch(i), keys[m:m + 1])
      bad = bad | _nonfinite(metrics)
    bad = jax.device_get(bad)
    timing.train_s += time.perf_counter() - t0
    timing.diverged += int(bad.sum())
  return timing


def _train_one_at_a_time(config, points, dataset, mesh, steps: int) -> _Timing:
  """Each point with its own ordinary task and compiled loop step."""
  timing = _Timing()
  for point in points:
    task = ebgan_task.EBGANTask(_single_config(config, point))
    init_key, key = jax.random.split(jax.random.PRNGKey(point.seed))
    t0 = time.perf_counter()
    state = jax.jit(task.init_state, out_shardings=sharding_lib.replicated(mesh))(init_key)
    jax.block_until_ready(state)
    t1 = time.perf_counter()
    compiled = steps_lib.make_train_step(task, mesh).lower(
        state, dataset.train_batch(0), key).compile()
    t2 = time.perf_counter()
    bad = jnp.zeros((), bool)
    for i in range(steps):
      state, metrics = compiled(state, dataset.train_batch(i), key)
      bad = bad | _nonfinite(metrics)
    bad = jax.device_get(bad)
    t3 = time.perf_counter()
    timing.init_s += t1 - t0
    timing.compile_s += t2 - t1
    timing.train_s += t3 - t2
    timing.diverged += int(bad)
  return timing


def _group_points(config, framework: str, group: str, members: int) -> list[grid_lib.GridPoint]:
  match = _GROUP_RE.fullmatch(group)
  points = grid_lib.table_6_1(config.grid)
  shapes = sorted({p.architecture[1:] for p in points})
  valid = [f"g{a}x{b}-d{c}x{d}" for a, b, c, d in shapes]
  shape = tuple(int(v) for v in match.groups()) if match else None
  if shape not in shapes:
    raise app.UsageError(f"--group: {group!r} is not an architecture of the grid; valid: "
                         f"{valid[:6]} ... ({len(valid)} in all)")
  chosen = [p for p in points if p.framework == framework and p.architecture[1:] == shape]
  return chosen[:members] if members else chosen


def _rate(n: int, seconds: float) -> float:
  return n * 3600.0 / seconds


def main(argv):
  del argv
  unknown = [f for f in _FRAMEWORKS.value if f not in grid_lib.FRAMEWORKS]
  if unknown or not _FRAMEWORKS.value:
    raise app.UsageError(f"--frameworks: {_FRAMEWORKS.value} must be a non-empty subset of "
                         f"{list(grid_lib.FRAMEWORKS)}")
  if _STEPS.value < 1:
    raise app.UsageError(f"--steps: {_STEPS.value} must be a positive integer")
  if _MEMBERS.value < 0:
    raise app.UsageError(f"--members: {_MEMBERS.value} must be >= 0 (0 = all)")
  config = ebgan_config.get_config("grid,tiny" if _TINY.value else "grid")
  g = config.grid
  group = _GROUP.value or (f"g{g.num_layers_g[0]}x{g.size_g[0]}-d{g.num_layers_d[0]}x"
                           f"{g.size_d[0]}" if _TINY.value else DEFAULT_GROUP)
  steps = _STEPS.value
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  dataset = data_lib.get_image_dataset(config, sharding_lib.batch_sharding(mesh))
  devices = jax.devices()
  print(f"devices: {len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), one used")
  print(f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
  print(f"data: {config.dataset}, batch {config.batch_size}; {steps} steps per configuration")

  for framework in _FRAMEWORKS.value:
    points = _group_points(config, framework, group, _MEMBERS.value)
    n = len(points)
    print(f"group: {framework} {group}, {n} configurations", flush=True)
    timings = {"vmap": _train_vmapped(config, points, dataset, steps),
               "one per sweep": _train_one_per_sweep(config, points, dataset, steps),
               "one at a time": _train_one_at_a_time(config, points, dataset, mesh, steps)}
    print(f"  {'way':14s} {'init_s':>7s} {'compile_s':>9s} {'train_s':>8s} {'ms/step/config':>14s} "
          f"{'configs/hour':>12s} {'configs/hour (no compile)':>25s} {'diverged':>8s}")
    for way, t in timings.items():
      print(f"  {way:14s} {t.init_s:7.2f} {t.compile_s:9.2f} {t.train_s:8.2f} "
            f"{t.train_s / steps / n * 1e3:14.3f} {_rate(n, t.total_s):12.0f} "
            f"{_rate(n, t.train_s):25.0f} {t.diverged:8d}")
    v = timings["vmap"]
    for way in ("one at a time", "one per sweep"):
      o = timings[way]
      print(f"  ratio vmap / {way} (configs/hour): {o.total_s / v.total_s:.2f}x with "
            f"compilation, {o.train_s / v.train_s:.2f}x without")
    if _END_TO_END.value:
      t0 = time.perf_counter()
      task = ebgan_task.EBGANTask(grid_lib.point_config(config, points[0]), sweepable=True)
      result = sweep_lib.train_members(task, dataset, [grid_lib.member(p) for p in points], steps)
      jax.block_until_ready(result.state)
      seconds = time.perf_counter() - t0
      print(f"  sweep.train_members end to end ({n} at once, compilation included): "
            f"{seconds:.2f} s, {_rate(n, seconds):.0f} configs/hour", flush=True)


if __name__ == "__main__":
  app.run(main)
