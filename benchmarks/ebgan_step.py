"""Measures the compiled chapter-6 train step (D update, then G update) of several EBGAN models.

    python -m benchmarks.ebgan_step --steps=10
    python -m benchmarks.ebgan_step --models=pytorch_arch,pytorch_arch:xla,pytorch --steps=10
    python -m benchmarks.ebgan_step --tiny --steps=2        # shrunken configs, for the tests

Models (`--models`, a comma-separated list; all by default):

* `ebgan`, `ebgan_pt`, `gan`: the fully connected variants of `experiments/ebgan.py` (8x8 digits,
  batch 64).
* `conv64_cpu`, `conv64_full`: the 64x64 `conv64` variant (DCGAN generator against the
  convolutional auto-encoder) with the widths of the `cpu` and `full` budgets, batch 64; with
  `:flax`, their fractionally strided convolutions are `nn.ConvTranspose` instead of the models'
  default sub-pixel form (`models.ebgan.DECONVS`; the same function).
* `pytorch_arch`: the architecture of the public PyTorch EBGAN that PERFORMANCE.md times
  (eriklindernoren/PyTorch-GAN, `implementations/ebgan/ebgan.py`): 32x32 grayscale, latent 62,
  batch 64. The networks are defined here (they are not part of the library) and dropped into the
  library's `EBGANTask`, so they train with its losses through the loop's step: energy = the
  per-sample MSE, margin 1, PT (lambda 0.1) on the 32-d embedding, Adam 2e-4 with beta1 0.5, on
  random images. Differences from that script's step, all in the losses and their order: there
  the G update runs first and the D update reuses its samples (here each update draws its own,
  one more generator forward pass); D's hinge is on the batch-mean energy; its PT leaves out the
  square of eq. 6.61; its G loss stops the gradient through the reconstruction target. Each
  nearest-neighbour upsampling and the 3x3 convolution after it are computed as
  `layers.UpsampleConv` on the low-resolution input (2.25x fewer multiply-adds, the same function);
  `pytorch_arch:xla` upsamples and convolves as written.
* `pytorch`: that script's iteration itself (`benchmarks/pytorch_ebgan.py`), timed in this run
  where torch is installed (it is not a dependency); the `pytorch_arch` rows are then given as
  ratios to it. Without torch, the figure measured on this project's CPU machines (PERFORMANCE.md)
  is printed as the reference instead.

Every JAX step is `uncertainty_jax.training.steps.make_train_step(task, mesh)`, compiled ahead of
time; the first step is a warm-up, then each timing is the median of `--steps` steps, each on a
fresh batch (the same protocol for the PyTorch iteration). Prints, per model: compile time, s/step,
images/s (batch / step time), model GFLOP per step (XLA's cost analysis of the compiled step) and
GFLOP/s.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import statistics
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app
from absl import flags

from benchmarks.common import compiled_flops
from experiments import ebgan as ebgan_config
from uncertainty_jax.layers import conv as conv_lib
from uncertainty_jax.tasks import ebgan as ebgan_task
from uncertainty_jax.training import loop
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training import steps as steps_lib

MODELS = ("ebgan", "ebgan_pt", "gan", "conv64_cpu", "conv64_cpu:flax", "conv64_full",
          "conv64_full:flax", "pytorch_arch", "pytorch_arch:xla", "pytorch")
# The public PyTorch EBGAN (PyTorch-GAN's ebgan.py, batch 64, 32x32x1) on this project's CPU
# machines (2 cores of an AMD EPYC Zen 4), PyTorch 2.13: PERFORMANCE.md, chapter 6.
PYTORCH_REFERENCE_S_PER_STEP = (0.54, 0.58)
PYTORCH_REFERENCE_IMAGES_PER_S = (111, 118)
PYTORCH_REFERENCE_BATCH = 64

_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models to time, from {list(MODELS)}.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed train steps per model (after one warm-up).")
_TINY = flags.DEFINE_bool("tiny", False, "The shrunken configs of the tests (`:tiny`; batch 8).")

# --- the PyTorch EBGAN's architecture, for this benchmark only ------------------------------------


def _conv3x3(features: int, stride: int = 1, method: str = "auto") -> nn.Conv:
  """Torch's Conv2d(kernel 3, padding 1); stride-1 ones computed by `layers.conv.same_conv2d`."""
  if stride == 1:
    return nn.Conv(features, (3, 3), padding="SAME", conv_general_dilated=functools.partial(
        conv_lib.same_conv_general_dilated, method))
  # Torch pads 1 on both sides; Flax's 'SAME' would pad (0, 1) at stride 2.
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)))


def _batch_norm(train: bool, epsilon: float) -> nn.BatchNorm:
  # `BatchNorm2d(n, 0.8)` in that script sets eps (not momentum) to 0.8; kept for the same function.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon)


class PortGenerator(nn.Module):
  """Linear(nz -> 128 x s/4 x s/4), 2 x [upsample x2, conv3x3, BN, leaky ReLU], conv3x3, tanh.

  Attributes:
    image_size: side of the square images (divisible by 4).
    channels: channels of the images.
    method: 'auto' computes each upsampling and the convolution after it as
      `layers.UpsampleConv` (on the low-resolution input, per output phase) and the last
      convolution with `layers.same_conv2d`'s pick; 'xla' upsamples and convolves as written. The
      parameters and the function are the same either way.
  """

  image_size: int = 32
  channels: int = 1
  method: str = "auto"

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, nz]` latents -> `[B, image_size, image_size, channels]` images in [-1, 1]."""
    s = self.image_size // 4
    x = nn.Dense(128 * s * s)(z).reshape(z.shape[0], s, s, 128)
    for width in (128, 64):
      # Torch's `Upsample(scale_factor=2)` (nearest), then `Conv2d(kernel 3, padding 1)`.
      x = conv_lib.UpsampleConv(width, 3, method=self.method)(x)
      x = nn.leaky_relu(_batch_norm(train, 0.8)(x), 0.2)
    last = self.method if self.method in conv_lib.SAME_METHODS else "auto"
    return jnp.tanh(_conv3x3(self.channels, method=last)(x))


class PortAutoEncoder(nn.Module):
  """Conv3x3 stride 2 (64) + ReLU, Linear to a 32-d embedding, BN, ReLU, Linear back, BN, ReLU,
  upsample x2, conv3x3 to the image channels.

  Attributes:
    image_size: side of the square images (even).
    channels: channels of the images.
    method: as `PortGenerator.method`, for the upsampling and the convolution after it.
  """

  image_size: int = 32
  channels: int = 1
  method: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`[B, H, W, C]` images -> reconstruction `[B, H, W, C]` and embedding `[B, 32]`."""
    b, s = x.shape[0], self.image_size // 2
    h = nn.relu(_conv3x3(64, stride=2)(x))
    code = nn.Dense(32)(h.reshape(b, -1))
    h = nn.relu(_batch_norm(train, 0.8)(code))
    h = nn.relu(_batch_norm(train, 1e-5)(nn.Dense(64 * s * s)(h)))
    up = conv_lib.UpsampleConv(self.channels, 3, method=self.method)
    return up(h.reshape(b, s, s, 64)), code


def _random_images(shape: tuple[int, ...]) -> Callable[[int], dict]:
  """`batch(step)`: uniform images in [-1, 1]; the step's cost does not depend on their content."""
  fn = jax.jit(lambda key: jax.random.uniform(key, shape, minval=-1.0, maxval=1.0))
  return lambda step: {"images": fn(jax.random.PRNGKey(step))}


# --- the models ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Bench:
  name: str
  description: str
  task: ebgan_task.EBGANTask
  batch: Callable[[int], dict]


def _config(variant: str, tiny: bool, budget: str = "auto"):
  config = ebgan_config.get_config(f"{variant},tiny" if tiny else variant)
  config.budget = budget
  loop.resolve_budget(config)
  return config


def _describe(config) -> str:
  c = config
  if c.model == "fc":
    return (f"{c.framework} fc g{c.num_layers_g}x{c.size_g} d{c.num_layers_d}x{c.size_d} "
            f"pt={c.lambda_pt:g} {c.dataset}")
  d = c.d_features if c.framework == "ebgan" else c.gan_d_features
  return (f"{c.framework} conv ngf={c.g_features} d={tuple(d)} pt={c.lambda_pt:g} "
          f"{c.image_size}x{c.image_size}")


def _build(name: str, tiny: bool, mesh) -> _Bench:
  sharding = sharding_lib.batch_sharding(mesh)
  if name in ("ebgan", "ebgan_pt", "gan"):
    config = _config(name, tiny)
  elif name.startswith("conv64_"):
    base, _, deconv = name.partition(":")
    config = _config("conv64", tiny, budget=base.split("_")[1])
    task = ebgan_task.EBGANTask(config)
    if deconv:
      task.generator = task.generator.clone(deconv=deconv)
      task.discriminator = task.discriminator.clone(deconv=deconv)
    return _Bench(name, _describe(config) + f" deconv={deconv or 'subpixel'}", task,
                  task.make_dataset(sharding).train_batch)
  else:
    method = name.partition(":")[2] or "auto"
    config = _config("conv64", tiny, budget="cpu")
    config.image_size = 32
    config.latent, config.latent_dim = "normal", 62
    config.margin, config.energy_reduction, config.lambda_pt = 1.0, "mean", 0.1
    config.g_learning_rate = config.d_learning_rate = 2e-4
    config.adam_beta1 = 0.5
    task = ebgan_task.EBGANTask(config)
    task.generator = PortGenerator(image_size=32, channels=1, method=method)
    task.discriminator = PortAutoEncoder(image_size=32, channels=1, method=method)
    task.sample_shape = (32, 32, 1)
    shape = (config.batch_size, *task.sample_shape)
    batch = _random_images(shape)
    return _Bench(name, f"PyTorch-GAN ebgan.py architecture 32x32x1, random images, "
                  f"upsampling convs: {method}", task,
                  lambda step: jax.device_put(batch(step), sharding))
  task = ebgan_task.EBGANTask(config)
  dataset = task.make_dataset(sharding)
  return _Bench(name, _describe(config), task, dataset.train_batch)


def _time(bench: _Bench, mesh, steps: int) -> dict:
  """Compiles and times `bench`'s train step; returns its row of the table."""
  key = jax.random.PRNGKey(bench.task.config.seed)
  state = jax.jit(bench.task.init_state, out_shardings=sharding_lib.replicated(mesh))(key)
  batch = bench.batch(0)
  t0 = time.perf_counter()
  compiled = steps_lib.make_train_step(bench.task, mesh).lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  state, metrics = compiled(state, batch, key)
  jax.block_until_ready(metrics)
  times = []
  for i in range(steps):
    batch = bench.batch(i + 1)
    jax.block_until_ready(batch)
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return {"compile_s": compile_s, "step_s": statistics.median(times),
          "batch": bench.task.config.batch_size, "flops": compiled_flops(compiled)}


def main(argv):
  del argv
  unknown = [m for m in _MODELS.value if m not in MODELS]
  if unknown or not _MODELS.value:
    raise app.UsageError(f"--models: {unknown or _MODELS.value} are not models; valid: "
                         f"{list(MODELS)}")
  if _STEPS.value < 1:
    raise app.UsageError(f"--steps: {_STEPS.value} must be a positive integer")
  mesh = sharding_lib.make_mesh()
  devices = jax.devices()
  print(f"devices: {len(devices)} x {devices[0].device_kind} ({jax.default_backend()})")
  print(f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
  torch_available = importlib.util.find_spec("torch") is not None
  rows = {}
  for name in dict.fromkeys(m for m in _MODELS.value if m != "pytorch"):
    bench = _build(name, _TINY.value, mesh)
    rows[name] = _time(bench, mesh, _STEPS.value)
    print(f"{name} ({bench.description}): compile {rows[name]['compile_s']:.1f} s", flush=True)

  width = max([14, *(len(name) for name in rows)])
  if rows or torch_available:
    print(f"{'model':{width}s} {'batch':>5s} {'compile_s':>9s} {'s/step':>8s} {'images/s':>9s} "
          f"{'GFLOP/step':>10s} {'GFLOP/s':>8s}")
  for name, r in rows.items():
    gflop = r["flops"] / 1e9
    print(f"{name:{width}s} {r['batch']:5d} {r['compile_s']:9.1f} {r['step_s']:8.4f} "
          f"{r['batch'] / r['step_s']:9.1f} {gflop:10.2f} {gflop / r['step_s']:8.1f}")

  torch_row = None
  if "pytorch" in _MODELS.value:
    if not torch_available:
      print("pytorch: not timed in this run (torch is not installed; `pip install torch` to time "
            "it here)")
    else:
      from benchmarks import pytorch_ebgan  # pylint: disable=g-import-not-at-top
      batch = 8 if _TINY.value else PYTORCH_REFERENCE_BATCH
      torch_row = pytorch_ebgan.time_iterations(batch_size=batch, steps=_STEPS.value)
      print(f"{'pytorch':{width}s} {torch_row['batch']:5d} {'-':>9s} {torch_row['step_s']:8.4f} "
            f"{torch_row['batch'] / torch_row['step_s']:9.1f} {'-':>10s} {'-':>8s}   "
            f"(PyTorch-GAN ebgan.py's iteration, torch {pytorch_ebgan.torch.__version__}, "
            f"{torch_row['threads']} threads)")
  arch_rows = {name: r for name, r in rows.items() if name.startswith("pytorch_arch")}
  if torch_row is not None:
    for name, r in arch_rows.items():
      ratio = (r["batch"] / r["step_s"]) / (torch_row["batch"] / torch_row["step_s"])
      print(f"ratio {name} / pytorch (images/s, this run): {ratio:.2f}")
    return
  lo, hi = PYTORCH_REFERENCE_S_PER_STEP
  ref = PYTORCH_REFERENCE_IMAGES_PER_S
  print(f"pytorch reference (not timed in this run): the public PyTorch EBGAN, batch "
        f"{PYTORCH_REFERENCE_BATCH}, measured on this project's CPU machine type (PERFORMANCE.md): "
        f"{lo:.2f}-{hi:.2f} s/step, {ref[0]:.0f}-{ref[1]:.0f} images/s")
  for name, r in arch_rows.items():
    rate = r["batch"] / r["step_s"]
    print(f"ratio {name} / pytorch reference (images/s): {rate / ref[1]:.2f}-"
          f"{rate / ref[0]:.2f}" + (" (tiny batch: not comparable)" if _TINY.value else ""))


if __name__ == "__main__":
  app.run(main)
