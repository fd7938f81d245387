"""Chapter 6: energy-based GANs (Zhao, Mathieu & LeCun; thesis 6.2-6.3).

    python -m experiments.main --config=experiments/ebgan.py --workdir=runs/ebgan
    python -m experiments.main --config=experiments/ebgan.py:conv64 --workdir=runs/ebgan64
    python -m experiments.grid --config=experiments/ebgan.py:grid --workdir=runs/grid

`--config=experiments/ebgan.py:ARGS`, ARGS a comma-separated list: one variant name and, optionally,
the modifier `tiny` (a few seconds on a CPU; the tests use it). Variants:

* `ebgan` (default): fully connected EBGAN on scikit-learn's 8x8 digits, the best EBGAN of the
  thesis' MNIST grid search (Figure 6.4b: nLayerG 5, sizeG 800, nLayerD 2, sizeD 1024, no dropout,
  Adam at 0.001 on both sides, margin 10).
* `ebgan_pt`: the same with the pulling-away term, lambda_PT = 0.1 (Figure 6.4c).
* `gan`: the probabilistic GAN baseline with the same generator and optimizers, against a fully
  connected binary discriminator of the same depth and width.
* `conv64`, `conv64_pt`, `dcgan64`: 64x64 RGB (6.3.3) on random 64x64 patches of the photographs
  bundled with scikit-image (the "augmented LSUN" protocol): the DCGAN generator against the
  EBGAN paper's convolutional auto-encoder, with and without PT, and against DCGAN's discriminator.
* `grid`: the settings shared by the configurations of the Table 6.1 search (`experiments.grid`).
* `ladder`, `ebgan_ladder`: the semi-supervised experiment of 6.3.2 (Table 6.2, task 'ladder'):
  a bottom-layer-cost Ladder Network on the embedded digits with `num_labels` labels, alone or as
  the discriminator of EBGAN-LN (`uncertainty_jax.tasks.ladder`); its own fields, in
  `_ladder_config`. `python -m experiments.reproduce --table=6.2` trains the table.
* `toy2d`: a mixture of 2-D Gaussians with known modes (`toy_modes` 'ring' or 'grid'), where mode
  coverage is measured (`experiments.toy2d`); `framework` and `lambda_pt` select GAN, EBGAN or
  EBGAN-PT.

What the thesis leaves open, and what is chosen here:

* The energy is eq. 6.60 as written, the squared L2 norm of the reconstruction error summed over
  the sample (`energy_reduction='sum'`); `'mean'` divides it by the sample's size. With the sum,
  the margin of 10 of Figure 6.4 is a mean squared error of 0.16 per pixel of an 8x8 digit in
  [-1, 1] (and 0.013 for a 28x28 MNIST digit).
* Latents are uniform in [-1, 1]^100, as in DCGAN (Radford et al., 2016), whose generator the EBGAN
  64x64 experiments use; Adam's beta1 is 0.5 (DCGAN's).
* The 64x64 auto-encoder discriminator is the EBGAN paper's (appendix): Enc (64)4c2s-(128)4c2s-
  (256)4c2s, Dec (128)4c2s-(64)4c2s-(3)4c2s, batch norm and leaky ReLU as DCGAN's guidelines say,
  a linear output (see `uncertainty_jax.models.ebgan`). The thesis gives no margin for these
  models. Their energy is the mean squared error per value (`energy_reduction='mean'`) and the
  margin 0.5, above what the auto-encoder reaches on real patches (about 0.1 to 0.15), so that
  the hinge stays active and D keeps pushing the energy of samples up; on that scale the
  pulling-away term's lambda_PT = 0.1 weighs as much as the energy. With the summed energy and
  margins of 20 or 80 (below or near the real patches' summed energy of about 35 at the `full`
  widths), the hinge went quiet, D stopped separating samples from data, and the generator
  collapsed to one image, PT or not (README, chapter 6).
* Batch norm in the fully connected models follows every hidden layer but the discriminator's
  first, as in DCGAN; the I' classifier is trained on the same data's labels the first time a run
  needs it and saved with Orbax under `<workdir>/classifier` (or `classifier_dir`).

Fields set to None are filled from `budgets[budget]` when the run starts: `cpu` (a CPU, about an
hour at most) or `full` (the widths of the papers), `auto` picking by backend as in chapter 4.
"""

from __future__ import annotations

from ml_collections import config_dict

from experiments import cli

VARIANTS = {
    "ebgan": dict(),
    "ebgan_pt": dict(lambda_pt=0.1),
    "gan": dict(framework="gan"),
    "conv64": dict(model="conv", dataset="photo_patches", energy_reduction="mean", margin=0.5,
                   learning_rate_both=2e-4),
    "conv64_pt": dict(model="conv", dataset="photo_patches", energy_reduction="mean", margin=0.5,
                      lambda_pt=0.1, learning_rate_both=2e-4),
    "dcgan64": dict(model="conv", dataset="photo_patches", framework="gan",
                    learning_rate_both=2e-4),
    "grid": dict(),
    # Small fully connected networks on 2-D points, without batch norm (whose batch statistics
    # would tie the samples of a batch together in 2-D).
    # Semi-supervised (6.3.2, Table 6.2): built by `_ladder_config`.
    "ladder": dict(),
    "ebgan_ladder": dict(),
    "toy2d": dict(dataset="toy2d", num_layers_g=3, size_g=128, num_layers_d=3, size_d=128,
                  batch_norm_g=False, batch_norm_d=False, latent="normal", latent_dim=16,
                  batch_size=256, margin=1.0, learning_rate_both=1e-3, num_eval_samples=2000),
}
MODIFIERS = ("tiny",)
LADDER_VARIANTS = ("ladder", "ebgan_ladder")


def _parse(arg: str | None) -> tuple[str, set[str]]:
  return cli.parse_config_arg(arg, VARIANTS, MODIFIERS, "ebgan")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  """The config of one chapter-6 variant; see the module docstring for `arg`."""
  variant, modifiers = _parse(arg)
  if variant in LADDER_VARIANTS:
    return _ladder_config(variant, modifiers)
  c = config_dict.ConfigDict()
  c.task = "ebgan"
  c.variant = variant
  c.seed = 0

  # Data.
  c.dataset = "digits"  # 'mnist' (TFDS); 'photo_patches'; 'celeb_a', 'lsun_bedroom' (TFDS); 'toy2d'
  c.data_dir = ""  # TFDS data dir; '' = TFDS' default
  c.image_size = 64  # photo_patches, celeb_a, lsun_bedroom
  c.toy_modes = "ring"  # toy2d: 'ring' (8 modes) or 'grid' (25 modes)

  # Model.
  c.framework = "ebgan"  # or 'gan'
  c.model = "fc"  # 'fc' (grid search, toy2d) or 'conv' (64x64)
  c.latent = "uniform"
  c.latent_dim = 100
  c.num_layers_g = 5
  c.size_g = 800
  c.num_layers_d = 2
  c.size_d = 1024
  c.dropout_d = 0.0  # Table 6.1's dropoutD: 0.5 when on
  c.batch_norm_g = True
  c.batch_norm_d = True
  c.g_features = config_dict.placeholder(int)  # conv: DCGAN's ngf (budget)
  c.d_features = config_dict.placeholder(tuple)  # conv: the auto-encoder's encoder widths (budget)
  c.gan_d_features = config_dict.placeholder(tuple)  # conv: DCGAN's discriminator widths (budget)

  # Losses (eq. 6.1, 6.2, 6.60, 6.61).
  c.margin = 10.0
  c.energy_reduction = "sum"
  c.lambda_pt = 0.0

  # Optimisation.
  c.batch_size = 64
  c.g_optimizer = "adam"
  c.d_optimizer = "adam"
  c.g_learning_rate = 1e-3
  c.d_learning_rate = 1e-3
  c.adam_beta1 = 0.5

  # Evaluation.
  c.num_eval_samples = 1000  # samples scored at each evaluation (I', modes)
  c.num_sample_images = 64  # samples drawn in samples/*.png
  c.classifier_dir = ""  # '' = <workdir>/classifier
  c.classifier_steps = 2000

  # Run length and bookkeeping.
  c.total_steps = config_dict.placeholder(int)  # budget
  c.log_every = 50
  c.eval_every = config_dict.placeholder(int)  # budget
  c.checkpoint_every = config_dict.placeholder(int)  # budget
  c.keep_checkpoints = 2

  # The grid search (`experiments.grid`): Table 6.1 plus how long each configuration trains.
  c.grid = config_dict.ConfigDict(dict(
      frameworks=("ebgan", "gan"),
      # Table 6.1 (`uncertainty_jax.models.ebgan.MNIST_GRID`).
      num_layers_g=(2, 3, 4, 5),
      num_layers_d=(2, 3, 4, 5),
      size_g=(400, 800, 1600, 3200),
      size_d=(128, 256, 512, 1024),
      dropout_d=(True, False),
      steps=config_dict.placeholder(int),  # budget
      learning_rates=(0.01, 0.001, 0.0001),  # GAN's lr (Table 6.1 prints 0.001 twice; see README)
      ebgan_learning_rate=0.001,
      seeds=(0,),
      keep_samples=64,
  ))

  c.budget = "auto"
  fc = dict(total_steps=3000, eval_every=1000, checkpoint_every=1000)
  c.budgets = config_dict.ConfigDict({
      "cpu": dict(fc, g_features=32, d_features=(32, 64, 128), gan_d_features=(32, 64, 128, 256)),
      "full": dict(fc, g_features=64, d_features=(64, 128, 256),
                   gan_d_features=(64, 128, 256, 512)),
  })
  c.grid_budgets = config_dict.ConfigDict({"cpu": dict(steps=1000), "full": dict(steps=5000)})

  overrides = dict(VARIANTS[variant])
  lr = overrides.pop("learning_rate_both", None)
  if lr is not None:
    c.g_learning_rate = c.d_learning_rate = lr
  for field, value in overrides.items():
    c[field] = value
  if c.model == "conv":
    c.budgets.cpu.update(total_steps=2000, eval_every=500, checkpoint_every=500)
    c.budgets.full.update(total_steps=50_000, eval_every=5000, checkpoint_every=5000)
  if variant == "toy2d":
    c.budgets.cpu.update(total_steps=3000, eval_every=1000)
    c.budgets.full.update(total_steps=3000, eval_every=1000)

  if "tiny" in modifiers:
    c.total_steps = 4
    c.eval_every = 4
    c.checkpoint_every = 2
    c.log_every = 1
    c.batch_size = 8
    c.num_eval_samples = 64
    c.num_sample_images = 16
    c.classifier_steps = 50
    if c.model == "fc":
      c.size_g = min(c.size_g, 32)
      c.size_d = min(c.size_d, 32)
      c.num_layers_g = min(c.num_layers_g, 3)
    else:
      c.g_features = 4
      c.d_features = (4, 8, 8)
      c.gan_d_features = (4, 8, 8, 8)
      c.image_size = 32
    c.grid.steps = 3
    c.grid.keep_samples = 4
    c.grid.num_layers_g = (2, 3)
    c.grid.num_layers_d = (2, 3)
    c.grid.size_g = (16, 32)
    c.grid.size_d = (8, 16)
    c.grid.learning_rates = (0.01, 0.001)

  c.lock()
  return c


def _ladder_config(variant: str, modifiers: set[str]) -> config_dict.ConfigDict:
  """`ladder` and `ebgan_ladder` (task 'ladder'): see `uncertainty_jax.tasks.ladder`."""
  c = config_dict.ConfigDict()
  c.task = "ladder"
  c.variant = variant
  c.framework = "ebgan" if variant == "ebgan_ladder" else "ladder"
  c.seed = 0

  # Data: labelled rows drawn from the training split, balanced over classes, from the seed.
  c.dataset = "digits"  # or 'mnist' (TFDS, flattened to 784 inputs)
  c.data_dir = ""
  c.num_labels = 100  # Table 6.2: 100, 200, 1000
  c.labelled_batch_size = 50
  c.unlabelled_batch_size = 100
  # The loop checks `batch_size` against the devices; the task checks both parts itself.
  c.batch_size = c.get_ref("unlabelled_batch_size")

  # The Ladder Network (Rasmus et al., 2015): their PI-MNIST widths are 1000-500-250-250-250-10
  # for 784 inputs; a quarter of those for the 64 inputs of the embedded digits. Their noise 0.3
  # and lambda_0 = 1000 are for inputs in [0, 1]; here inputs are in [-1, 1], so the same numbers
  # mean half the relative noise and a cost four times as large (the noise was not varied here;
  # for lambda_0 see below).
  c.layer_sizes = (256, 128, 64, 64, 64, 10)
  c.noise_std = 0.3
  # lambda_0 of the input layer (the other layers' weights are 0): Rasmus et al.'s 1000. On the
  # digits' 100 labels, 0 / 10 / 100 / 1000 gave 18.2 / 14.2 / 7.2 / 3.9 % test error (3 seeds,
  # 1500 steps).
  c.bottom_cost_weight = 1000.0

  # Adam at 0.002, decayed linearly to 0 over the last third, as Rasmus et al.
  c.learning_rate = 2e-3
  c.lr_decay_fraction = 1 / 3

  # EBGAN-LN: the fully connected generator of the grid search, uniform latents, and the margin
  # on the ladder's energy (the mean squared reconstruction error of a sample), decayed
  # linearly to 0 over the first `margin_decay_fraction` of training. The margin sits a little
  # above the real digits' energy; larger margins (0.1, 0.3) gave higher test errors on short
  # runs.
  c.num_layers_g = 3
  c.size_g = 400
  c.latent_dim = 100
  c.g_learning_rate = 1e-3
  c.margin = 0.05
  c.margin_decay_fraction = 2 / 3
  c.adversarial_weight = 1.0  # weight of the hinge [m - E(G(z))]^+ in the discriminator's loss
  c.num_sample_images = 64

  # 2000 steps (about 140 epochs of the digits' unlabelled rows): Table 6.2's 15 seeds x 3 label
  # counts x 2 models in about half an hour on 2 CPU cores.
  c.total_steps = 2000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2

  if "tiny" in modifiers:
    c.layer_sizes = (16, 16, 10)
    c.labelled_batch_size = 10
    c.unlabelled_batch_size = 20
    c.size_g = 32
    c.num_layers_g = 2
    c.num_sample_images = 16
    c.total_steps = 4
    c.log_every = 1
    c.eval_every = 4
    c.checkpoint_every = 2
  c.lock()
  return c
