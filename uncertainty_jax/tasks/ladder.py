"""Chapter 6, semi-supervised (thesis 6.3.2, Table 6.2): the Ladder Network and EBGAN-LN as a task.

`framework='ladder'`: a bottom-layer-cost Ladder Network (`models.ladder.LadderNetwork`) trained
alone, in the generator slot of the pair state (there is no discriminator), on the supervised
cross-entropy of its noisy path on the labelled rows plus the weighted denoising cost on every row.

`framework='ebgan'` (EBGAN-LN): the same network is the discriminator of an EBGAN whose energy is
its bottom-layer denoising cost (the squared error between the clean input and the decoder's
reconstruction from the noisy path, per sample). The discriminator minimises

    cross-entropy(labelled) + w * (E(real) + a * [m_t - E(G(z))]^+)

(the ladder's own costs, with the real rows' energy as its denoising cost, plus the EBGAN margin
loss of eq. 6.1, its hinge weighted by `adversarial_weight` a), and the fully connected generator
of the grid search minimises `w * E(G(z))` (eq. 6.2). The margin decays linearly from `margin` to
0 over `margin_decay_fraction` of training: the EBGAN paper decays the margin during EBGAN-LN's
training, so that by its end the ladder trains as a plain ladder again; the linear shape and its
span are this library's choice.

Rasmus et al. normalise the labelled and unlabelled halves of a batch separately; here the two
are concatenated into one pass (one set of batch statistics), and generated samples go through
the discriminator as their own batch whose statistics update no running average. Evaluation
classifies the test split with the clean path and the running averages: `test_error` in percent.

A batch is `{'x_labelled' [Bl, D], 'y_labelled' [Bl], 'x_unlabelled' [Bu, D]}`, images flattened;
`train_seeds` trains several seeds (each its own labelled subset) together under `jax.vmap`.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from uncertainty_jax import data as data_lib
from uncertainty_jax.data import base as data_base
from uncertainty_jax import losses
from uncertainty_jax.data import labelled as labelled_lib
from uncertainty_jax.models import ebgan as ebgan_models
from uncertainty_jax.models import ladder as ladder_models
from uncertainty_jax.tasks.base import Task
from uncertainty_jax.training import schedules
from uncertainty_jax.training import steps as steps_lib
from uncertainty_jax.training.state import NetworkState
from uncertainty_jax.training.state import PairState

FRAMEWORKS = ("ladder", "ebgan")
# The labelled datasets and their class counts, checked before a run writes anything.
DATASETS = {"digits": 10, "mnist": 10}
_EVAL_CHUNK = 2000


def validate_config(config) -> None:
  """Checks the fields this task reads; each error names the field, its value and what is
  accepted."""
  c = config
  if c.framework not in FRAMEWORKS:
    raise ValueError(f"framework: unknown framework {c.framework!r}; valid: {list(FRAMEWORKS)}")
  if c.dataset not in DATASETS:
    raise ValueError(f"dataset: {c.dataset!r} has no labelled split for the ladder; valid: "
                     f"{sorted(DATASETS)}")
  for field in ("num_labels", "labelled_batch_size", "unlabelled_batch_size", "total_steps"):
    if not isinstance(c[field], int) or isinstance(c[field], bool) or c[field] < 1:
      raise ValueError(f"{field}: {c[field]!r} must be a positive integer")
  classes = DATASETS[c.dataset]
  if c.num_labels % classes:
    raise ValueError(f"num_labels={c.num_labels}: not divisible by the class count {classes} of "
                     f"dataset {c.dataset!r}; expected a multiple of it")
  if tuple(c.layer_sizes)[-1:] != (classes,):
    raise ValueError(f"layer_sizes: the last size of {tuple(c.layer_sizes)} must be the class "
                     f"count of dataset {c.dataset!r}, {classes}")
  devices, processes = jax.device_count(), jax.process_count()
  for field in ("labelled_batch_size", "unlabelled_batch_size"):
    if c[field] % devices or c[field] % processes:
      raise ValueError(f"{field}: {c[field]} rows do not split over the {devices} device(s) of "
                       f"{processes} process(es); use a multiple of {devices}")
  if not c.learning_rate > 0:
    raise ValueError(f"learning_rate: {c.learning_rate!r} must be positive")
  if not 0 <= c.lr_decay_fraction <= 1:
    raise ValueError(f"lr_decay_fraction: {c.lr_decay_fraction!r} is not in [0, 1]")
  if not c.bottom_cost_weight >= 0:
    raise ValueError(f"bottom_cost_weight: {c.bottom_cost_weight!r} must be >= 0")
  if c.framework == "ebgan":
    if not c.margin >= 0:
      raise ValueError(f"margin: {c.margin!r} must be >= 0 (the EBGAN hinge [m - D(G(z))]^+)")
    if not 0 < c.margin_decay_fraction <= 1:
      raise ValueError(f"margin_decay_fraction: {c.margin_decay_fraction!r} is not in (0, 1]")
    if not c.adversarial_weight >= 0:
      raise ValueError(f"adversarial_weight: {c.adversarial_weight!r} must be >= 0")
    if not c.g_learning_rate > 0:
      raise ValueError(f"g_learning_rate: {c.g_learning_rate!r} must be positive")


class LadderDataset:
  """Semi-supervised batches of a labelled image dataset, and its test split, flattened.

  The labelled subset (`num_labels` rows, balanced over classes) is drawn from the training split
  with `seed`; the unlabelled rows come from the whole training split. Every process computes the
  same global batch from (seed, step) and contributes its own slice of each part, so both
  `labelled_batch_size` and `unlabelled_batch_size` must divide over the devices
  (`validate_config` checks it).
  """

  def __init__(self, config, sharding: Optional[jax.sharding.Sharding], *, seed: int | None = None):
    self.sharding = sharding
    self._config = config
    # The image loaders check their own `batch_size` against a sharding; the data is read whole
    # here, so any one device does.
    source = data_lib.get_image_dataset(
        config, jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    train, test = source.arrays("train"), source.arrays("test")
    self.input_size = int(np.prod(train["images"].shape[1:]))
    self.image_shape = tuple(train["images"].shape[1:])
    self.num_classes = source.num_classes
    self.seed = config.seed if seed is None else seed
    self._train = train["images"].reshape(len(train["images"]), -1).astype(np.float32)
    self._train_labels = np.asarray(train["labels"])
    self.test = {"x": test["images"].reshape(len(test["images"]), -1).astype(np.float32),
                 "y": np.asarray(test["labels"])}
    self.sampler = self.sampler_for(self.seed)

  def sampler_for(self, seed: int) -> labelled_lib.SemiSupervisedBatches:
    """The batches of `seed` (its own labelled subset and order) over this dataset's arrays."""
    c = self._config
    return labelled_lib.SemiSupervisedBatches.balanced(
        self._train, self._train_labels, num_labels=c.num_labels,
        labelled_batch_size=c.labelled_batch_size,
        unlabelled_batch_size=c.unlabelled_batch_size, seed=seed)

  @property
  def labelled_indices(self) -> np.ndarray:
    return self.sampler.labelled_indices

  def train_batch(self, step: int) -> dict[str, jax.Array]:
    """`{'x_labelled' [Bl, D], 'y_labelled' [Bl], 'x_unlabelled' [Bu, D]}`, sharded."""
    batch = self.sampler.batch(step)
    if self.sharding is None:
      return {k: jnp.asarray(v) for k, v in batch.items()}
    p, n = jax.process_index(), jax.process_count()
    local = {k: v[p * len(v) // n:(p + 1) * len(v) // n] for k, v in batch.items()}
    return data_base.make_global_batch(local, self.sharding)


class LadderTask(Task):
  """The Ladder Network alone (`framework='ladder'`) or as EBGAN-LN's discriminator ('ebgan')."""

  def __init__(self, config):
    validate_config(config)
    super().__init__(config)
    c = config
    sizes = tuple(c.layer_sizes)
    weights = (float(c.bottom_cost_weight),) + (0.0,) * len(sizes)
    self.ladder = ladder_models.LadderNetwork(layer_sizes=sizes, cost_weights=weights,
                                              noise_std=c.noise_std)
    self.is_ebgan = c.framework == "ebgan"
    self._data: LadderDataset | None = None
    self.generator = None

  # --- data and state -------------------------------------------------------------------------

  def data(self) -> LadderDataset:
    """The dataset, read once, unsharded; it also sets the input size and the generator."""
    if self._data is None:
      self._data = LadderDataset(self.config, None)
      if self.is_ebgan:
        c = self.config
        self.generator = ebgan_models.FCGenerator(c.num_layers_g, c.size_g,
                                                  (self._data.input_size,))
    return self._data

  def make_dataset(self, sharding):
    dataset = copy.copy(self.data())
    dataset.sharding = sharding
    return dataset

  @property
  def input_size(self) -> int:
    return self.data().input_size

  def _ladder_optimizer(self):
    c = self.config
    return schedules.make_optimizer("adam", _decayed(c.learning_rate, c.total_steps,
                                                     c.lr_decay_fraction), adam_beta1=0.9)

  def init_state(self, rng):
    l_rng, n_rng, g_rng = jax.random.split(rng, 3)
    x = jnp.zeros((2, self.input_size))
    ladder = NetworkState.create(
        self.ladder.init({"params": l_rng, "noise": n_rng}, x, train=False),
        self._ladder_optimizer())
    if not self.is_ebgan:
      return PairState(step=jnp.zeros((), jnp.int32), generator=ladder, discriminator=None)
    c = self.config
    z = jnp.zeros((2, c.latent_dim))
    generator = NetworkState.create(
        self.generator.init(g_rng, z),
        schedules.make_optimizer("adam", c.g_learning_rate, adam_beta1=0.5))
    return PairState(step=jnp.zeros((), jnp.int32), generator=generator, discriminator=ladder)

  def ladder_net(self, state: PairState) -> NetworkState:
    """The network state that holds the ladder."""
    return state.discriminator if self.is_ebgan else state.generator

  # --- the networks ---------------------------------------------------------------------------

  def _run_ladder(self, params, batch_stats, x, rng, update: bool):
    variables = {"params": params, "batch_stats": batch_stats}
    out, updates = self.ladder.apply(variables, x, train=True, rngs={"noise": rng},
                                     mutable=["batch_stats"])
    return out, (updates["batch_stats"] if update else batch_stats)

  def margin(self, step) -> jax.Array:
    """The EBGAN-LN margin at `step`: `margin`, decayed linearly to 0 over the decay span."""
    c = self.config
    span = max(1, int(round(c.margin_decay_fraction * c.total_steps)))
    return c.margin * jnp.clip(1.0 - step / span, 0.0, 1.0)

  def sample_latent(self, rng, n: int) -> jax.Array:
    return jax.random.uniform(rng, (n, self.config.latent_dim), minval=-1.0, maxval=1.0)

  def _generate_train(self, params, net: NetworkState, n: int, rng):
    variables = {"params": params, "batch_stats": net.batch_stats}
    x, updates = self.generator.apply(variables, self.sample_latent(rng, n), train=True,
                                      mutable=["batch_stats"])
    return x, updates["batch_stats"]

  def _ladder_costs(self, params, net: NetworkState, batch, rng):
    """Cross-entropy on the labelled rows and per-row bottom energies of the real batch."""
    x = jnp.concatenate([batch["x_labelled"], batch["x_unlabelled"]])
    num_labelled = batch["x_labelled"].shape[0]
    out, stats = self._run_ladder(params, net.batch_stats, x, rng, update=True)
    labels = jnp.concatenate([batch["y_labelled"],
                              jnp.zeros((x.shape[0] - num_labelled,), batch["y_labelled"].dtype)])
    mask = jnp.arange(x.shape[0]) < num_labelled
    ce = losses.masked_cross_entropy(out.logits_noisy, labels, mask)
    energy = losses.ladder_energy(out.z_clean[0], out.reconstruction)
    accuracy = jnp.sum((jnp.argmax(out.logits_clean, -1) == labels) * mask) / num_labelled
    return ce, energy, accuracy, stats

  # --- losses ---------------------------------------------------------------------------------

  def _ladder_loss(self, params, state, batch, rng, net: NetworkState):
    c = self.config
    real_rng, fake_rng, z_rng = jax.random.split(rng, 3)
    ce, e_real, accuracy, stats = self._ladder_costs(params, net, batch, real_rng)
    metrics = {"ladder/cross_entropy": ce, "ladder/energy_real": jnp.mean(e_real),
               "ladder/train_accuracy": accuracy}
    if not self.is_ebgan:
      return ce + c.bottom_cost_weight * jnp.mean(e_real), (metrics, stats)
    gen = state.generator
    n = batch["x_unlabelled"].shape[0]
    fake, _ = self._generate_train(gen.params, gen, n, z_rng)
    out_fake, _ = self._run_ladder(params, stats, jax.lax.stop_gradient(fake), fake_rng,
                                   update=False)
    e_fake = losses.ladder_energy(fake, out_fake.reconstruction)
    m = self.margin(state.step)
    # Eq. 6.1's two terms, the hinge weighted by `adversarial_weight` (1: eq. 6.1 as written).
    hinge = losses.ebgan_discriminator_loss(jnp.zeros_like(e_real), e_fake, m)
    loss = ce + c.bottom_cost_weight * (jnp.mean(e_real) + c.adversarial_weight * hinge)
    metrics.update({"d/energy_fake": jnp.mean(e_fake), "d/margin": m,
                    "d/hinge_active": jnp.mean((e_fake < m).astype(jnp.float32))})
    return loss, (metrics, stats)

  def discriminator_loss(self, params, state, batch, rng):
    """EBGAN-LN's discriminator: the ladder's costs plus the margin loss on generated samples."""
    return self._ladder_loss(params, state, batch, rng, state.discriminator)

  def generator_loss(self, params, state, batch, rng):
    """The ladder's costs (`framework='ladder'`), or EBGAN-LN's generator loss (eq. 6.2)."""
    if not self.is_ebgan:
      return self._ladder_loss(params, state, batch, rng, state.generator)
    z_rng, d_rng = jax.random.split(rng)
    n = batch["x_unlabelled"].shape[0]
    fake, g_stats = self._generate_train(params, state.generator, n, z_rng)
    disc = state.discriminator
    out, _ = self._run_ladder(disc.params, disc.batch_stats, fake, d_rng, update=False)
    e_fake = losses.ladder_energy(fake, out.reconstruction)
    loss = self.config.bottom_cost_weight * losses.ebgan_generator_loss(e_fake)
    return loss, ({"g/energy_fake": jnp.mean(e_fake)}, g_stats)

  # --- evaluation -----------------------------------------------------------------------------

  def logits(self, net_variables, x: jax.Array) -> jax.Array:
    """Clean-path logits `[B, C]` with the running averages, for flat inputs `[B, D]`."""
    return self.ladder.apply(net_variables, x, train=False).logits_clean

  def test_error(self, net: NetworkState, test: dict) -> float:
    """Test error in percent of the clean path on `test = {'x': [N, D], 'y': [N]}`."""
    logits = self.jitted("logits", self.logits)
    wrong = 0
    for start in range(0, len(test["y"]), _EVAL_CHUNK):
      x = jnp.asarray(test["x"][start:start + _EVAL_CHUNK])
      pred = np.asarray(jnp.argmax(logits(net.variables, x), -1))
      wrong += int(np.sum(pred != test["y"][start:start + _EVAL_CHUNK]))
    return 100.0 * wrong / len(test["y"])

  def evaluate(self, state, dataset, mesh):
    state = jax.device_get(state)
    error = self.test_error(self.ladder_net(state), dataset.test)
    return {"test_error": error, "test_accuracy": 100.0 - error}

  def samples(self, state: PairState, n: int) -> np.ndarray:
    """EBGAN-LN's generated images `[n, *image_shape]` from fixed latents."""
    z = self.sample_latent(jax.random.PRNGKey(self.config.seed + 1), n)
    generate = self.jitted("generate", lambda v, z: self.generator.apply(v, z, train=False))
    flat = np.asarray(generate(state.generator.variables, z))
    return flat.reshape(n, *self.data().image_shape)

  def write_samples(self, state, dataset, mesh, sample_dir, step, writer):
    if not self.is_ebgan:
      return
    images = self.samples(state, self.config.num_sample_images)
    if jax.process_index() != 0:
      return
    from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
    from uncertainty_jax.evaluation import visualize  # pylint: disable=g-import-not-at-top
    grid = ebgan_figures.sample_grid(images, scale=max(1, 32 // images.shape[1]))
    visualize.save_png(os.path.join(sample_dir, f"samples_{step:08d}.png"), grid)
    writer.write_images(step, {"samples/generated": grid})


def _decayed(learning_rate: float, total_steps: int, decay_fraction: float):
  """Constant, then linear to 0 over the last `decay_fraction` of training (Rasmus et al.)."""
  decay = int(round(decay_fraction * total_steps))
  if decay == 0:
    return learning_rate
  return lambda step: learning_rate * jnp.clip((total_steps - step) / decay, 0.0, 1.0)


def train_seeds(task: LadderTask, seeds: Sequence[int], steps: int, *,
                progress: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
  """Trains `seeds` of one setting together under `jax.vmap` and evaluates each.

  Every seed has its own initialisation, random numbers, labelled subset and batch order (those
  of a single run with `config.seed = seed`): one compiled step trains them all. `steps` is
  normally `config.total_steps`, which the margin and learning-rate schedules count towards.

  Raises:
    FloatingPointError: a seed's loss became NaN or infinite (no errors are returned, so a
      diverged seed is never saved as a result).

  Returns:
    `{'seeds': [...], 'test_error': [S] percent, 'seconds': training time (initialisation and
    compilation included), 'step_seconds': the time of the steps after the first (which compiles),
    'state': the stacked final state}`.
  """
  if not seeds:
    raise ValueError("seeds: at least one seed is needed")
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps: {steps!r} must be a positive integer")
  dataset = task.data()
  samplers = [dataset.sampler_for(s) for s in seeds]
  keys = [jax.random.split(jax.random.PRNGKey(s)) for s in seeds]
  init_keys = jnp.stack([k[0] for k in keys])
  step_keys = jnp.stack([k[1] for k in keys])
  start = time.time()
  state = jax.jit(jax.vmap(task.init_state))(init_keys)
  step_fn = jax.jit(jax.vmap(lambda s, b, k: steps_lib.train_step(task, s, b, k)),
                    donate_argnums=(0,))
  finite = jnp.ones((len(seeds),), bool)
  first_done = None
  for i in range(steps):
    batch = {k: jnp.asarray(v) for k, v in labelled_lib.stack_batches(samplers, i).items()}
    state, metrics = step_fn(state, batch, step_keys)
    finite = finite & jnp.isfinite(metrics["g/loss"]) & jnp.isfinite(metrics.get("d/loss", 0.0))
    if i == 0:
      jax.block_until_ready(state)
      first_done = time.time()
    if progress is not None:
      progress(i + 1)
  jax.block_until_ready(state)
  seconds = time.time() - start
  step_seconds = time.time() - first_done
  bad = [s for s, ok in zip(seeds, np.asarray(finite)) if not ok]
  if bad:
    raise FloatingPointError(f"seeds {bad}: a loss became NaN or infinite; their test errors "
                             f"would be meaningless, so nothing is reported")
  errors = []
  for i in range(len(seeds)):
    member = jax.tree_util.tree_map(lambda x, i=i: x[i], state)
    errors.append(task.test_error(task.ladder_net(member), dataset.test))
  return {"seeds": list(seeds), "test_error": errors, "seconds": seconds,
          "step_seconds": step_seconds, "state": state}
