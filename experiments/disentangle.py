"""Chapter 5: disentangling factors of variation (Mathieu, Zhao, Sprechmann, Ramesh & LeCun, 2016).

    python -m experiments.main --config=experiments/disentangle.py --workdir=runs/dis           # sprites
    python -m experiments.main --config=experiments/disentangle.py:digits --workdir=runs/dis_digits
    python -m experiments.main --config=experiments/disentangle.py --workdir=runs/dis --mode=eval

`--config=experiments/disentangle.py:ARGS`, ARGS a comma-separated list: one variant and,
optionally, the modifier `tiny` (a few steps at small sizes, for the tests). Variants:

* `sprites` (default): the embedded procedural sprites (`uncertainty_jax.data.sprites`), 32x32
  RGB, seven identity attributes, test identities never seen in training (5.4.3); Table 5.1's
  sprites networks, s of 64 and z of 512 coordinates (5.4.1).
* `digits`: scikit-learn's 8x8 digits, identity = the class (5.4.2), s and z of 16.
* `toys`: the NORB-like toys (`uncertainty_jax.data.toys`), 32x32 grayscale, identity = the
  instance, 25 training and 25 test instances (5.4.4); the six-layer NORB trunk.
* `pretrained_s`, `pretrained_s_no_adv`: the ablations of 5.4.6 on sprites: f_s pretrained as a
  classifier of the identity attributes and frozen, a second encoder for z, with and without the
  adversarial term (the latter a conditional VAE).

`dataset` may name any of `uncertainty_jax.data.IDENTITY_DATASETS`, e.g. TFDS' `mnist`,
`smallnorb`, `dsprites` or `shapes3d` (`--config.dataset=smallnorb` with the `toys` variant).

What the thesis leaves open, and what is chosen here:

* Table 5.1 is legible only in part. The trunks are its two shapes (`models.disentangle.TRUNKS`):
  three 5x5 convolutions of stride 2 for digits and sprites, six 3x3 ones with stride 2 every
  other layer for NORB; each is mirrored by the decoder, whose s and z projections reach the
  trunk's top map (128 x 4 x 4 = 2048 units for sprites and toys, as the table prints). The
  sprites discriminator's widths are multiples of 7, one lookup block per attribute.
* The likelihood of eq. 5.5 is Gaussian with `pixel_std` per pixel (images in [-1, 1]), so the
  reconstruction term is `||y - Dec||^2 / (2 pixel_std^2)`; `kl_weight` scales the KL (1 is eq.
  5.5); `adversarial_weight` is eq. 5.7's lambda, which the thesis does not give. With pixel_std 0.2
  and lambda = 10 the digits' z still decides the class of a swap; lambda = 100 or pixel_std 0.5
  each hands it to s (1,500 steps; see the README's results).
* The thesis trains with SGD; Adam (lr 2e-4, beta1 0.5, DCGAN's) is the default here because it
  reaches a usable model in the CPU budget; `g_optimizer='sgd'` restores the thesis' choice.

Fields set to None are filled from `budgets[budget]` when the run starts: `cpu` (a CPU in minutes)
or `full`, `auto` picking by backend.
"""

from __future__ import annotations

from ml_collections import config_dict

from experiments import cli

_SPRITES = dict(dataset="sprites", trunk="conv3", encoder_features=(32, 64, 128),
                d_features=(14, 28, 56), s_dim=64, z_dim=512)
VARIANTS = {
    "sprites": _SPRITES,
    "digits": dict(dataset="digits", trunk="conv3", encoder_features=(16, 32, 64),
                   d_features=(16, 32, 64), s_dim=16, z_dim=16),
    "toys": dict(dataset="toys", trunk="conv6", encoder_features=(16, 16, 32, 32, 64, 128),
                 d_features=(16, 32, 64), s_dim=64, z_dim=512),
    "pretrained_s": dict(_SPRITES, pretrained_s=True),
    "pretrained_s_no_adv": dict(_SPRITES, pretrained_s=True, adversarial_weight=0.0),
}
MODIFIERS = ("tiny",)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  """The config of one chapter-5 variant; see the module docstring for `arg`."""
  variant, modifiers = cli.parse_config_arg(arg, VARIANTS, MODIFIERS, "sprites")
  c = config_dict.ConfigDict()
  c.task = "disentangle"
  c.variant = variant
  c.seed = 0

  # Data: same-identity triplets (y1, y1', y2) and fixed labelled splits.
  c.dataset = "sprites"
  c.data_dir = ""  # TFDS data dir; '' = TFDS' default
  c.image_size = 32  # sprites, toys, dsprites, shapes3d
  c.color = False  # toys: grayscale as NORB, or colour
  c.num_eval_images = 1024  # examples per split for evaluation (generated and large datasets)
  c.num_images = 100_000  # dsprites, shapes3d: the deterministic subset held in memory

  # Model (Table 5.1, 5.4.1).
  c.trunk = "conv3"  # or 'conv6'
  c.encoder_features = (32, 64, 128)
  c.d_features = (14, 28, 56)
  c.s_dim = 64
  c.z_dim = 512

  # Loss (eq. 5.5, 5.7).
  c.pixel_std = 0.5
  c.kl_weight = 1.0
  c.adversarial_weight = 100.0

  # The 5.4.6 ablation: f_s pretrained as a classifier, then frozen.
  c.pretrained_s = False
  c.pretrain_steps = config_dict.placeholder(int)  # budget
  c.pretrain_learning_rate = 1e-3

  # Optimisation.
  c.batch_size = 64
  c.g_optimizer = "adam"
  c.d_optimizer = "adam"
  c.g_learning_rate = 2e-4
  c.d_learning_rate = 2e-4
  c.adam_beta1 = 0.5

  # Evaluation.
  c.eval_batch_size = 256
  c.num_figure_images = 8  # rows and columns of the figures
  c.disentanglement_scores = True  # MIG and DCI where the pose factors are known

  # Run length and bookkeeping.
  c.total_steps = config_dict.placeholder(int)  # budget
  c.log_every = 50
  c.eval_every = config_dict.placeholder(int)  # budget
  c.checkpoint_every = config_dict.placeholder(int)  # budget
  c.keep_checkpoints = 2

  c.budget = "auto"
  c.budgets = config_dict.ConfigDict({
      "cpu": dict(total_steps=3000, eval_every=1500, checkpoint_every=500, pretrain_steps=1000),
      "full": dict(total_steps=50_000, eval_every=5000, checkpoint_every=5000,
                   pretrain_steps=10_000),
  })

  for field, value in VARIANTS[variant].items():
    c[field] = value
  if "tiny" in modifiers:
    c.total_steps = 2
    c.eval_every = 2
    c.checkpoint_every = 1
    c.log_every = 1
    c.batch_size = 8
    c.pretrain_steps = 2
    c.num_eval_images = 64
    c.num_images = 512
    c.eval_batch_size = 32
    c.num_figure_images = 4
    c.encoder_features = tuple(max(1, f // 4) for f in c.encoder_features)
    c.s_dim = min(c.s_dim, 16)
    c.z_dim = min(c.z_dim, 16)
    if c.dataset == "sprites":
      c.d_features = (7, 14, 28)
  c.lock()
  return c
