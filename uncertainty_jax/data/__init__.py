"""Datasets: embedded generators that need no download, and TensorFlow Datasets loaders.

`get_video_dataset(config, sharding)` resolves `config.dataset` through `VIDEO_DATASETS` (the
embedded renderers, TFDS' UCF101 and Moving MNIST, and `video_files`: any folder of videos), and
`get_image_dataset(config, sharding)` through `IMAGE_DATASETS`, and
`get_identity_dataset(config, sharding)` (chapter 5's same-identity pairs) through
`IDENTITY_DATASETS`. TFDS-backed datasets import TensorFlow only when chosen.
"""

from __future__ import annotations

import importlib

from uncertainty_jax.data.base import VideoDataset
from uncertainty_jax.data.base import make_global_batch

def _factory(entry: tuple[str, str]):
  """The callable named by a registry entry `(module, dotted name)`, its module imported now."""
  module, dotted = entry
  target = importlib.import_module(module)
  for name in dotted.split("."):
    target = getattr(target, name)
  return target


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
  return _factory(VIDEO_DATASETS[config.dataset])(config, sharding)


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
  return _factory(IMAGE_DATASETS[config.dataset])(config, sharding)


# name -> (module, dotted name of a factory taking (config, sharding)); see data/identity.py.
IDENTITY_DATASETS = {
    "sprites": ("uncertainty_jax.data.sprites", "Sprites.from_config"),
    "digits": ("uncertainty_jax.data.identity_sets", "DigitPairs.from_config"),
    "toys": ("uncertainty_jax.data.identity_sets", "ToyPairs.from_config"),
    "mnist": ("uncertainty_jax.data.identity_sets", "MnistPairs.from_config"),
    "smallnorb": ("uncertainty_jax.data.identity_sets", "SmallNorbPairs.from_config"),
    "dsprites": ("uncertainty_jax.data.identity_sets", "DSpritesPairs.from_config"),
    "shapes3d": ("uncertainty_jax.data.identity_sets", "Shapes3DPairs.from_config"),
}


def check_identity_dataset_name(name: str) -> None:
  """Raises unless `name` is a dataset with identity labels (chapter 5)."""
  if name not in IDENTITY_DATASETS:
    other = name in VIDEO_DATASETS or name in IMAGE_DATASETS
    why = " has no identity labels" if other else ": unknown dataset"
    raise ValueError(f"dataset: {name!r}{why}; chapter 5 needs images grouped by identity; "
                     f"valid: {sorted(IDENTITY_DATASETS)}")


def get_identity_dataset(config, sharding):
  """Builds the `identity.IdentityDataset` named by `config.dataset`, batches sharded with
  `sharding`."""
  check_identity_dataset_name(config.dataset)
  return _factory(IDENTITY_DATASETS[config.dataset])(config, sharding)


__all__ = ["IDENTITY_DATASETS", "IMAGE_DATASETS", "VIDEO_DATASETS", "VideoDataset",
           "check_identity_dataset_name", "check_image_dataset_name", "check_video_dataset_name",
           "get_identity_dataset", "get_image_dataset", "get_video_dataset", "image_sample_shape",
           "make_global_batch"]
