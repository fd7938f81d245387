"""Datasets: embedded generators that need no download, and TensorFlow Datasets loaders.

`get_video_dataset(config, sharding)` resolves `config.dataset` through `VIDEO_DATASETS` (the
embedded renderers, TFDS' UCF101 and Moving MNIST, and `video_files`: any folder of videos), and
`get_image_dataset(config, sharding)` through `IMAGE_DATASETS`. TFDS-backed datasets import
TensorFlow only when chosen.
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
    "video_files": ("uncertainty_jax.data.video_files", "from_config"),
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


# name -> (module, dotted name of a factory taking (config, sharding)); see data/images.py.
IMAGE_DATASETS = {
    "digits": ("uncertainty_jax.data.images", "Digits.from_config"),
    "mnist": ("uncertainty_jax.data.images", "Mnist.from_config"),
    "photo_patches": ("uncertainty_jax.data.images", "PhotoPatches.from_config"),
    "celeb_a": ("uncertainty_jax.data.images", "CelebA.from_config"),
    "lsun_bedroom": ("uncertainty_jax.data.images", "LsunBedroom.from_config"),
    "toy2d": ("uncertainty_jax.data.toy2d", "Toy2D.from_config"),
}


def check_image_dataset_name(name: str) -> None:
  if name not in IMAGE_DATASETS:
    raise ValueError(f"dataset: unknown dataset {name!r}; valid: {sorted(IMAGE_DATASETS)}")


def image_sample_shape(config) -> tuple[int, ...]:
  """The shape of one example of `config.dataset`, known before the dataset is built."""
  check_image_dataset_name(config.dataset)
  if config.dataset == "toy2d":
    return (2,)
  if config.dataset in ("digits", "mnist"):
    module, factory = IMAGE_DATASETS[config.dataset]
    return tuple(getattr(importlib.import_module(module), factory.split(".")[0]).sample_shape)
  size = config.get("image_size", 64)
  return (size, size, 3)


def get_image_dataset(config, sharding):
  """Builds the `images.ImageDataset` named by `config.dataset`, batches sharded with `sharding`."""
  check_image_dataset_name(config.dataset)
  module, factory = IMAGE_DATASETS[config.dataset]
  target = importlib.import_module(module)
  for name in factory.split("."):
    target = getattr(target, name)
  return target(config, sharding)


__all__ = ["IMAGE_DATASETS", "VIDEO_DATASETS", "VideoDataset", "check_image_dataset_name",
           "check_video_dataset_name", "get_image_dataset", "image_sample_shape", "get_video_dataset",
           "make_global_batch"]
