"""Trains or evaluates any system of the thesis from its config.

    python -m experiments.main --config=experiments/video_pred.py --workdir=runs/vp
    python -m experiments.main --config=experiments/video_pred.py:l1,tiny --workdir=/tmp/l1 \\
        --config.total_steps=20
    python -m experiments.main --config=experiments/video_pred.py --workdir=runs/vp --mode=eval

Running the same command on the same workdir resumes from the latest checkpoint. For several hosts,
pass `--jax_distributed` (or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID):
every process runs the same command and reads its share of the data.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file("config", None, "A config file, e.g. "
                                          "experiments/video_pred.py:model1.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train: train (resuming) and evaluate; eval: evaluate the latest "
                          "checkpoint.")
_DISTRIBUTED = flags.DEFINE_bool(
    "jax_distributed", False, "Call jax.distributed.initialize() (multi-host). Also on when "
    "JAX_COORDINATOR_ADDRESS is set.")
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not (_DISTRIBUTED.value or address):
    return
  kwargs = {}
  if address:
    kwargs = dict(coordinator_address=address,
                  num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                  process_id=int(os.environ["JAX_PROCESS_ID"]))
  # CPU-only clusters (and tests on one machine) need a collectives backend; accelerators ignore it.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  _initialize_distributed()
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  try:
    if _MODE.value == "eval":
      loop.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value)
    else:
      loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, CheckpointError, loop.NonFiniteLossError, ImportError,
          FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def run() -> None:
  """Entry point."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
