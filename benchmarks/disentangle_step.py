"""Images per second of chapter 5's train step (Algorithm 5.1), per variant and decoder form.

    python -m benchmarks.disentangle_step                        # every variant, both decoders
    python -m benchmarks.disentangle_step --variants=sprites --steps=5
    python -m benchmarks.disentangle_step --tiny --steps=1       # for the tests

Each row is the loop's compiled step (`uncertainty_jax.training.steps.make_train_step`: the
discriminator's update on (y1, id1) against Dec(z2, s1), then the generator's on eq. 5.7),
compiled ahead of time (its compile time is reported apart), for one `experiments/disentangle.py`
variant and one form of the decoder's fractionally strided convolutions: `subpixel` (the
library's, `layers.SubpixelConvTranspose`) or `flax` (`nn.ConvTranspose`), the same function.
An example is a triplet (y1, y1', y2), so images/s counts three images per example.

All rows of a variant run on the same batches: `--warmup` untimed steps each, then `--steps`
rounds in which every row takes one step, the order rotating from round to round so that a change
in the machine's load falls on all rows alike. A row's time is the median of its steps; the ratio
column is the `flax` row's step time over the `subpixel` row's, measured in the same run.
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
from experiments import disentangle as disentangle_config
from uncertainty_jax.models import disentangle as models
from uncertainty_jax.tasks import disentangle as disentangle_task
from uncertainty_jax.training import loop
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib

FLAGS = flags.FLAGS
IMAGES_PER_EXAMPLE = 3
DEFAULT_VARIANTS = ("sprites", "pretrained_s", "pretrained_s_no_adv", "toys", "digits")
COLUMNS = ("variant", "decoder", "batch", "compile_s", "s/step", "images/s", "GFLOP/step",
           "GFLOP/s", "flax/subpixel")


def define_flags() -> None:
  """The command's flags; defined when it runs, so that importing this module defines none."""
  flags.DEFINE_list("variants", list(DEFAULT_VARIANTS), "Variants of experiments/disentangle.py.")
  flags.DEFINE_list("decoders", list(models.DECONVS), "Decoder forms to time: subpixel, flax.")
  flags.DEFINE_integer("batch_size", None, "Examples (triplets) per step; default the config's.")
  flags.DEFINE_integer("steps", 5, "Timed steps per row (after the warm-up).")
  flags.DEFINE_integer("warmup", 1, "Untimed steps per row after compiling.")
  flags.DEFINE_bool("tiny", False, "The variants' tiny configs, for the tests.")


def _config(variant: str):
  c = disentangle_config.get_config(f"{variant},tiny" if FLAGS.tiny else variant)
  c.unlock()
  if FLAGS.batch_size is not None:
    c.batch_size = FLAGS.batch_size
  loop.resolve_budget(c)
  # A pretrained f_s costs the same per step however long it was pretrained.
  c.pretrain_steps = 2
  c.lock()
  return c


class _Row:
  """One timed configuration: its task, compiled step, state and timings."""

  def __init__(self, task, decoder: str, mesh, batch: dict, key: jax.Array):
    self.decoder = decoder
    self.task = task
    self.task.decoder = models.Decoder(task.layers, task.sample_shape[0], task.sample_shape[2],
                                       deconv=decoder)
    self.state = jax.jit(task.init_state, out_shardings=sharding_lib.replicated(mesh))(
        jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    self.compiled = steps_lib.make_train_step(task, mesh).lower(self.state, batch, key).compile()
    self.compile_s = time.perf_counter() - t0
    self.flops = compiled_flops(self.compiled)
    self.times: list[float] = []

  def step(self, batch: dict, key: jax.Array) -> float:
    t0 = time.perf_counter()
    self.state, metrics = self.compiled(self.state, batch, key)
    jax.block_until_ready(metrics)
    return time.perf_counter() - t0


def _variant_rows(variant: str, mesh, workdir: str) -> tuple[list[_Row], int]:
  config = _config(variant)
  sharding_lib.check_batch_size(config.batch_size, mesh)
  rows = []
  dataset = None
  for decoder in FLAGS.decoders:
    task = disentangle_task.DisentangleTask(config)
    if dataset is None:
      dataset = task.make_dataset(sharding_lib.batch_sharding(mesh))
      rounds = FLAGS.warmup + FLAGS.steps
      batches = [dataset.train_batch(i) for i in range(rounds)]
      keys = [jax.random.fold_in(jax.random.PRNGKey(config.seed), i) for i in range(rounds)]
    else:
      task._bind(dataset)  # pylint: disable=protected-access
    # A pretrained f_s is timed as trained for a few steps: its cost is in `prepare`, not the step.
    task.prepare(os.path.join(workdir, variant))
    rows.append(_Row(task, decoder, mesh, batches[0], keys[0]))
    print(f"{variant}/{decoder}: compile {rows[-1].compile_s:.1f} s", flush=True)
  for i in range(FLAGS.warmup):
    for row in rows:
      row.step(batches[i], keys[i])
  for r in range(FLAGS.steps):
    i = FLAGS.warmup + r
    for row in rows[r % len(rows):] + rows[:r % len(rows)]:
      row.times.append(row.step(batches[i], keys[i]))
  return rows, config.batch_size


def main(argv):
  del argv
  import tempfile  # pylint: disable=g-import-not-at-top
  for variant in FLAGS.variants:
    if variant not in disentangle_config.VARIANTS:
      raise app.UsageError(f"--variants: unknown variant {variant!r}; valid: "
                           f"{list(disentangle_config.VARIANTS)}")
  for decoder in FLAGS.decoders:
    if decoder not in models.DECONVS:
      raise app.UsageError(f"--decoders: unknown decoder {decoder!r}; valid: "
                           f"{list(models.DECONVS)}")
  if FLAGS.steps < 1 or FLAGS.warmup < 0:
    raise app.UsageError(f"--steps {FLAGS.steps} must be >= 1 and --warmup {FLAGS.warmup} >= 0")
  mesh = sharding_lib.make_mesh()
  devices = jax.devices()
  print(f"machine: {cpu_model()}, {os.cpu_count()} cores; backend {jax.default_backend()}, "
        f"{len(devices)} x {devices[0].device_kind}; jax {jax.__version__}")
  print(f"load average {os.getloadavg()[0]:.2f} at start")
  results = []
  with tempfile.TemporaryDirectory() as workdir:
    for variant in FLAGS.variants:
      rows, batch = _variant_rows(variant, mesh, workdir)
      results.append((variant, rows, batch))
  print(f"{FLAGS.steps} timed steps per row (median), after {FLAGS.warmup} warm-up; "
        f"load average {os.getloadavg()[0]:.2f} at the end")
  print(" ".join(f"{c:>13s}" if i else f"{c:20s}" for i, c in enumerate(COLUMNS)))
  for variant, rows, batch in results:
    times = {row.decoder: statistics.median(row.times) for row in rows}
    for row in rows:
      s = times[row.decoder]
      ratio = (f"{times['flax'] / times['subpixel']:.2f}"
               if row.decoder == "subpixel" and "flax" in times else "-")
      print(f"{variant:20s} {row.decoder:>13s} {batch:13d} {row.compile_s:13.1f} {s:13.4f} "
            f"{IMAGES_PER_EXAMPLE * batch / s:13.1f} {row.flops / 1e9:13.3f} "
            f"{row.flops / 1e9 / s:13.2f} {ratio:>13s}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
