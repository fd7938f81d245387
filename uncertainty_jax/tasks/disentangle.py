"""Chapter 5 as a task: disentangling factors of variation with a VAE and a conditional GAN.

The generator is the encoder and decoder together; its loss is Algorithm 5.1's generative part,
eq. 5.7 on a batch of same-identity triplets `(y1, y1', y2)`:

    ||Dec(z1, s1) - y1||^2 / (2 sigma^2) + ||Dec(z1, s1') - y1||^2 / (2 sigma^2)
      + beta KL(N(mu1, sigma1) || N(0, I))
      + lambda [-log D(Dec(z1, s2), id2) - log D(Dec(z, s2), id2)],   z ~ N(0, I),

with `(s, mu, sigma) = Enc(y)`, `z1` sampled from the posterior of `y1` (the reparameterisation
trick) and sigma = `pixel_std`, the standard deviation of the Gaussian likelihood. The
discriminator learns to tell `(y1, id1)` from `(Dec(z2, s1), id1)`: the pose of one identity
decoded with the specified code of another, labelled with the identity it should show. The loop
updates the discriminator before the generator in each step (Algorithm 4.1's order; Algorithm
5.1 lists the generator first, a difference of one step's lag).

Ablations of 5.4.6: `pretrained_s` pretrains f_s with a two-layer classifier of the identity
attributes (`prepare` trains it, or loads it from `<workdir>/specified_classifier`), then trains
a second encoder for z with f_s frozen; `adversarial_weight=0` removes the discriminator (the
conditional VAE).

Evaluation (5.4, 5.4.6) on the dataset's fixed splits: reconstruction error; the swap error
against the rendered ground truth where the data has a renderer (`swap/mse`; thesis 0.014 with
pixels in [0, 1], reported as `swap/mse_01`); Table 5.2's probes (two-layer networks predicting
each probed factor from s and from z = mu, with the no-input chance rate); and, where the data
knows its pose factors, the mutual information gap and DCI of the code `[s, mu]` with the share
of each factor's importance held by s and by z.
"""

from __future__ import annotations

import json
import logging
import os
import jax
import jax.numpy as jnp
import numpy as np
import optax

from uncertainty_jax import data as data_lib
from uncertainty_jax import losses
from uncertainty_jax.models import disentangle as models
from uncertainty_jax.tasks.base import Task
from uncertainty_jax.training import schedules
from uncertainty_jax.training.state import NetworkState
from uncertainty_jax.training.state import PairState

SPECIFIED_DIR = "specified_classifier"
_META_FILE = "meta.json"


def validate_config(config) -> None:
  """Checks the fields this task reads; each error names the field, its value and what is accepted."""
  data_lib.check_identity_dataset_name(config.dataset)
  models.trunk(config.trunk, tuple(config.encoder_features))
  models.discriminator_layers(config.trunk, tuple(config.d_features))
  for field in ("s_dim", "z_dim", "batch_size", "eval_batch_size", "num_figure_images"):
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{field}: {value!r} must be a positive integer")
  if not config.pixel_std > 0:
    raise ValueError(f"pixel_std: {config.pixel_std!r} must be positive (the likelihood's "
                     f"standard deviation per pixel)")
  for field in ("kl_weight", "adversarial_weight"):
    if not config[field] >= 0:
      raise ValueError(f"{field}: {config[field]!r} must be >= 0")
  if config.pretrained_s and config.pretrain_steps < 1:
    raise ValueError(f"pretrain_steps: {config.pretrain_steps!r} must be a positive integer when "
                     f"pretrained_s is set")
  schedules.check_pair_optimizers(config)


def _split(x: jax.Array, n: int) -> list[jax.Array]:
  return jnp.split(x, n, axis=0)


class DisentangleTask(Task):
  """Thesis chapter 5 from an `experiments/disentangle.py` config."""

  def __init__(self, config):
    validate_config(config)
    super().__init__(config)
    c = config
    self.layers = models.trunk(c.trunk, tuple(c.encoder_features))
    self.d_layers = models.discriminator_layers(c.trunk, tuple(c.d_features))
    self._dataset = None
    self._specified = None  # pretrained f_s variables (pretrained_s)
    self._swap_truth_of = None  # the dataset `_swap_truth_images` were rendered for
    self._swap_truth_images = None

  # --- data and state -------------------------------------------------------------------------

  def make_dataset(self, sharding):
    dataset = data_lib.get_identity_dataset(self.config, sharding)
    self._bind(dataset)
    return dataset

  def _bind(self, dataset) -> None:
    """Builds the networks for the dataset's image shape and identity attributes."""
    if self._dataset is not None:
      return
    size, _, channels = dataset.sample_shape
    models.check_image_size(self.layers, size, "encoder")
    models.check_image_size(self.d_layers, size, "discriminator")
    c = self.config
    self.sample_shape = tuple(dataset.sample_shape)
    self.identity_sizes = tuple(dataset.identity_sizes)
    self.encoder = models.Encoder(self.layers, c.s_dim, c.z_dim, separate=c.pretrained_s)
    self.decoder = models.Decoder(self.layers, size, channels)
    self.discriminator = models.ConditionalDiscriminator(self.d_layers, self.identity_sizes)
    self._dataset = dataset

  def _ensure_dataset(self):
    if self._dataset is None:
      from uncertainty_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
      self.make_dataset(sharding_lib.batch_sharding(sharding_lib.make_mesh()))
    return self._dataset

  @property
  def adversarial(self) -> bool:
    return self.config.adversarial_weight > 0

  def _optimizer(self, side: str):
    c = self.config
    return schedules.make_optimizer(c[f"{side}_optimizer"], c[f"{side}_learning_rate"],
                                    adam_beta1=c.adam_beta1, field=f"{side}_optimizer")

  def _generator_optimizer(self):
    tx = self._optimizer("g")
    if not self.config.pretrained_s:
      return tx
    # f_s stays as pretrained: its parameters get no updates.
    def labels(params):
      return {"encoder": {k: jax.tree_util.tree_map(lambda _: "frozen" if k == "specified"
                                                    else "train", v)
                          for k, v in params["encoder"].items()},
              "decoder": jax.tree_util.tree_map(lambda _: "train", params["decoder"])}
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

  def init_state(self, rng):
    self._ensure_dataset()
    e_rng, dec_rng, d_rng = jax.random.split(rng, 3)
    c = self.config
    x = jnp.zeros((2, *self.sample_shape))
    enc = self.encoder.init(e_rng, x)
    dec = self.decoder.init(dec_rng, jnp.zeros((2, c.z_dim)), jnp.zeros((2, c.s_dim)))
    if c.pretrained_s:
      if self._specified is None:
        raise ValueError("pretrained_s: the specified encoder is not trained yet; call "
                         "prepare(workdir) first")
      enc = {"params": {**enc["params"], "specified": self._specified["params"]},
             "batch_stats": {**enc["batch_stats"], "specified": self._specified["batch_stats"]}}
    variables = {"params": {"encoder": enc["params"], "decoder": dec["params"]},
                 "batch_stats": {"encoder": enc["batch_stats"], "decoder": dec["batch_stats"]}}
    generator = NetworkState.create(variables, self._generator_optimizer())
    discriminator = None
    if self.adversarial:
      ids = jnp.zeros((2, len(self.identity_sizes)), jnp.int32)
      discriminator = NetworkState.create(self.discriminator.init(d_rng, x, ids),
                                          self._optimizer("d"))
    return PairState(step=jnp.zeros((), jnp.int32), generator=generator,
                     discriminator=discriminator)

  # --- the networks ---------------------------------------------------------------------------

  def _encode(self, params, batch_stats, x, train: bool):
    """`((s, mu, logvar), new encoder batch stats)`; a pretrained f_s stays on its averages."""
    variables = {"params": params["encoder"], "batch_stats": batch_stats["encoder"]}
    specified_train = False if self.config.pretrained_s else None
    if train:
      out, updates = self.encoder.apply(variables, x, True, specified_train,
                                        mutable=["batch_stats"])
      return out, updates["batch_stats"]
    return self.encoder.apply(variables, x, False), batch_stats["encoder"]

  def _decode(self, params, batch_stats, z, s, train: bool):
    variables = {"params": params["decoder"], "batch_stats": batch_stats["decoder"]}
    if train:
      y, updates = self.decoder.apply(variables, z, s, True, mutable=["batch_stats"])
      return y, updates["batch_stats"]
    return self.decoder.apply(variables, z, s, False), batch_stats["decoder"]

  def _discriminate(self, params, batch_stats, y, identity):
    """D in training mode: `(logits [B], updated batch statistics)`."""
    variables = {"params": params, "batch_stats": batch_stats}
    logits, updates = self.discriminator.apply(variables, y, identity, True,
                                               mutable=["batch_stats"])
    return logits, updates["batch_stats"]

  def encode(self, variables, x):
    """`(s, mu, logvar)` of images `[B, H, W, C]`, batch norm on running averages."""
    return self._encode(variables["params"], variables["batch_stats"], x, False)[0]

  def decode(self, variables, z, s):
    """Images `[B, H, W, C]` of codes `z` `[B, z_dim]` and `s` `[B, s_dim]`."""
    return self._decode(variables["params"], variables["batch_stats"], z, s, False)[0]

  # --- losses ---------------------------------------------------------------------------------

  def _nll(self, pred, target):
    return losses.squared_error(pred, target) / (2.0 * self.config.pixel_std ** 2)

  def generator_loss(self, params, state, batch, rng):
    """Eq. 5.7 on the triplet batch (Algorithm 5.1's generative part)."""
    c = self.config
    gen = state.generator
    y1, y1_same, y2 = batch["y1"], batch["y1_same"], batch["y2"]
    n = y1.shape[0]
    z_rng, prior_rng = jax.random.split(rng)
    (s, mu, logvar), enc_stats = self._encode(params, gen.batch_stats,
                                              jnp.concatenate([y1, y1_same, y2]), True)
    s1, s1_same, s2 = _split(s, 3)
    mu1, logvar1 = mu[:n], logvar[:n]
    z1 = models.reparameterize(z_rng, mu1, logvar1)
    z_prior = jax.random.normal(prior_rng, z1.shape)
    out, dec_stats = self._decode(params, gen.batch_stats,
                                  jnp.concatenate([z1, z1, z1, z_prior]),
                                  jnp.concatenate([s1, s1_same, s2, s2]), True)
    y11, y11_same, y12, y_prior2 = _split(out, 4)
    rec = self._nll(y11, y1)
    rec_same = self._nll(y11_same, y1)
    kl = losses.gaussian_kl(mu1, logvar1)
    loss = jnp.mean(rec + rec_same + c.kl_weight * kl)
    num_pixels = float(np.prod(y1.shape[1:]))
    metrics = {"g/reconstruction_mse": jnp.mean(losses.squared_error(y11, y1)) / num_pixels,
               "g/same_identity_mse": jnp.mean(losses.squared_error(y11_same, y1)) / num_pixels,
               "g/kl": jnp.mean(kl)}
    if self.adversarial:
      disc = state.discriminator
      # D's batch statistics from this pass are discarded: only D's own update changes them.
      logits, _ = self._discriminate(disc.params, disc.batch_stats,
                                     jnp.concatenate([y12, y_prior2]),
                                     jnp.concatenate([batch["id2"], batch["id2"]]))
      swap_logits, prior_logits = _split(logits, 2)
      adv = losses.generator_bce_loss(swap_logits) + losses.generator_bce_loss(prior_logits)
      loss = loss + c.adversarial_weight * adv
      metrics.update({"g/adversarial": adv,
                      "g/swap_real_prob": jnp.mean(jax.nn.sigmoid(swap_logits)),
                      "g/prior_real_prob": jnp.mean(jax.nn.sigmoid(prior_logits))})
    return loss, (metrics, {"encoder": enc_stats, "decoder": dec_stats})

  def discriminator_loss(self, params, state, batch, rng):
    """Real `(y1, id1)` against `(Dec(z2, s1), id1)`, as separate minibatches."""
    gen = state.generator
    y1, y2 = batch["y1"], batch["y2"]
    n = y1.shape[0]
    (s, mu, logvar), _ = self._encode(gen.params, gen.batch_stats, jnp.concatenate([y1, y2]),
                                      True)
    z2 = models.reparameterize(rng, mu[n:], logvar[n:])
    fake, _ = self._decode(gen.params, gen.batch_stats, z2, s[:n], True)
    fake = jax.lax.stop_gradient(fake)
    real_logits, stats = self._discriminate(params, state.discriminator.batch_stats, y1,
                                            batch["id1"])
    fake_logits, stats = self._discriminate(params, stats, fake, batch["id1"])
    loss = losses.discriminator_bce_loss(real_logits, fake_logits)
    metrics = {"d/real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d/fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits))}
    return loss, (metrics, stats)

  # --- the pretrained specified encoder (5.4.6) -----------------------------------------------

  def prepare(self, workdir: str) -> None:
    """Trains f_s as a classifier (or loads it) when `pretrained_s` is set."""
    if not self.config.pretrained_s or self._specified is not None:
      return
    dataset = self._ensure_dataset()
    directory = os.path.join(workdir, SPECIFIED_DIR)
    if os.path.exists(os.path.join(directory, _META_FILE)):
      self._specified = _load_specified(directory, self._classifier(), self.sample_shape)
      logging.info("pretrained f_s loaded from %s", directory)
      return
    variables, accuracy = self._pretrain(dataset)
    _save_specified(directory, variables, {"train_accuracy": accuracy,
                                           "steps": self.config.pretrain_steps,
                                           "dataset": self.config.dataset})
    self._specified = variables["specified"]
    logging.info("pretrained f_s for %d steps (training accuracy %.3f), saved to %s",
                 self.config.pretrain_steps, accuracy, directory)

  def _classifier(self):
    return models.SpecifiedClassifier(self.layers, self.config.s_dim, self.identity_sizes)

  def _pretrain(self, dataset):
    """f_s and a two-layer head trained on the identity attributes of `y1` in training batches."""
    c = self.config
    model = self._classifier()
    variables = model.init(jax.random.PRNGKey(c.seed + 7), jnp.zeros((2, *self.sample_shape)))
    tx = optax.adam(c.pretrain_learning_rate)
    opt_state = tx.init(variables["params"])

    def loss_fn(params, stats, x, ids):
      logits, updates = model.apply({"params": params, "batch_stats": stats}, x, True,
                                    mutable=["batch_stats"])
      ce = sum(optax.softmax_cross_entropy_with_integer_labels(l, ids[:, a]).mean()
               for a, l in enumerate(logits))
      correct = jnp.mean(jnp.stack([jnp.argmax(l, -1) == ids[:, a]
                                    for a, l in enumerate(logits)]).astype(jnp.float32))
      return ce, (updates["batch_stats"], correct)

    @jax.jit
    def step(params, stats, opt_state, x, ids):
      (_, (stats, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x,
                                                                               ids)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), stats, opt_state, correct

    params, stats = variables["params"], variables["batch_stats"]
    accuracies = []
    for i in range(c.pretrain_steps):
      batch = dataset.train_batch(i)
      params, stats, opt_state, correct = step(params, stats, opt_state, batch["y1"],
                                               batch["id1"])
      accuracies.append(float(correct))
      if (i + 1) % max(1, c.pretrain_steps // 10) == 0:
        logging.info("pretraining f_s: step %d/%d, attribute accuracy %.3f", i + 1,
                     c.pretrain_steps, np.mean(accuracies[-50:]))
    accuracy = float(np.mean(accuracies[-50:]))
    return {"specified": {"params": params["specified"],
                          "batch_stats": stats["specified"]}}, accuracy

  # --- evaluation -----------------------------------------------------------------------------

  def codes(self, state: PairState, images: np.ndarray) -> dict[str, np.ndarray]:
    """`{'s': [N, s_dim], 'mu': [N, z_dim], 'logvar': [N, z_dim]}` of host images, in batches."""
    encode = self.jitted("encode", self.encode)
    variables = state.generator.variables
    out = {"s": [], "mu": [], "logvar": []}
    size = self.config.eval_batch_size
    for start in range(0, len(images), size):
      s, mu, logvar = encode(variables, jnp.asarray(images[start:start + size]))
      for k, v in zip(("s", "mu", "logvar"), (s, mu, logvar)):
        out[k].append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in out.items()}

  def decode_codes(self, state: PairState, z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Images `[N, H, W, C]` of host codes, in batches."""
    decode = self.jitted("decode", self.decode)
    variables = state.generator.variables
    size = self.config.eval_batch_size
    return np.concatenate([np.asarray(decode(variables, jnp.asarray(z[i:i + size]),
                                             jnp.asarray(s[i:i + size])))
                           for i in range(0, len(z), size)])

  def swap_pairs(self, n: int) -> np.ndarray:
    """`[n]` indices: test example `i` takes its s from example `pairs[i]` (a fixed derangement
    of the first `n` test examples, so that identities almost always differ)."""
    rng = np.random.default_rng([self.config.seed, 5])
    return (np.arange(n) + 1 + rng.integers(0, n - 1, n)) % n

  def _swap_truth(self, dataset, pairs: np.ndarray) -> np.ndarray:
    """The render of test image `pairs[i]`'s identity in test image `i`'s pose, rendered once
    per dataset: the pairs and the test split are fixed."""
    if self._swap_truth_of is not dataset:
      test = dataset.arrays("test")
      self._swap_truth_images = dataset.render(test["identity"][pairs], test["pose"])
      self._swap_truth_of = dataset
    return self._swap_truth_images

  def evaluate(self, state, dataset, mesh):
    from uncertainty_jax.evaluation import disentangle as evaluation  # pylint: disable=g-import-not-at-top
    c = self.config
    train, test = dataset.arrays("train"), dataset.arrays("test")
    train_codes = self.codes(state, train["images"])
    test_codes = self.codes(state, test["images"])
    recon = self.decode_codes(state, test_codes["mu"], test_codes["s"])
    results = {"test/reconstruction_mse": float(np.mean((recon - test["images"]) ** 2))}
    if dataset.renders:
      pairs = self.swap_pairs(len(test["images"]))
      swapped = self.decode_codes(state, test_codes["mu"], test_codes["s"][pairs])
      truth = self._swap_truth(dataset, pairs)
      mse = float(np.mean((swapped - truth) ** 2))
      results.update({
          "swap/mse": mse, "swap/mse_01": mse / 4.0,
          # What copying the image that gave s would score: the pose carried by z matters.
          "swap/mse_s_image": float(np.mean((test["images"][pairs] - truth) ** 2)),
      })
    # Table 5.2: how much each code says about the probed factors.
    for name in dataset.probe_names:
      col = dataset.factor_index(name)
      y_train = train["factors"][:, col].astype(np.int64)
      y_test = test["factors"][:, col].astype(np.int64)
      for code, key in (("s", "s"), ("z", "mu")):
        probe = evaluation.probe_error(train_codes[key], y_train, test_codes[key], y_test,
                                       seed=c.seed)
        results[f"table/{name}/{code}/train_error"] = probe["train_error"]
        results[f"table/{name}/{code}/test_error"] = probe["test_error"]
      results[f"table/{name}/chance/train_error"] = probe["chance_train"]
      results[f"table/{name}/chance/test_error"] = probe["chance_test"]
    if dataset.pose_names and c.disentanglement_scores:
      results.update(self._scores(dataset, train, test, train_codes, test_codes, evaluation))
    return results

  def _scores(self, dataset, train, test, train_codes, test_codes, evaluation):
    """MIG and DCI of `[s, mu]` against the known factors, and s's and z's shares."""
    c = self.config
    discrete = np.asarray(dataset.factor_discrete)
    joint_train = np.concatenate([train_codes["s"], train_codes["mu"]], axis=1)
    joint_test = np.concatenate([test_codes["s"], test_codes["mu"]], axis=1)
    results = {}
    mig = evaluation.mutual_information_gap(joint_test, test["factors"], discrete)
    results["scores/mig"] = float(mig["mig"])
    dci = evaluation.dci(joint_train, train["factors"], joint_test, test["factors"], discrete,
                         seed=c.seed)
    for key in ("disentanglement", "completeness", "informativeness"):
      results[f"scores/dci_{key}"] = float(dci[key])
    shares = evaluation.block_importance(dci["importance"], {
        "s": slice(0, c.s_dim), "z": slice(c.s_dim, c.s_dim + c.z_dim)})
    for i, name in enumerate(dataset.factor_names):
      results[f"scores/s_share/{name}"] = float(shares["s"][i])
    identity = [i for i, n in enumerate(dataset.factor_names) if n not in dataset.pose_names]
    pose = [i for i, n in enumerate(dataset.factor_names) if n in dataset.pose_names]
    results["scores/s_share_identity"] = float(np.mean(shares["s"][identity]))
    results["scores/z_share_pose"] = float(np.mean(shares["z"][pose]))
    return results

  # --- figures --------------------------------------------------------------------------------

  def figures(self, state: PairState, dataset) -> dict[str, np.ndarray]:
    """The four qualitative settings of 5.4 on test images, as uint8 RGB grids.

    `swap` (Figure 5.2a), `interpolation` (5.2b), `retrieval_s` and `retrieval_z` (5.2c-d) and
    `generation` (5.2e); `swap_truth` too when the data renders its ground truth.
    """
    from uncertainty_jax.evaluation import disentangle as evaluation  # pylint: disable=g-import-not-at-top
    c = self.config
    test = dataset.arrays("test")
    k = min(c.num_figure_images, len(test["images"]) // 2)
    codes = self.codes(state, test["images"])
    # Rows give z, columns give s: a pick of distinct images from the start of the test set.
    rows, cols = np.arange(k), np.arange(k, 2 * k)
    z = np.repeat(codes["mu"][rows], k, axis=0)
    s = np.tile(codes["s"][cols], (k, 1))
    out = {}
    swapped = self.decode_codes(state, z, s).reshape(k, k, *self.sample_shape)
    out["swap"] = evaluation.swap_grid(test["images"][rows], test["images"][cols], swapped)
    if dataset.renders:
      truth = dataset.render(np.tile(test["identity"][cols], (k, 1)),
                             np.repeat(test["pose"][rows], k, axis=0))
      out["swap_truth"] = evaluation.swap_grid(test["images"][rows], test["images"][cols],
                                               truth.reshape(k, k, *self.sample_shape))
    # Interpolation between two test images: z along rows, s along columns.
    a, b = 0, 2 * k - 1
    t = np.linspace(0.0, 1.0, k)
    z_line = (1 - t)[:, None] * codes["mu"][a] + t[:, None] * codes["mu"][b]
    s_line = (1 - t)[:, None] * codes["s"][a] + t[:, None] * codes["s"][b]
    interp = self.decode_codes(state, np.repeat(z_line, k, axis=0), np.tile(s_line, (k, 1)))
    out["interpolation"] = evaluation.interpolation_grid(
        interp.reshape(k, k, *self.sample_shape), test["images"][a], test["images"][b])
    # Nearest neighbours in s and in z among the test images.
    queries = np.arange(min(k, 8))
    for name, key in (("retrieval_s", "s"), ("retrieval_z", "mu")):
      idx = evaluation.nearest_neighbours(codes[key][queries], codes[key], k, exclude=queries)
      out[name] = evaluation.retrieval_grid(test["images"][queries], test["images"][idx])
    # Conditional generation: s of a test image, z from the prior.
    prior = np.asarray(jax.random.normal(jax.random.PRNGKey(c.seed + 3), (len(queries) * k,
                                                                           c.z_dim)))
    generated = self.decode_codes(state, prior, np.repeat(codes["s"][queries], k, axis=0))
    out["generation"] = evaluation.generation_grid(
        test["images"][queries], generated.reshape(len(queries), k, *self.sample_shape))
    return out

  def write_samples(self, state, dataset, mesh, sample_dir, step, writer):
    figures = self.figures(state, dataset)
    if jax.process_index() != 0:
      return
    from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
    for name, grid in figures.items():
      visualize.save_png(os.path.join(sample_dir, f"{name}_{step:08d}.png"), grid)
    writer.write_images(step, {f"samples/{name}": grid for name, grid in figures.items()})


def _save_specified(directory: str, variables: dict, meta: dict) -> None:
  """Writes f_s's variables (Orbax) and `meta.json`, the latter last so a partial write is not
  mistaken for a finished one."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "variables")
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, variables, force=True)
    checkpointer.wait_until_finished()
  with open(os.path.join(directory, _META_FILE), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)


def _load_specified(directory: str, model, sample_shape) -> dict:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, *sample_shape)))
  target = {"specified": {"params": abstract["params"]["specified"],
                          "batch_stats": abstract["batch_stats"]["specified"]}}
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      variables = checkpointer.restore(os.path.join(directory, "variables"), target)
  except Exception as e:  # Orbax raises many types for unreadable or mismatched checkpoints.
    raise ValueError(f"pretrained_s: the specified encoder in {directory} cannot be restored for "
                     f"this config ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                     f"); remove the directory to train it again") from e
  return variables["specified"]
