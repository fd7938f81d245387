"""What every command of `experiments/` shares: flag parsing with one-line errors, and the
`VARIANT,MODIFIER,...` argument of the chapter configs."""

from __future__ import annotations

import json
import os
import re
import sys

from absl import flags

FLAGS = flags.FLAGS


def one_line(e: BaseException) -> str:
  """The message of a flag-parsing error, without the config file's embedded traceback."""
  lines = [line.strip() for line in str(e).replace("\\n", "\n").splitlines() if line.strip()]
  for line in reversed(lines):
    match = re.match(r"^\w*(?:Error|Exception): (.*)$", line)
    if match:
      return match.group(1)
  return " ".join(line.strip("'\"") for line in lines) or type(e).__name__


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; a bad config, variant or override exits with a one-line error."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # A misspelled `--config.FIELD=...`: the locked config refuses the unknown field.
    overrides = " ".join(a.split("=")[0] for a in argv if a.startswith("--config."))
    hint = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', str(e))
    detail = (f'no config field "{hint.group(2)}"; did you mean "{hint.group(1)}"?' if hint else
              f"no such config field or a value of the wrong type ({one_line(e)})")
    print(f"error: config override {overrides}: {detail}", file=sys.stderr)
  sys.exit(1)


def parse_config_arg(arg: str | None, variants, modifiers, default: str) -> tuple[str, set[str]]:
  """Splits a config's ARGS (`--config=FILE:ARGS`) into one variant and a set of modifiers.

  Raises:
    ValueError: an unknown word or more than one variant, listing the valid ones.
  """
  words = [w.strip() for w in (arg or "").split(",") if w.strip()]
  chosen = [w for w in words if w in variants]
  unknown = [w for w in words if w not in variants and w not in modifiers]
  if unknown or len(chosen) > 1:
    raise ValueError(
        f"config: {arg!r} is not a variant name plus optional modifiers; variants: "
        f"{sorted(variants)}, modifiers: {list(modifiers)}"
        + (f" (unknown: {unknown})" if unknown else " (more than one variant)"))
  return (chosen[0] if chosen else default), {w for w in words if w in modifiers}


def load_run_config(workdir: str, *, task: str, chapter: str, config_file: str, flag: str):
  """The config a run was trained with, from `<workdir>/config.json`.

  Args:
    workdir: the run's directory.
    task: the task the run must be of, e.g. 'video_pred'.
    chapter: how messages name it, e.g. 'chapter 4'.
    config_file: the `--config` that trains such a run, for the message when there is none.
    flag: the command's flag that named the workdir, for messages.

  Raises:
    ValueError: no `config.json`, or a run of another task.
  """
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{flag}: {workdir} has no config.json; train there first with "
                     f"python -m experiments.main --config={config_file} --workdir={workdir}")
  with open(path) as f:
    config = config_dict.ConfigDict(json.load(f))
  if config.get("task") != task:
    raise ValueError(f"{flag}: {workdir} holds a {config.get('task')!r} run, not a {chapter} "
                     f"({task}) one")
  return config
