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
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
  except (ValueError, CheckpointError, loop.NonFiniteLossError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _one_line(e: BaseException) -> str:
  """The message of a flag-parsing error, without the config file's embedded traceback."""
  lines = [line.strip() for line in str(e).replace("\\n", "\n").splitlines() if line.strip()]
  for line in reversed(lines):
    match = re.match(r"^\w*(?:Error|Exception): (.*)$", line)
    if match:
      return match.group(1)
  return " ".join(line.strip("'\"") for line in lines) or type(e).__name__


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; a bad config, variant or override exits with a one-line error."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # A misspelled `--config.FIELD=...`: the locked config refuses the unknown field.
    overrides = " ".join(a.split("=")[0] for a in argv if a.startswith("--config."))
    hint = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', str(e))
    detail = (f'no config field "{hint.group(2)}"; did you mean "{hint.group(1)}"?' if hint else
              f"no such config field or a value of the wrong type ({_one_line(e)})")
    print(f"error: config override {overrides}: {detail}", file=sys.stderr)
  sys.exit(1)


def run() -> None:
  """Entry point."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
