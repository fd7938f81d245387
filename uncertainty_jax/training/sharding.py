"""Data parallelism with `jax.jit` and explicit shardings over a one-axis device mesh."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Any = None) -> Mesh:
  """A mesh with one 'data' axis over `devices` (all devices of all processes by default)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters and optimizer states)."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the devices and the processes."""
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise ValueError(f"batch_size: {batch_size} is not a positive multiple of the device count {n}; "
                     f"use a multiple of {n}")
  if batch_size % jax.process_count():
    raise ValueError(f"batch_size: {batch_size} is not divisible by the process count "
                     f"{jax.process_count()}")
