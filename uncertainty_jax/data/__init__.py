"""Datasets: embedded generators that need no download, and TensorFlow Datasets loaders.

`get_video_dataset(config, sharding)` resolves `config.dataset` through `VIDEO_DATASETS`. TFDS-backed
datasets import TensorFlow only when chosen.
"""

from __future__ import annotations

import importlib

from uncertainty_jax.data.base import VideoDataset
from uncertainty_jax.data.base import make_global_batch

# name -> (module, dotted name of a factory taking (config, sharding)).
VIDEO_DATASETS = {
    "moving_photos": ("uncertainty_jax.data.moving_photos", "MovingPhotos.from_config"),
    "multimodal_photos": ("uncertainty_jax.data.multimodal_photos", "MultimodalPhotos.from_config"),
    "ucf101": ("uncertainty_jax.data.tfds_video", "ucf101_from_config"),
    "moving_mnist": ("uncertainty_jax.data.tfds_video", "moving_mnist_from_config"),
}


def check_video_dataset_name(name: str) -> None:
  if name not in VIDEO_DATASETS:
    raise ValueError(f"dataset: unknown dataset {name!r}; valid: {sorted(VIDEO_DATASETS)}")


def get_video_dataset(config, sharding) -> VideoDataset:
  """Builds the video dataset named by `config.dataset`, batches sharded with `sharding`."""
  check_video_dataset_name(config.dataset)
  module, factory = VIDEO_DATASETS[config.dataset]
  target = importlib.import_module(module)
  for name in factory.split("."):
    target = getattr(target, name)
  return target(config, sharding)


__all__ = ["VIDEO_DATASETS", "VideoDataset", "check_video_dataset_name", "get_video_dataset",
           "make_global_batch"]
