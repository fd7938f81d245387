"""The systems of the thesis as tasks the training loop drives, by name (`config.task`)."""

from __future__ import annotations

import importlib

from uncertainty_jax.tasks.base import Task

# name -> (module, class).
TASKS = {
    "video_pred": ("uncertainty_jax.tasks.video_pred", "VideoPredictionTask"),
    "ebgan": ("uncertainty_jax.tasks.ebgan", "EBGANTask"),
    "linearize": ("uncertainty_jax.tasks.linearize", "LinearizeTask"),
    "disentangle": ("uncertainty_jax.tasks.disentangle", "DisentangleTask"),
    "ladder": ("uncertainty_jax.tasks.ladder", "LadderTask"),
}


def get_task(config) -> Task:
  """Builds the task named by `config.task`, which validates the rest of the config."""
  if config.task not in TASKS:
    raise ValueError(f"task: unknown task {config.task!r}; valid: {sorted(TASKS)}")
  module, cls = TASKS[config.task]
  return getattr(importlib.import_module(module), cls)(config)


__all__ = ["TASKS", "Task", "get_task"]
