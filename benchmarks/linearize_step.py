"""Cost of inferring delta inside the chapter-3 train step, against the step without delta.

    python -m benchmarks.linearize_step                       # deep3 at the cpu widths, k = 0, 1, 5, 10
    python -m benchmarks.linearize_step --variant=shallow1 --ks=0,5 --steps=5
    python -m benchmarks.linearize_step --tiny --steps=1 --ks=0,1   # for the tests

Algorithm 3.1 (thesis 3.2.2) infers each example's delta (eq. 3.11-3.13) with k gradient steps
from 0 before the model's update; the thesis puts the cost of training at k + 1 times a plain step
(chapter 4's introduction). One `experiments/linearize.py` variant (`--variant`) is timed at one
width and batch size with `latent_dim` 3 and `latent_steps` k for each k of `--ks` (k = 0 keeps
delta at 0 but still carries it through the predictor), and once with `latent_dim` 0 (the row
'no delta').

Every row is the loop's compiled step, `uncertainty_jax.training.steps.make_train_step`, compiled
ahead of time (its compile time is reported apart). All rows run on the same batches of the
variant's training data: `--warmup` untimed steps each, then `--steps` rounds in which every row
takes one step on that round's batch, the rows' order rotating from round to round, so that a
change in the machine's load falls on all of them alike. A row's time is the median of its steps.

Columns: compile time, s/step, steps/s, images/s (3 frames per example), GFLOP per step, its ratio
to the no-delta step's, and the step time's ratio to the no-delta step's and to k + 1 times it
(the thesis' estimate; below 1 means cheaper than estimated). XLA's cost analysis counts the body
of a loop once, whatever its trip count, so GFLOP/step adds the other k - 1 steps of the inner
loop at the cost analysis of one step of it (a compiled `LinearizeTask.infer_delta` with k = 1).
"""

from __future__ import annotations

import os
import statistics
import time

import jax
from absl import app
from absl import flags

from benchmarks.common import compiled_flops
from benchmarks.common import cpu_model
from experiments import linearize as linearize_config
from uncertainty_jax.tasks import linearize as linearize_task
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib

FLAGS = flags.FLAGS
DEFAULT_KS = (0, 1, 5, 10)
LATENT_DIM = 3
FRAMES_PER_EXAMPLE = 3
NO_DELTA = "no delta"
COLUMNS = ("row", "latent_dim", "k", "compile_s", "s/step", "steps/s", "images/s", "GFLOP/step",
           "flop_vs_no_delta", "vs_no_delta", "vs_(k+1)x_no_delta")


def define_flags() -> None:
  """The command's flags; defined when it runs, so that importing this module defines none."""
  flags.DEFINE_string("variant", "deep3", "Variant of experiments/linearize.py, from "
                      f"{list(linearize_config.VARIANTS)} (deep1 has no delta).")
  flags.DEFINE_float("width", None, "width_multiplier; default the cpu budget's (0.25), or with "
                     "--tiny the tiny config's.")
  flags.DEFINE_integer("batch_size", None, "Examples (triplets) per step; default 32, or with "
                       "--tiny the tiny config's (8).")
  flags.DEFINE_list("ks", [str(k) for k in DEFAULT_KS], "Numbers k of delta gradient steps "
                    "(latent_steps), each timed with latent_dim 3.")
  flags.DEFINE_integer("steps", 10, "Timed steps per row (after the warm-up).")
  flags.DEFINE_integer("warmup", 1, "Untimed steps per row after compiling.")
  flags.DEFINE_bool("tiny", False, "The variant's tiny config (width 1/16, batch 8), for the "
                    "tests.")


def _parse_ks(values: list[str]) -> list[int]:
  """`--ks` as distinct integers >= 0, in the order given."""
  try:
    ks = [int(v) for v in values]
  except ValueError:
    ks = None
  if not ks or any(k < 0 for k in ks):
    raise app.UsageError(f"--ks: {','.join(values)!r} must be a comma-separated list of integers "
                         f">= 0")
  return list(dict.fromkeys(ks))


def _config(latent_dim: int, latent_steps: int):
  """The variant's config with the flags' width and batch size and the given delta settings."""
  c = linearize_config.get_config(f"{FLAGS.variant},tiny" if FLAGS.tiny else FLAGS.variant)
  c.unlock()
  if FLAGS.width is not None:
    c.width_multiplier = FLAGS.width
  elif c.width_multiplier is None:
    c.width_multiplier = c.budgets.cpu.width_multiplier
  if FLAGS.batch_size is not None:
    c.batch_size = FLAGS.batch_size
  c.latent_dim = latent_dim
  c.latent_steps = latent_steps
  c.lock()
  return c


def _delta_step_flops(task: linearize_task.LinearizeTask, batch: dict) -> float:
  """FLOPs of one step of the delta loop: XLA's cost analysis of `infer_delta` with k = 1."""
  config = _config(LATENT_DIM, 1)
  one_step = linearize_task.LinearizeTask(config)
  state = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
  params = state.generator.params
  frames = batch["frames"]

  def codes(params, frames):
    encode = lambda x: one_step.model.apply({"params": params}, x, method=one_step.model.encode)
    return encode(frames[:, 0]), encode(frames[:, 1]), frames[:, 2]

  code1, code2, target = jax.eval_shape(codes, params, frames)
  compiled = jax.jit(one_step.infer_delta).lower(params, code1, code2, target).compile()
  return compiled_flops(compiled)


class _Row:
  """One timed configuration: its task, compiled step, state and timings."""

  def __init__(self, name: str, latent_dim: int, k: int, mesh, batch: dict, key: jax.Array):
    self.name, self.latent_dim, self.k = name, latent_dim, k
    self.config = _config(latent_dim, k)
    self.task = linearize_task.LinearizeTask(self.config)
    self.state = jax.jit(self.task.init_state, out_shardings=sharding_lib.replicated(mesh))(
        jax.random.PRNGKey(self.config.seed))
    t0 = time.perf_counter()
    self.compiled = steps_lib.make_train_step(self.task, mesh).lower(
        self.state, batch, key).compile()
    self.compile_s = time.perf_counter() - t0
    self.xla_flops = compiled_flops(self.compiled)
    self.times: list[float] = []

  def step(self, batch: dict, key: jax.Array) -> float:
    """One train step on `batch`; returns its wall time in seconds."""
    t0 = time.perf_counter()
    self.state, metrics = self.compiled(self.state, batch, key)
    jax.block_until_ready(metrics)
    return time.perf_counter() - t0


def _print_table(rows: list[_Row], batch_size: int, delta_step_flops: float) -> None:
  base = rows[0]
  base_s = statistics.median(base.times)
  base_flops = base.xla_flops
  print(f"{COLUMNS[0]:10s} {COLUMNS[1]:>10s} {COLUMNS[2]:>3s} {COLUMNS[3]:>9s} {COLUMNS[4]:>8s} "
        f"{COLUMNS[5]:>8s} {COLUMNS[6]:>9s} {COLUMNS[7]:>10s} {COLUMNS[8]:>16s} "
        f"{COLUMNS[9]:>11s} {COLUMNS[10]:>18s}")
  for row in rows:
    step_s = statistics.median(row.times)
    flops = row.xla_flops + max(row.k - 1, 0) * delta_step_flops
    k_text = "-" if row.name == NO_DELTA else str(row.k)
    flop_ratio = flops / base_flops if base_flops else float("nan")
    print(f"{row.name:10s} {row.latent_dim:10d} {k_text:>3s} {row.compile_s:9.1f} {step_s:8.4f} "
          f"{1 / step_s:8.2f} {FRAMES_PER_EXAMPLE * batch_size / step_s:9.1f} "
          f"{flops / 1e9:10.4f} {flop_ratio:16.2f} {step_s / base_s:11.2f} "
          f"{step_s / ((row.k + 1) * base_s):18.2f}")


def main(argv):
  del argv
  ks = _parse_ks(FLAGS.ks)
  if FLAGS.variant not in linearize_config.VARIANTS or FLAGS.variant == "deep1":
    raise app.UsageError(f"--variant: {FLAGS.variant!r} is not a variant with delta; valid: "
                         f"{[v for v in linearize_config.VARIANTS if v != 'deep1']}")
  if FLAGS.steps < 1:
    raise app.UsageError(f"--steps: {FLAGS.steps} must be a positive integer")
  if FLAGS.warmup < 0:
    raise app.UsageError(f"--warmup: {FLAGS.warmup} must be an integer >= 0")
  if FLAGS.width is not None and not FLAGS.width > 0:
    raise app.UsageError(f"--width: {FLAGS.width} must be positive")

  mesh = sharding_lib.make_mesh()
  devices = jax.devices()
  print(f"machine: {cpu_model()}, {os.cpu_count()} cores; backend {jax.default_backend()}, "
        f"{len(devices)} x {devices[0].device_kind}; jax {jax.__version__}")
  print(f"load average {os.getloadavg()[0]:.2f} at start")

  base_config = _config(0, 0)
  sharding_lib.check_batch_size(base_config.batch_size, mesh)
  print(f"config: linearize/{base_config.variant} {base_config.architecture} "
        f"width={base_config.width_multiplier:g} batch={base_config.batch_size} "
        f"image={base_config.image_size}x{base_config.image_size}x{base_config.channels} "
        f"dataset={base_config.dataset} latent_correction={base_config.latent_correction}")
  dataset = linearize_task.LinearizeTask(base_config).make_dataset(
      sharding_lib.batch_sharding(mesh))
  rounds = FLAGS.warmup + FLAGS.steps
  batches = [dataset.train_batch(i) for i in range(rounds)]
  jax.block_until_ready(batches)
  keys = [jax.random.fold_in(jax.random.PRNGKey(base_config.seed), i) for i in range(rounds)]

  rows = [_Row(NO_DELTA, 0, 0, mesh, batches[0], keys[0])]
  print(f"{NO_DELTA}: compile {rows[0].compile_s:.1f} s", flush=True)
  for k in ks:
    rows.append(_Row(f"k={k}", LATENT_DIM, k, mesh, batches[0], keys[0]))
    print(f"k={k}: compile {rows[-1].compile_s:.1f} s", flush=True)
  delta_step_flops = _delta_step_flops(rows[-1].task, batches[0])

  for i in range(FLAGS.warmup):
    for row in rows:
      row.step(batches[i], keys[i])
  for r in range(FLAGS.steps):
    i = FLAGS.warmup + r
    for row in rows[r % len(rows):] + rows[:r % len(rows)]:
      row.times.append(row.step(batches[i], keys[i]))

  print(f"{FLAGS.steps} timed steps per row (median), after {FLAGS.warmup} warm-up; "
        f"load average {os.getloadavg()[0]:.2f} at the end")
  _print_table(rows, base_config.batch_size, delta_step_flops)
  print(f"GFLOP/step: XLA's cost analysis of the compiled step, plus k - 1 further delta steps at "
        f"{delta_step_flops / 1e9:.4f} GFLOP each (XLA counts a loop's body once)")
  print("flop_vs_no_delta, vs_no_delta: GFLOP/step and s/step over the no-delta row's; "
        "vs_(k+1)x_no_delta: s/step over k + 1 times the no-delta s/step (the thesis' estimate)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
