"""Chapter 6 as a task: energy-based GANs (EBGAN, EBGAN-PT) and the probabilistic GAN baseline.

The discriminator of an EBGAN is an auto-encoder whose reconstruction error is the energy (eq.
6.60); it is trained with the margin loss of eq. 6.1 and the generator with eq. 6.2, plus the
pulling-away term (eq. 6.61) weighted by `lambda_pt` for EBGAN-PT. `framework='gan'` trains the same
generator against a binary classifier with the cross-entropy losses of chapter 4 instead. Real and
generated samples go through the discriminator as separate minibatches, as DCGAN does.

Evaluation draws `num_eval_samples` samples from fixed latents and scores them: on labelled data,
the tweaked inception score I' (eq. 6.62) from a classifier trained on the same data (`prepare`
loads it, or trains and saves it the first time); on the 2-D mixtures of `toy2d`, the modes
covered; everywhere, the discriminator's view of test data and of samples.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax import data as data_lib
from uncertainty_jax import losses
from uncertainty_jax import metrics as metrics_lib
from uncertainty_jax.models import ebgan as models
from uncertainty_jax.tasks.base import Task
from uncertainty_jax.training import schedules
from uncertainty_jax.training import sharding as sharding_lib
from uncertainty_jax.training.state import NetworkState
from uncertainty_jax.training.state import PairState

FRAMEWORKS = ("ebgan", "gan")
MODELS = ("fc", "conv")
LATENTS = ("uniform", "normal")
_REDUCTIONS = ("mean", "sum")
# Test images the discriminator scores at each evaluation.
_EVAL_REAL = 512


def validate_config(config) -> None:
  """Checks the fields this task reads; each error names the field, its value and what is accepted."""
  data_lib.check_image_dataset_name(config.dataset)
  if config.framework not in FRAMEWORKS:
    raise ValueError(f"framework: unknown framework {config.framework!r}; valid: {list(FRAMEWORKS)}")
  if config.model not in MODELS:
    raise ValueError(f"model: unknown model {config.model!r}; valid: {list(MODELS)}")
  if config.latent not in LATENTS:
    raise ValueError(f"latent: unknown distribution {config.latent!r}; valid: {list(LATENTS)}")
  if config.energy_reduction not in _REDUCTIONS:
    raise ValueError(f"energy_reduction: {config.energy_reduction!r} is not one of "
                     f"{list(_REDUCTIONS)}")
  if not (isinstance(config.margin, (int, float)) and config.margin > 0
          and np.isfinite(config.margin)):
    raise ValueError(f"margin: {config.margin!r} must be a positive number (thesis 6.2.1; 10 in "
                     f"the MNIST grid search)")
  if not config.lambda_pt >= 0:
    raise ValueError(f"lambda_pt: {config.lambda_pt!r} must be >= 0 (0.1 for EBGAN-PT)")
  if not 0 <= config.dropout_d < 1:
    raise ValueError(f"dropout_d: {config.dropout_d!r} is not a rate in [0, 1)")
  for field in ("latent_dim", "num_eval_samples", "num_sample_images"):
    if config[field] < 1:
      raise ValueError(f"{field}: {config[field]!r} must be a positive integer")
  if config.lambda_pt > 0 and config.batch_size < 2:
    raise ValueError(f"batch_size: {config.batch_size} is too small for the pulling-away term, "
                     f"which averages over pairs of samples; use at least 2")
  schedules.check_pair_optimizers(config)


class EBGANTask(Task):
  """Thesis chapter 6: EBGAN, EBGAN-PT and GAN, fully connected or convolutional, from one config.

  Args:
    config: an `experiments/ebgan.py` config.
    sweepable: build optimizers whose kind and learning rate are state arrays
      (`schedules.sweepable_optimizer`), for `training.sweep`; the losses then also read
      `dropout_d` and `lambda_pt` from `PairState.hparams`.
  """

  def __init__(self, config, *, sweepable: bool = False):
    validate_config(config)
    super().__init__(config)
    self.sweepable = sweepable
    self.sample_shape = tuple(data_lib.image_sample_shape(config))
    c = config
    if c.model == "fc":
      self.generator = models.FCGenerator(
          c.num_layers_g, c.size_g, self.sample_shape, batch_norm=c.batch_norm_g,
          output="linear" if c.dataset == "toy2d" else "tanh")
      if c.framework == "ebgan":
        self.discriminator = models.FCAutoEncoder(c.num_layers_d, c.size_d, dropout=c.dropout_d,
                                                  batch_norm=c.batch_norm_d)
      else:
        self.discriminator = models.FCDiscriminator(c.num_layers_d, c.size_d, dropout=c.dropout_d,
                                                    batch_norm=c.batch_norm_d)
    else:
      size, channels = self.sample_shape[0], self.sample_shape[-1]
      if len(self.sample_shape) != 3 or size not in (32, 64):
        raise ValueError(f"model: 'conv' generates 32x32 or 64x64 images; dataset {c.dataset!r} "
                         f"gives samples of shape {self.sample_shape}; use model='fc' or "
                         f"image_size 32 or 64")
      self.generator = models.DCGANGenerator(c.g_features, image_size=size, channels=channels)
      if c.framework == "ebgan":
        self.discriminator = models.ConvAutoEncoder(tuple(c.d_features), channels=channels,
                                                    batch_norm=c.batch_norm_d)
      else:
        self.discriminator = models.DCGANDiscriminator(tuple(c.gan_d_features))
    self.classifier = None
    self._data_score = None

  @property
  def is_ebgan(self) -> bool:
    return self.config.framework == "ebgan"

  # --- data, classifier and state -------------------------------------------------------------

  def make_dataset(self, sharding):
    return data_lib.get_image_dataset(self.config, sharding)

  def prepare(self, workdir: str) -> None:
    """Loads the I' classifier (or trains and saves it) when the data has labels."""
    c = self.config
    if c.dataset == "toy2d" or self.classifier is not None:
      return
    from uncertainty_jax.evaluation import classifier as classifier_lib  # pylint: disable=g-import-not-at-top
    directory = c.classifier_dir or os.path.join(workdir, "classifier")
    mesh = sharding_lib.make_mesh()
    dataset = data_lib.get_image_dataset(c, sharding_lib.batch_sharding(mesh))
    if dataset.num_classes is None:
      return
    self.classifier = classifier_lib.load_or_train_classifier(
        directory, dataset.arrays("train"), dataset.arrays("test"),
        num_classes=dataset.num_classes, meta={"dataset": c.dataset},
        steps=c.classifier_steps, seed=0, log=logging.info)
    # The score of the data itself: what a generator that matched it would get.
    self._data_score = float(metrics_lib.tweaked_inception_score(
        self.classifier.probs(dataset.arrays("test")["images"])))
    logging.info("I' classifier in %s: test accuracy %.4f, I' of the test images %.3f", directory,
                 self.classifier.test_accuracy, self._data_score)

  def _optimizer(self, side: str):
    c = self.config
    name, lr = c[f"{side}_optimizer"], c[f"{side}_learning_rate"]
    if self.sweepable:
      return schedules.sweepable_optimizer(name, lr, adam_beta1=c.adam_beta1,
                                           field=f"{side}_optimizer")
    return schedules.make_optimizer(name, lr, adam_beta1=c.adam_beta1, field=f"{side}_optimizer")

  def init_state(self, rng):
    g_rng, d_rng = jax.random.split(rng)
    z = jnp.zeros((2, self.config.latent_dim))
    x = jnp.zeros((2, *self.sample_shape))
    generator = NetworkState.create(self.generator.init(g_rng, z), self._optimizer("g"))
    discriminator = NetworkState.create(self.discriminator.init(d_rng, x), self._optimizer("d"))
    hparams = None
    if self.sweepable:
      hparams = {"dropout_d": jnp.asarray(self.config.dropout_d, jnp.float32),
                 "lambda_pt": jnp.asarray(self.config.lambda_pt, jnp.float32)}
    return PairState(step=jnp.zeros((), jnp.int32), generator=generator,
                     discriminator=discriminator, hparams=hparams)

  # --- the networks ---------------------------------------------------------------------------

  def sample_latent(self, rng: jax.Array, n: int) -> jax.Array:
    """`[n, latent_dim]` latents: uniform in [-1, 1] (DCGAN's choice) or standard normal."""
    shape = (n, self.config.latent_dim)
    if self.config.latent == "uniform":
      return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)
    return jax.random.normal(rng, shape)

  def generate(self, variables, z: jax.Array) -> jax.Array:
    """Samples from latents `z` `[n, latent_dim]`, batch norm on its running averages."""
    return self.generator.apply(variables, z, train=False)

  def _generate_train(self, params, net: NetworkState, n: int, rng):
    z = self.sample_latent(rng, n)
    variables = {"params": params}
    if net.batch_stats:
      variables["batch_stats"] = net.batch_stats
      x, updates = self.generator.apply(variables, z, train=True, mutable=["batch_stats"])
      return x, updates["batch_stats"]
    return self.generator.apply(variables, z, train=True), {}

  def _discriminate(self, params, batch_stats, x, rng, dropout_rate):
    """D in training mode: `((reconstruction, code) or logits, updated batch statistics)`."""
    variables = {"params": params}
    kwargs = dict(train=True, rngs={"dropout": rng})
    if self.config.model == "fc":
      kwargs["dropout_rate"] = dropout_rate
    if batch_stats:
      variables["batch_stats"] = batch_stats
      out, updates = self.discriminator.apply(variables, x, mutable=["batch_stats"], **kwargs)
      return out, updates["batch_stats"]
    return self.discriminator.apply(variables, x, **kwargs), {}

  def energy(self, x, reconstruction):
    return losses.autoencoder_energy(x, reconstruction, self.config.energy_reduction)

  # --- losses ---------------------------------------------------------------------------------

  def discriminator_loss(self, params, state, batch, rng):
    """Eq. 6.1 (EBGAN, f the identity) or the cross-entropy of eq. 4.2 (GAN), real then fake."""
    real = batch["images"]
    z_rng, real_rng, fake_rng = jax.random.split(rng, 3)
    gen = state.generator
    fake, _ = self._generate_train(gen.params, gen, real.shape[0], z_rng)
    fake = jax.lax.stop_gradient(fake)
    rate = state.hparam("dropout_d", self.config.dropout_d)
    stats = state.discriminator.batch_stats
    out_real, stats = self._discriminate(params, stats, real, real_rng, rate)
    out_fake, stats = self._discriminate(params, stats, fake, fake_rng, rate)
    if self.is_ebgan:
      e_real = self.energy(real, out_real[0])
      e_fake = self.energy(fake, out_fake[0])
      loss = losses.ebgan_discriminator_loss(e_real, e_fake, self.config.margin)
      metrics = {"d/energy_real": jnp.mean(e_real), "d/energy_fake": jnp.mean(e_fake),
                 "d/hinge_active": jnp.mean((e_fake < self.config.margin).astype(jnp.float32))}
    else:
      loss = losses.discriminator_bce_loss(out_real, out_fake)
      metrics = {"d/real_prob": jnp.mean(jax.nn.sigmoid(out_real)),
                 "d/fake_prob": jnp.mean(jax.nn.sigmoid(out_fake))}
    return loss, (metrics, stats)

  def generator_loss(self, params, state, batch, rng):
    """Eq. 6.2 plus `lambda_pt` times the pulling-away term (eq. 6.61), or the GAN's eq. 4.4."""
    n = batch["images"].shape[0]
    z_rng, d_rng = jax.random.split(rng)
    fake, g_stats = self._generate_train(params, state.generator, n, z_rng)
    disc = state.discriminator
    rate = state.hparam("dropout_d", self.config.dropout_d)
    # D's batch statistics from this pass are discarded: only D's own update changes them.
    out, _ = self._discriminate(disc.params, disc.batch_stats, fake, d_rng, rate)
    if self.is_ebgan:
      reconstruction, code = out
      e_fake = self.energy(fake, reconstruction)
      pt = losses.pulling_away_term(code)
      lambda_pt = state.hparam("lambda_pt", self.config.lambda_pt)
      loss = losses.ebgan_generator_loss(e_fake) + lambda_pt * pt
      metrics = {"g/energy_fake": jnp.mean(e_fake), "g/pt": pt}
    else:
      loss = losses.generator_bce_loss(out)
      metrics = {"g/fake_prob": jnp.mean(jax.nn.sigmoid(out))}
    return loss, (metrics, g_stats)

  # --- evaluation and samples -----------------------------------------------------------------

  def eval_latents(self, n: int) -> jax.Array:
    """The same `n` latents at every evaluation of a run (from the seed)."""
    return self.sample_latent(jax.random.PRNGKey(self.config.seed + 1), n)

  def samples(self, state: PairState, n: int) -> np.ndarray:
    """`n` samples from the evaluation latents, on the host, `[n, *sample_shape]`."""
    generate = self.jitted("generate", self.generate)
    return np.asarray(generate(state.generator.variables, self.eval_latents(n)))

  def _discriminator_scores(self, variables, x):
    """Per-sample energy (EBGAN) or probability of being real (GAN) of a batch of only real or
    only generated samples, as D sees them in training: batch norm on the batch's own statistics
    (the running averages mix real and generated batches), without dropout."""
    kwargs = {"mutable": ["batch_stats"]} if "batch_stats" in variables else {}
    if self.config.model == "fc":
      kwargs["dropout_rate"] = 0.0
    out = self.discriminator.apply(variables, x, train=True, **kwargs)
    out = out[0] if kwargs.get("mutable") else out
    if self.is_ebgan:
      return self.energy(x, out[0])
    return jax.nn.sigmoid(out)

  def score_samples(self, samples: np.ndarray, dataset: Any) -> dict[str, float]:
    """Sample quality without the discriminator: I' and classes on labelled data, modes on toy2d."""
    results = {}
    if not np.all(np.isfinite(samples)):
      return {"finite_samples": 0.0}
    if self.config.dataset == "toy2d":
      from uncertainty_jax.evaluation import mode_coverage  # pylint: disable=g-import-not-at-top
      cover = mode_coverage.mode_coverage(samples, dataset.modes, dataset.mode_std)
      results.update({k: float(cover[k]) for k in ("modes_covered", "high_quality_fraction",
                                                   "kl_to_uniform", "num_modes")})
    elif self.classifier is not None:
      probs = self.classifier.probs(samples)
      results["inception_score"] = float(metrics_lib.tweaked_inception_score(probs))
      counts = np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1])
      results["classes_covered"] = float(np.sum(counts >= 0.01 * len(samples)))
      results["classifier_accuracy"] = float(self.classifier.test_accuracy)
      results["inception_score_data"] = self._data_score
    return results

  def evaluate(self, state, dataset, mesh):
    c = self.config
    samples = self.samples(state, c.num_eval_samples)
    results = self.score_samples(samples, dataset)
    scores = self.jitted("scores", self._discriminator_scores)
    real = dataset.arrays("test")["images"][:_EVAL_REAL]
    name = "energy" if self.is_ebgan else "real_prob"
    d_vars = state.discriminator.variables
    results[f"d/{name}_test"] = float(np.mean(scores(d_vars, jnp.asarray(real))))
    if np.all(np.isfinite(samples)):
      fake = jnp.asarray(samples[:_EVAL_REAL])
      results[f"d/{name}_samples"] = float(np.mean(scores(d_vars, fake)))
    return results

  def write_samples(self, state, dataset, mesh, sample_dir, step, writer):
    c = self.config
    if c.dataset == "toy2d":
      points = self.samples(state, c.num_eval_samples)
      if jax.process_index() != 0:
        return
      from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
      path = os.path.join(sample_dir, f"samples_{step:08d}.png")
      ebgan_figures.toy2d_scatter({f"{c.variant}, step {step}": points}, dataset.modes, path,
                                  std=dataset.mode_std)
      return
    images = self.samples(state, c.num_sample_images)
    if jax.process_index() != 0:
      return
    from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
    from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
    # Upscaled so that an 8x8 digit is 32 pixels wide.
    grid = ebgan_figures.sample_grid(images, scale=max(1, 32 // images.shape[1]))
    visualize.save_png(os.path.join(sample_dir, f"samples_{step:08d}.png"), grid)
    writer.write_images(step, {"samples/generated": grid})

