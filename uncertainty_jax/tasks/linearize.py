"""Chapter 3 as a task: linearizing auto-encoders trained to predict the third frame of a triplet.

One network (encoder, predictor, decoder; `models.linearize`) is trained with eq. 3.6: the L2 error
of the predicted third frame minus lambda times the cosine of successive code differences (on the
phases alone with phase pooling). With `latent_dim > 0`, each example's delta (eq. 3.11) is inferred
inside the jitted step by `latent_steps` gradient steps from 0 (Algorithm 3.1), then the model is
updated with delta held fixed (eq. 3.13). There is no discriminator: the loop's generator update is
the whole step.

Evaluation, on the dataset's fixed test triplets and trajectories:

* `test/prediction`: eq. 3.6's first term (half the summed squared error of a predicted frame),
  and `test/mse`, its per-pixel mean squared error; with delta, inferred from the target as in
  training, and also at delta = 0 (`..._zero_delta`). `test/mse_copy_last` is the error of
  copying frame 2, for scale.
* `test/cosine`: the mean cosine between successive code differences along test trajectories at
  t = 0, 1, 2, 3 (1 is perfectly linear), on the codes the curvature penalty sees.
* `interp/mse_t{t}` and `interp/mse`: frames decoded from codes interpolated and extrapolated at
  t in {0, 1/2, 1, 3/2, 2, 5/2, 3} from the codes of frames 1 and 2 (`models.linearize.code_at`),
  against the true renders at those t (Figures 3.5-3.7); `interp/sharpness`, their mean sharpness
  difference (eq. 4.8) to the truth.
* With delta on data with skips: `skip/accuracy`, the test accuracy of a logistic regression
  (scikit-learn) that predicts the skip s from the inferred delta, fitted on deltas of training
  triplets (`skip_probe_examples` of them; the thesis reports 94%), and `skip/chance`, the
  majority-class rate.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax import metrics as metrics_lib
from uncertainty_jax.losses import linearize as losses
from uncertainty_jax.models import linearize as models
from uncertainty_jax.tasks.base import Task
from uncertainty_jax.training import schedules
from uncertainty_jax.training.state import NetworkState
from uncertainty_jax.training.state import PairState

# The times of Figures 3.5-3.7; frames 1, 2 and 3 of a triplet are t = 1, 2, 3.
INTERP_TIMES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
CORRECTIONS = ("thesis", "residual")
# name -> (module, factory taking (config, sharding)).
DATASETS = {
    "rotating_toys": ("uncertainty_jax.data.rotations", "RotationTriplets.from_config"),
    "rigid_photos": ("uncertainty_jax.data.rigid_triplets", "from_config"),
    "smallnorb": ("uncertainty_jax.data.smallnorb", "SmallNorbTriplets.from_config"),
}
_MAX_VAL = 2.0  # images in [-1, 1]
# Datasets of one channel; `rigid_photos` gives `channels` (1 or 3).
_GRAYSCALE = ("rotating_toys", "smallnorb")
# Datasets of trajectories, whose third frame can skip a step (3.3.3).
_SKIP_DATASETS = ("rotating_toys", "smallnorb")


def validate_config(config) -> None:
  """Checks the fields this task reads; each error names the field, its value and what is accepted."""
  models.architecture(config.architecture, config.width_multiplier or 1.0)
  if config.dataset not in DATASETS:
    raise ValueError(f"dataset: unknown dataset {config.dataset!r}; valid: {sorted(DATASETS)}")
  if config.dataset in _GRAYSCALE and config.channels != 1:
    raise ValueError(f"channels: {config.channels}, but dataset {config.dataset!r} is grayscale; "
                     f"set --config.channels=1")
  if not config.beta >= 0:
    raise ValueError(f"beta: {config.beta!r} must be >= 0 (the phase-pooling softmax "
                     f"temperature of eq. 3.7; 0 is average pooling)")
  if not config.lambda_curvature >= 0:
    raise ValueError(f"lambda_curvature: {config.lambda_curvature!r} must be >= 0")
  if not isinstance(config.latent_dim, int) or config.latent_dim < 0:
    raise ValueError(f"latent_dim: {config.latent_dim!r} must be an integer >= 0 (0: no delta)")
  if not isinstance(config.latent_steps, int) or config.latent_steps < 0:
    raise ValueError(f"latent_steps: {config.latent_steps!r} must be an integer >= 0 (k of "
                     f"Algorithm 3.1)")
  if not config.latent_learning_rate > 0:
    raise ValueError(f"latent_learning_rate: {config.latent_learning_rate!r} must be positive")
  if config.latent_correction not in CORRECTIONS:
    raise ValueError(f"latent_correction: {config.latent_correction!r} is not one of "
                     f"{list(CORRECTIONS)}")
  if config.skip and config.dataset not in _SKIP_DATASETS:
    raise ValueError(f"skip: the frame-skip data of 3.3.3 comes from trajectories, which dataset "
                     f"{config.dataset!r} does not have; use one of {list(_SKIP_DATASETS)}, or "
                     f"skip=False")
  if config.latent_dim and config.architecture == "deep1":
    raise ValueError("latent_dim: Deep 1 learns its extrapolation, so delta (eq. 3.11) has no "
                     "fixed prediction to correct; use deep2 or deep3, or latent_dim=0")
  if config.optimizer not in schedules.OPTIMIZERS:
    raise ValueError(f"optimizer: unknown optimizer {config.optimizer!r}; valid: "
                     f"{list(schedules.OPTIMIZERS)}")
  if not config.learning_rate > 0:
    raise ValueError(f"learning_rate: {config.learning_rate!r} must be positive")


def get_triplet_dataset(config, sharding):
  """The triplet dataset named by `config.dataset`."""
  import importlib  # pylint: disable=g-import-not-at-top
  module, factory = DATASETS[config.dataset]
  target = importlib.import_module(module)
  for name in factory.split("."):
    target = getattr(target, name)
  return target(config, sharding)


class LinearizeTask(Task):
  """Thesis chapter 3: Shallow 1, 2 and Deep 1, 2, 3, with or without delta, from one config."""

  def __init__(self, config):
    validate_config(config)
    super().__init__(config)
    c = config
    self.arch = models.architecture(c.architecture, c.width_multiplier, channels=c.channels)
    self.model = models.LinearizingAutoencoder(self.arch, image_size=c.image_size, beta=c.beta,
                                               latent_dim=c.latent_dim)

  @property
  def phase_pooled(self) -> bool:
    return self.arch.pool is not None

  # --- data and state -------------------------------------------------------------------------

  def make_dataset(self, sharding):
    return get_triplet_dataset(self.config, sharding)

  def init_state(self, rng):
    c = self.config
    x = jnp.zeros((1, c.image_size, c.image_size, self.arch.channels))
    variables = self.model.init(rng, x, method=self.model.init_all)
    tx = schedules.make_optimizer(c.optimizer, c.learning_rate, adam_beta1=c.adam_beta1,
                                  field="optimizer")
    return PairState(step=jnp.zeros((), jnp.int32),
                     generator=NetworkState.create(variables, tx), discriminator=None)

  # --- the model ------------------------------------------------------------------------------

  def _encode_frames(self, params, frames):
    """Codes of each frame of `[B, T, S, S, C]`, encoded as one batch: a list of T codes."""
    b, t = frames.shape[:2]
    # Frame-major rows: frame t of example i is row t * B + i.
    stacked = jnp.swapaxes(frames, 0, 1).reshape((t * b,) + frames.shape[2:])
    code = self.model.apply({"params": params}, stacked, method=self.model.encode)
    return [jax.tree_util.tree_map(lambda x, i=i: x[i * b:(i + 1) * b], code) for i in range(t)]

  def _curvature_codes(self, codes):
    return [models.flat_code(c, phases_only=self.phase_pooled) for c in codes]

  def _predict(self, params, code1, code2, delta):
    return self.model.apply({"params": params}, code1, code2, delta,
                            self.config.latent_correction, method=self.model.predict_code)

  def _decode(self, params, code):
    return self.model.apply({"params": params}, code, method=self.model.decode)

  def infer_delta(self, params, code1, code2, target):
    """Delta after `latent_steps` gradient steps from 0 on each example's prediction error."""
    c = self.config
    params = jax.lax.stop_gradient(params)
    code1, code2, target = jax.lax.stop_gradient((code1, code2, target))

    def error(delta):
      pred = self._decode(params, self._predict(params, code1, code2, delta))
      return losses.prediction_error(pred, target)

    delta0 = jnp.zeros((target.shape[0], c.latent_dim), target.dtype)
    return losses.infer_latent(error, delta0, c.latent_steps, c.latent_learning_rate)

  def generator_loss(self, params, state, batch, rng):
    del state, rng
    c = self.config
    frames = batch["frames"]
    codes = self._encode_frames(params, frames)
    target = frames[:, 2]
    delta = None
    metrics = {}
    if c.latent_dim:
      delta = self.infer_delta(params, codes[0], codes[1], target)
      metrics["g/delta_norm"] = jnp.mean(jnp.linalg.norm(delta, axis=-1))
    pred = self._decode(params, self._predict(params, codes[0], codes[1], delta))
    z1, z2, z3 = self._curvature_codes(codes)
    loss, terms = losses.linearization_loss(pred, target, z1, z2, z3, c.lambda_curvature)
    metrics.update({f"g/{k}": v for k, v in terms.items()})
    return loss, (metrics, {})

  # --- evaluation -----------------------------------------------------------------------------

  def predict_triplets(self, params, frames, infer: bool):
    """`[B, 3, S, S, C]` -> (prediction of frame 3 `[B, S, S, C]`, delta `[B, L]` or None)."""
    def fn(params, frames):
      codes = self._encode_frames(params, frames)
      delta = None
      if self.config.latent_dim:
        delta = (self.infer_delta(params, codes[0], codes[1], frames[:, 2]) if infer else
                 jnp.zeros((frames.shape[0], self.config.latent_dim), frames.dtype))
      return self._decode(params, self._predict(params, codes[0], codes[1], delta)), delta
    return self.jitted(("predict", infer), fn)(params, frames)

  def interpolate(self, params, frames):
    """Frames decoded at `INTERP_TIMES` from the codes of frames 1 and 2: `[B, 7, S, S, C]`."""
    def fn(params, frames):
      # Frame 3 is not needed: the codes of frames 1 and 2 define the line.
      code1, code2 = self._encode_frames(params, frames[:, :2])
      outs = []
      for t in INTERP_TIMES:
        if self.arch.predictor == "learned":
          code = self._predict(params, models.code_at(code1, code2, t - 2.0),
                               models.code_at(code1, code2, t - 1.0), None)
        else:
          code = models.code_at(code1, code2, t)
        outs.append(self._decode(params, code))
      return jnp.stack(outs, axis=1)
    return self.jitted("interpolate", fn)(params, frames)

  def trajectory_cosine(self, params, trajectories):
    """Mean cosine of successive code differences at t = 0, 1, 2, 3 of `[B, 7, S, S, C]`."""
    def fn(params, traj):
      z = self._curvature_codes(self._encode_frames(params, traj[:, 0::2]))  # t = 0, 1, 2, 3
      return 0.5 * (losses.curvature_cosine(z[0], z[1], z[2])
                    + losses.curvature_cosine(z[1], z[2], z[3]))
    return self.jitted("cosine", fn)(params, trajectories)

  def evaluate(self, state, dataset, mesh):
    c = self.config
    params = jax.device_get(state.generator.params)
    sums: dict[str, float] = {}
    count = 0
    deltas, skips = [], []
    for batch in dataset.test_batches(c.eval_batch_size):
      frames = jnp.asarray(batch["frames"])
      target = frames[:, 2]
      n = frames.shape[0]
      count += n
      variants = [("", True)] + ([("_zero_delta", False)] if c.latent_dim else [])
      for suffix, infer in variants:
        pred, delta = self.predict_triplets(params, frames, infer)
        err = np.asarray(losses.prediction_error(pred, target))
        sums[f"test/prediction{suffix}"] = sums.get(f"test/prediction{suffix}", 0.0) + err.sum()
        mse = np.mean(np.square(np.asarray(pred) - np.asarray(target)), axis=(1, 2, 3))
        sums[f"test/mse{suffix}"] = sums.get(f"test/mse{suffix}", 0.0) + mse.sum()
        if suffix == "":
          copy = np.mean(np.square(np.asarray(frames[:, 1]) - np.asarray(target)), axis=(1, 2, 3))
          sums["test/mse_copy_last"] = sums.get("test/mse_copy_last", 0.0) + copy.sum()
        if infer and delta is not None:
          deltas.append(np.asarray(delta))
          skips.append(np.asarray(batch["skip"]))
    results = {k: float(v) / count for k, v in sums.items()}

    traj = jnp.asarray(dataset.test_trajectories(c.num_interp_clips))
    triplets = traj[:, 2::2]  # t = 1, 2, 3
    interp = np.asarray(self.interpolate(params, triplets))
    truth = np.asarray(traj)
    per_t = np.mean(np.square(interp - truth), axis=(2, 3, 4))  # [B, 7]
    for i, t in enumerate(INTERP_TIMES):
      results[f"interp/mse_t{t:g}"] = float(per_t[:, i].mean())
    results["interp/mse"] = float(per_t.mean())
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    results["interp/sharpness"] = float(np.mean(np.asarray(metrics_lib.sharpness_difference(
        jnp.asarray(flat(interp)), jnp.asarray(flat(truth)), _MAX_VAL))))
    results["test/cosine"] = float(np.mean(np.asarray(self.trajectory_cosine(params, traj))))

    if c.latent_dim and c.skip:
      results.update(self._skip_probe(params, dataset, np.concatenate(deltas),
                                      np.concatenate(skips)))
    results["num_test"] = float(count)
    return results

  def _skip_probe(self, params, dataset, test_deltas, test_skips):
    """Logistic regression of the skip on delta: fitted on training triplets, scored on test."""
    from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
    c = self.config
    train_deltas, train_skips = [], []
    step = 0
    while sum(len(d) for d in train_deltas) < c.skip_probe_examples:
      # Steps far beyond training give triplets the model has not seen.
      batch = dataset.train_batch(2 ** 31 - 1 - step)
      step += 1
      frames = jnp.asarray(jax.device_get(batch["frames"]))
      _, delta = self.predict_triplets(params, frames, True)
      train_deltas.append(np.asarray(delta))
      train_skips.append(np.asarray(jax.device_get(batch["skip"])))
    x, y = np.concatenate(train_deltas), np.concatenate(train_skips)
    majority = float(max(np.mean(test_skips), 1 - np.mean(test_skips)))
    if len(np.unique(y)) < 2:
      return {"skip/accuracy": majority, "skip/chance": majority}
    probe = LogisticRegression(max_iter=1000).fit(x, y)
    return {"skip/accuracy": float(probe.score(test_deltas, test_skips)),
            "skip/train_accuracy": float(probe.score(x, y)), "skip/chance": majority}

  # --- samples --------------------------------------------------------------------------------

  def write_samples(self, state, dataset, mesh, sample_dir, step, writer):
    if jax.process_index() != 0:
      return
    from uncertainty_jax.evaluation import linearize_figures  # pylint: disable=g-import-not-at-top
    from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
    c = self.config
    params = jax.device_get(state.generator.params)
    traj = np.asarray(dataset.test_trajectories(c.num_sample_clips))
    interp = np.asarray(self.interpolate(params, jnp.asarray(traj[:, 2::2])))
    grid = linearize_figures.interpolation_grid(traj, interp, INTERP_TIMES)
    visualize.save_png(os.path.join(sample_dir, f"interpolation_{step:08d}.png"), grid)
    images = {"samples/interpolation": grid}
    if self.arch.kind == "shallow":
      filters = self.decoder_filters(params)
      visualize.save_png(os.path.join(sample_dir, f"decoder_filters_{step:08d}.png"), filters)
      images["samples/decoder_filters"] = filters
    writer.write_images(step, images)

  def decoder_filters(self, params):
    """Figure 3.3: the shallow decoder's filters, one per unpooled map, by pool group."""
    from uncertainty_jax.evaluation import linearize_figures  # pylint: disable=g-import-not-at-top
    kernel = np.asarray(params["dec_conv0"]["kernel"])
    return linearize_figures.decoder_filters(kernel, self.arch.pool.feature)

