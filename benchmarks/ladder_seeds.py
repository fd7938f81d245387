"""Seeds of one Table 6.2 setting trained together under `jax.vmap`, against one at a time.

    python -m benchmarks.ladder_seeds --seeds=15 --steps=200
    python -m benchmarks.ladder_seeds --model=ebgan_ladder --seeds=15 --steps=200
    python -m benchmarks.ladder_seeds --tiny --seeds=2 --steps=2     # shrunken model, for the tests

`--model` is `ladder` or `ebgan_ladder` of `experiments/ebgan.py` (the embedded digits, 100
labels). Both ways run `uncertainty_jax.tasks.ladder.train_seeds`, which compiles one vmapped
step: once with every seed (what `experiments.reproduce --table=6.2` does), then once per seed
with that seed alone, on the same batches. Each way's wall time includes initialisation,
compilation (one compile per call) and the per-seed evaluation; the step rate counts the steps
after each call's first (compiling) one. Prints seconds, seed-steps per second, and the ratios.
"""

from __future__ import annotations

import time

import jax
from absl import app
from absl import flags

from benchmarks.common import cpu_model
from experiments import ebgan as ebgan_config
from uncertainty_jax import tasks
from uncertainty_jax.tasks import ladder

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "ladder", ["ladder", "ebgan_ladder"], "Which Table 6.2 model.")
flags.DEFINE_integer("seeds", 15, "Seeds of the setting.")
flags.DEFINE_integer("steps", 200, "Training steps per seed.")
flags.DEFINE_bool("tiny", False, "The shrunken `tiny` model (for the tests).")


def _time(task, seeds, steps) -> tuple[float, float]:
  """(wall seconds of the call, seconds of its steps after the first)."""
  start = time.perf_counter()
  out = ladder.train_seeds(task, seeds, steps)
  return time.perf_counter() - start, out["step_seconds"]


def main(argv):
  del argv
  if FLAGS.seeds < 1 or FLAGS.steps < 2:
    raise app.UsageError("--seeds must be positive and --steps at least 2")
  config = ebgan_config.get_config(FLAGS.model + (",tiny" if FLAGS.tiny else ""))
  task = tasks.get_task(config)
  seeds = list(range(FLAGS.seeds))
  print(f"{FLAGS.model}, layer sizes {tuple(config.layer_sizes)}, batch "
        f"{config.labelled_batch_size} labelled + {config.unlabelled_batch_size} unlabelled, "
        f"{len(seeds)} seeds x {FLAGS.steps} steps")
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} "
        f"({jax.default_backend()}); cpu: {cpu_model()}")
  rows = []
  for name, groups in (("vmap", [seeds]), ("one at a time", [[s] for s in seeds])):
    times = [_time(task, g, FLAGS.steps) for g in groups]
    total = sum(t for t, _ in times)
    rate = len(seeds) * (FLAGS.steps - 1) / max(sum(s for _, s in times), 1e-9)
    rows.append((name, total, rate))
    print(f"{name:>14}: {total:8.1f} s in all, {rate:9.1f} seed-steps/s after compilation",
          flush=True)
  (_, t_v, r_v), (_, t_1, r_1) = rows
  print(f"ratio vmap / one at a time: {t_1 / t_v:.2f}x faster in all, {r_v / r_1:.2f}x the "
        f"step rate")


if __name__ == "__main__":
  app.run(main)
