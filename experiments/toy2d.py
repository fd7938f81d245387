"""Mode coverage of GAN, EBGAN and EBGAN-PT on 2-D mixtures of Gaussians with known modes.

    python -m experiments.toy2d --workdir=runs/toy2d --results_dir=results
    python -m experiments.toy2d --workdir=/tmp/toy --results_dir=/tmp/toy --tiny

The thesis argues from pictures that the pulling-away term helps against mode collapse (6.3.3,
6.3.5); this measures it where the modes are known: a ring of 8 Gaussians and a 5x5 grid of 25
(`uncertainty_jax.data.toy2d`). Every framework trains `--seeds` seeds together under `jax.vmap`
(EBGAN and EBGAN-PT share their architecture, so they are one sweep); each run's samples are scored
by `uncertainty_jax.evaluation.mode_coverage` (modes covered, fraction of samples within 3 std of
a mode). Writes `toy2d.md`, `toy2d.json` and `toy2d_<mixture>.png` (the first seed's samples) to
`--results_dir`; the per-run records stay in `--workdir`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

from absl import app
from absl import flags

from experiments import cli

FLAGS = flags.FLAGS
FRAMEWORKS = (("gan", "GAN"), ("ebgan", "EBGAN"), ("ebgan_pt", "EBGAN-PT"))


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "Directory for the per-run records (records.jsonl).")
  flags.DEFINE_string("results_dir", "results", "Where toy2d.md, .json and .png go.")
  flags.DEFINE_integer("seeds", 5, "Seeds per framework and mixture.")
  flags.DEFINE_integer("steps", None, "Training steps (default: the toy2d config's).")
  flags.DEFINE_list("mixtures", ["ring", "grid"], "Mixtures: ring (8 modes), grid (25 modes).")
  flags.DEFINE_bool("tiny", False, "A few steps of small models (for tests).")
  flags.mark_flags_as_required(["workdir"])


def _config(mixture: str, framework: str, tiny: bool, steps):
  from experiments import ebgan  # pylint: disable=g-import-not-at-top
  c = ebgan.get_config("toy2d,tiny" if tiny else "toy2d")
  with c.unlocked():
    c.toy_modes = mixture
    c.framework = "gan" if framework == "gan" else "ebgan"
    if steps is not None:
      c.total_steps = steps
    if c.total_steps is None:
      c.total_steps = c.budgets.cpu.total_steps
  return c


def run_mixture(mixture: str, num_seeds: int, tiny: bool, steps, log) -> dict:
  """Trains every framework's seeds on one mixture; returns {framework: [scores per seed]} and
  the first seed's samples."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from uncertainty_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.evaluation import mode_coverage  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.tasks import ebgan as ebgan_task  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  out = {"scores": {}, "samples": {}}
  dataset = None
  for family in ("gan", "ebgan"):
    config = _config(mixture, family, tiny, steps)
    if dataset is None:
      mesh = sharding_lib.make_mesh(jax.devices()[:1])
      dataset = data_lib.get_image_dataset(config, sharding_lib.batch_sharding(mesh))
      out["modes"], out["std"] = dataset.modes, dataset.mode_std
    names = ["gan"] if family == "gan" else ["ebgan", "ebgan_pt"]
    members, owners = [], []
    for name in names:
      for seed in range(num_seeds):
        members.append(sweep_lib.Member(
            seed=seed, optimizers={"g": (config.g_optimizer, config.g_learning_rate),
                                   "d": (config.d_optimizer, config.d_learning_rate)},
            hparams={"lambda_pt": 0.1 if name == "ebgan_pt" else 0.0}))
        owners.append(name)
    task = ebgan_task.EBGANTask(config, sweepable=True)
    t0 = time.time()
    result = sweep_lib.train_members(task, dataset, members, config.total_steps)
    z = task.eval_latents(config.num_eval_samples)
    samples = np.asarray(jax.jit(jax.vmap(task.generate, in_axes=(0, None)))(
        result.state.generator.variables, z))
    log(f"{mixture}: {', '.join(names)} x {num_seeds} seeds, {config.total_steps} steps, "
        f"{time.time() - t0:.0f} s")
    for i, (name, member) in enumerate(zip(owners, members)):
      if result.nonfinite[i] or not np.all(np.isfinite(samples[i])):
        score = {"diverged": True}
      else:
        cover = mode_coverage.mode_coverage(samples[i], dataset.modes, dataset.mode_std)
        score = {"diverged": False, "modes_covered": int(cover["modes_covered"]),
                 "high_quality_fraction": float(cover["high_quality_fraction"]),
                 "kl_to_uniform": float(cover["kl_to_uniform"])}
      out["scores"].setdefault(name, []).append({"seed": member.seed, **score})
      if member.seed == 0:
        out["samples"][name] = samples[i]
    out["steps"] = config.total_steps
  return out


def _mean_std(values):
  import numpy as np  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, np.float64)
  if not len(values):
    return "-"
  return f"{values.mean():.2f} ± {values.std():.2f}"


def table(results: dict) -> str:
  """The Markdown table: a row per framework, mean ± std over seeds per mixture."""
  mixtures = list(results)
  header = "| model | " + " | ".join(
      f"{m}: modes covered (of {len(results[m]['modes'])}) | {m}: samples near a mode"
      for m in mixtures) + " |"
  lines = [header, "|---" * (1 + 2 * len(mixtures)) + "|"]
  for name, title in FRAMEWORKS:
    cells = []
    for m in mixtures:
      runs = results[m]["scores"].get(name, [])
      ok = [r for r in runs if not r["diverged"]]
      diverged = len(runs) - len(ok)
      note = f" ({diverged} diverged)" if diverged else ""
      cells.append(_mean_std([r["modes_covered"] for r in ok]) + note)
      cells.append(_mean_std([r["high_quality_fraction"] for r in ok]))
    lines.append(f"| {title} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import writers  # pylint: disable=g-import-not-at-top
  bad = [m for m in FLAGS.mixtures if m not in ("ring", "grid")]
  if bad or not FLAGS.mixtures:
    print(f"error: --mixtures: {FLAGS.mixtures} must be a non-empty list of 'ring', 'grid'",
          file=sys.stderr)
    return 1
  if FLAGS.seeds < 1 or (FLAGS.steps is not None and FLAGS.steps < 1):
    print("error: --seeds and --steps must be positive integers", file=sys.stderr)
    return 1
  os.makedirs(FLAGS.workdir, exist_ok=True)
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  start = time.time()
  results = {}
  for mixture in FLAGS.mixtures:
    results[mixture] = run_mixture(mixture, FLAGS.seeds, FLAGS.tiny, FLAGS.steps,
                                   lambda m: print(m, flush=True))
  seconds = time.time() - start
  command = "python -m experiments.toy2d " + " ".join(
      a for a in sys.argv[1:] if not a.startswith(("--workdir", "--results_dir")))
  markdown = (f"# Mode coverage on 2-D mixtures of Gaussians\n\n"
              f"`{command.strip()}`: {FLAGS.seeds} seeds per model, "
              f"{results[FLAGS.mixtures[0]]['steps']} steps, mean ± std over seeds; a mode is "
              f"covered when at least one sample lies within 3 std of it, and a sample is near a "
              f"mode when it lies within 3 std of its nearest mode. {seconds / 60:.1f} min on "
              f"{platform.machine()} ({os.cpu_count()} CPUs).\n\n{table(results)}\n")
  summary = {m: {"modes": r["modes"].tolist(), "std": r["std"], "steps": r["steps"],
                 "scores": r["scores"]} for m, r in results.items()}
  with open(os.path.join(FLAGS.workdir, "records.json"), "w") as f:
    json.dump(writers.to_json_safe(summary), f, indent=1, allow_nan=False)
  with open(os.path.join(FLAGS.results_dir, "toy2d.json"), "w") as f:
    json.dump(writers.to_json_safe({"command": command.strip(), "seconds": seconds, **summary}),
              f, indent=1, allow_nan=False)
  with open(os.path.join(FLAGS.results_dir, "toy2d.md"), "w") as f:
    f.write(markdown)
  for mixture, r in results.items():
    panels = {f"{title}, {mixture}, seed 0": r["samples"][name] for name, title in FRAMEWORKS
              if name in r["samples"]}
    ebgan_figures.toy2d_scatter(panels, r["modes"], os.path.join(
        FLAGS.results_dir, f"toy2d_{mixture}.png"), std=r["std"])
  print(markdown)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
