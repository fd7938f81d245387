"""Chapter 4 as a task: multi-scale adversarial next-frame prediction (Algorithm 4.1).

The generator sees `num_input_frames` frames and predicts the next at every scale; with
`lambda_adv > 0` one discriminator per scale is trained against it. The generator's loss is eq. 4.6,
with each weight following its schedule. Evaluation predicts the 1st frame and, recursively, the
2nd, on full-size test frames.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax import data as data_lib
from uncertainty_jax import losses
from uncertainty_jax.evaluation import video_pred as evaluation
from uncertainty_jax.evaluation import visualize
from uncertainty_jax.layers import image_pyramid
from uncertainty_jax.models import video_pred as models
from uncertainty_jax.tasks.base import Task
from uncertainty_jax.training import schedules
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training.state import NetworkState
from uncertainty_jax.training.state import PairState

_CHANNELS = 3


def _uses_adversary(config) -> bool:
  final = config.lambda_adv_final
  return config.lambda_adv > 0 or (final is not None and final > 0)


def validate_config(config) -> None:
  """Checks the fields this task reads; each error names the field, its value and what is accepted."""
  if config.model not in models.ARCHITECTURES:
    raise ValueError(f"model: unknown model {config.model!r}; valid: {sorted(models.ARCHITECTURES)}")
  data_lib.check_video_dataset_name(config.dataset)
  max_scales = len(models.ARCHITECTURES[config.model][0])
  if not 1 <= config.num_scales <= max_scales:
    raise ValueError(f"num_scales: {config.num_scales} is not in 1..{max_scales}")
  factor = 2 ** (config.num_scales - 1)
  for field in ("image_size", "test_frame_size"):
    size = config[field]
    if size <= 0 or size % factor:
      raise ValueError(f"{field}: {size} is not a positive multiple of 2^(num_scales-1) = {factor}; "
                       f"try {max(factor, (size // factor) * factor)}")
  if config.test_frame_size < config.image_size:
    raise ValueError(f"test_frame_size: {config.test_frame_size} is smaller than image_size "
                     f"{config.image_size}")
  if config.dataset == "video_files":
    if not config.get("video_dir"):
      raise ValueError("video_dir: dataset 'video_files' reads a folder of videos; set "
                       "--config.video_dir=PATH (a folder, searched recursively, or a glob)")
    short_side = config.video_short_side
    if short_side != 0 and short_side < max(config.image_size, factor):
      raise ValueError(f"video_short_side: {short_side} is smaller than image_size "
                       f"{config.image_size}; use 0 (native size) or at least "
                       f"{max(config.image_size, factor)}")
  if config.num_input_frames < 1:
    raise ValueError(f"num_input_frames: {config.num_input_frames} must be at least 1")
  if config.test_future_frames < 2:
    raise ValueError(f"test_future_frames: {config.test_future_frames} must be at least 2 (the "
                     f"evaluation scores the 1st and 2nd predicted frames)")
  if not config.flow_mask_threshold >= 0:
    raise ValueError(f"flow_mask_threshold: {config.flow_mask_threshold} must be >= 0 (pixels per "
                     f"frame)")
  if config.d_loss_reduction not in ("mean", "sum"):
    raise ValueError(f"d_loss_reduction: {config.d_loss_reduction!r} is not 'mean' or 'sum'")
  if config.num_mode_samples < 1:
    raise ValueError(f"num_mode_samples: {config.num_mode_samples} must be at least 1")
  if config.p <= 0:
    raise ValueError(f"p: {config.p} must be positive (1 for L1, 2 for L2)")
  if config.alpha < 1:
    raise ValueError(f"alpha: {config.alpha} must be at least 1")
  for side in ("g", "d"):
    name = config[f"{side}_optimizer"]
    if name not in schedules.OPTIMIZERS:
      raise ValueError(f"{side}_optimizer: unknown optimizer {name!r}; valid: "
                       f"{list(schedules.OPTIMIZERS)}")
    kind = config[f"{side}_lr_schedule"]
    if kind not in schedules.SCHEDULES:
      raise ValueError(f"{side}_lr_schedule: unknown schedule {kind!r}; valid: "
                       f"{list(schedules.SCHEDULES)}")
  for term in ("adv", "lp", "gdl"):
    kind = config[f"lambda_{term}_schedule"]
    if kind not in schedules.SCHEDULES:
      raise ValueError(f"lambda_{term}_schedule: unknown schedule {kind!r}; valid: "
                       f"{list(schedules.SCHEDULES)}")


class VideoPredictionTask(Task):
  """Thesis chapter 4: Model 1, Model 2 and the baselines of Table 4.3, from one config."""

  def __init__(self, config):
    validate_config(config)
    super().__init__(config)
    gen_specs, disc_specs = models.architecture(config.model, config.num_scales,
                                                config.width_multiplier)
    self.generator = models.MultiScaleGenerator(
        gen_specs, out_channels=_CHANNELS, batch_norm=config.batch_norm,
        noise_std=config.generator_noise_std)
    self.adversarial = _uses_adversary(config)
    self.discriminator = models.MultiScaleDiscriminator(
        disc_specs, batch_norm=config.batch_norm,
        per_frame_first_layer=config.per_frame_discriminator) if self.adversarial else None
    total = config.total_steps
    self._weights = {
        term: schedules.make_schedule(config[f"lambda_{term}_schedule"], config[f"lambda_{term}"],
                                      config[f"lambda_{term}_final"], total,
                                      field=f"lambda_{term}_schedule")
        for term in ("adv", "lp", "gdl")}
    self._predict_cache = {}

  # --- data and state -------------------------------------------------------------------------

  def make_dataset(self, sharding):
    return data_lib.get_video_dataset(self.config, sharding)

  def _optimizer(self, side: str):
    c = self.config
    lr = schedules.make_schedule(c[f"{side}_lr_schedule"], c[f"{side}_learning_rate"],
                                 c[f"{side}_final_learning_rate"], c.total_steps,
                                 field=f"{side}_lr_schedule")
    return schedules.make_optimizer(c[f"{side}_optimizer"], lr, adam_beta1=c.adam_beta1,
                                    field=f"{side}_optimizer")

  def init_state(self, rng):
    c = self.config
    g_rng, d_rng = jax.random.split(rng)
    inputs = jnp.zeros((1, c.num_input_frames, c.image_size, c.image_size, _CHANNELS))
    g_vars = self.generator.init({"params": g_rng, "noise": g_rng}, inputs, train=False)
    generator = NetworkState.create(g_vars, self._optimizer("g"))
    discriminator = None
    if self.adversarial:
      preds = image_pyramid(inputs[:, -1], c.num_scales)  # shapes of the generator's outputs
      d_vars = self.discriminator.init(d_rng, inputs, preds, train=False)
      discriminator = NetworkState.create(d_vars, self._optimizer("d"))
    return PairState(step=jnp.zeros((), jnp.int32), generator=generator,
                     discriminator=discriminator)

  # --- losses ---------------------------------------------------------------------------------

  def _split(self, batch):
    frames = batch["frames"]
    m = self.config.num_input_frames
    return frames[:, :m], frames[:, m]

  def _generate(self, params, net: NetworkState, inputs, rng, train: bool = True):
    """The generator's predictions in training mode, and its updated batch statistics."""
    variables = {"params": params}
    if net.batch_stats:
      variables["batch_stats"] = net.batch_stats
      preds, updates = self.generator.apply(variables, inputs, train=train, rngs={"noise": rng},
                                            mutable=["batch_stats"])
      return preds, updates["batch_stats"]
    return self.generator.apply(variables, inputs, train=train, rngs={"noise": rng}), {}

  def _discriminate(self, params, batch_stats, inputs, frames):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
      logits, updates = self.discriminator.apply(variables, inputs, frames, train=True,
                                                 mutable=["batch_stats"])
      return logits, updates["batch_stats"]
    return self.discriminator.apply(variables, inputs, frames, train=True), {}

  def discriminator_loss(self, params, state, batch, rng):
    """Eq. 4.2 summed over scales (and over or averaged on the minibatch, per `d_loss_reduction`).

    Real and fake frames go through D as separate minibatches.
    """
    inputs, target = self._split(batch)
    gen = state.generator
    fake, _ = self._generate(gen.params, gen, inputs, rng)
    fake = [jax.lax.stop_gradient(f) for f in fake]
    real = image_pyramid(target, self.config.num_scales)
    stats = state.discriminator.batch_stats
    real_logits, stats = self._discriminate(params, stats, inputs, real)
    fake_logits, stats = self._discriminate(params, stats, inputs, fake)
    # Algorithm 4.1 sums the loss over the minibatch; 'mean' divides it by the batch size.
    scale = inputs.shape[0] if self.config.d_loss_reduction == "sum" else 1
    metrics, total = {}, 0.0
    for k, (r, f) in enumerate(zip(real_logits, fake_logits)):
      loss_k = scale * losses.discriminator_bce_loss(r, f)
      metrics[f"d/adv/scale_{k}"] = loss_k
      metrics[f"d/real_prob/scale_{k}"] = jnp.mean(jax.nn.sigmoid(r))
      metrics[f"d/fake_prob/scale_{k}"] = jnp.mean(jax.nn.sigmoid(f))
      total = total + loss_k
    return total, (metrics, stats)

  def generator_loss(self, params, state, batch, rng):
    """Eq. 4.6: weighted adversarial (eq. 4.4), Lp (eq. 4.1) and GDL (eq. 4.5) terms over scales."""
    c = self.config
    inputs, target = self._split(batch)
    preds, g_stats = self._generate(params, state.generator, inputs, rng)
    targets = image_pyramid(target, c.num_scales)
    fake_logits = None
    if self.adversarial:
      disc = state.discriminator
      # D's batch statistics from this pass are discarded: only D's own update changes them.
      fake_logits, _ = self._discriminate(disc.params, disc.batch_stats, inputs, preds)
    weights = {term: fn(state.step) for term, fn in self._weights.items()}
    total, terms = losses.combined_generator_loss(
        preds, targets, fake_logits, lambda_adv=weights["adv"], lambda_lp=weights["lp"], p=c.p,
        lambda_gdl=weights["gdl"], alpha=c.alpha)
    metrics = {f"g/{k}": v for k, v in terms.items() if k != "total"}
    metrics.update({f"lambda/{term}": w for term, w in weights.items()})
    return total, (metrics, g_stats)

  # --- inference, evaluation, samples ---------------------------------------------------------

  def predictor(self, mesh, num_frames: int, *, sample: bool = False):
    """A jitted `(generator_variables, inputs [B, m, H, W, C]) -> [B, num_frames, H, W, C]`.

    With `sample=True` it takes a key after the inputs and draws the generator's noise.
    """
    key = (id(mesh), num_frames, sample)
    if key not in self._predict_cache:
      repl = sharding_lib.replicated(mesh)
      if sample:
        fn = lambda variables, inputs, rng: evaluation.predict_frames(
            self.generator, variables, inputs, num_frames=num_frames, rng=rng)
        shardings = (repl, repl, repl)
      else:
        fn = functools.partial(evaluation.predict_frames, self.generator, num_frames=num_frames)
        shardings = (repl, repl)
      self._predict_cache[key] = jax.jit(fn, in_shardings=shardings, out_shardings=repl)
    return self._predict_cache[key]

  def evaluate(self, state, dataset, mesh):
    c = self.config
    variables = state.generator.variables
    predict = self.predictor(mesh, 2)
    sample = None
    if c.generator_noise_std > 0:
      draw = self.predictor(mesh, 1, sample=True)
      key = jax.random.PRNGKey(c.seed + 1)  # the same draws at every evaluation
      sample = lambda inputs, i: draw(variables, inputs, jax.random.fold_in(key, i))
    return evaluation.evaluate(
        lambda inputs: predict(variables, inputs), dataset.test_batches(c.eval_batch_size),
        num_input_frames=c.num_input_frames, mesh=mesh, flow_threshold=c.flow_mask_threshold,
        mode_probs=getattr(dataset, "mode_probs", None), sample=sample,
        num_samples=c.num_mode_samples)

  def predict_test_clips(self, state, dataset, mesh, num_clips: int,
                         num_frames: int | None = None):
    """The first `num_clips` test clips and the generator's recursive predictions for them.

    Returns:
      `(frames [b, T, H, W, C], predictions [b, n, H, W, C])` on the host, with `n = num_frames`
      or, by default, every frame of the clip after the inputs.
    """
    frames = next(iter(dataset.test_batches(num_clips)))["frames"][:num_clips]
    m = self.config.num_input_frames
    n = frames.shape[1] - m if num_frames is None else num_frames
    inputs = evaluation.replicate(frames[:, :m], mesh)
    return frames, np.asarray(self.predictor(mesh, n)(state.generator.variables, inputs))

  def write_samples(self, state, dataset, mesh, sample_dir, step, writer):
    c = self.config
    frames, preds = self.predict_test_clips(state, dataset, mesh, c.num_sample_clips)
    m = c.num_input_frames
    if jax.process_index() != 0:
      return
    grid = visualize.prediction_grid(frames[:, :m], preds, frames[:, m:])
    visualize.save_png(os.path.join(sample_dir, f"predictions_{step:08d}.png"), grid)
    animation = visualize.prediction_animation(frames[:, :m], preds, frames[:, m:])
    visualize.save_gif(os.path.join(sample_dir, f"predictions_{step:08d}.gif"), animation)
    writer.write_images(step, {"samples/predictions": grid})
