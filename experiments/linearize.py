"""Chapter 3: linearizing auto-encoders (Goroshin, Mathieu & LeCun, NIPS 2015; thesis 3.2-3.3).

    python -m experiments.main --config=experiments/linearize.py --workdir=runs/lin            # deep3
    python -m experiments.main --config=experiments/linearize.py:shallow1 --workdir=runs/sh1
    python -m experiments.main --config=experiments/linearize.py:deep3,skip,latent --workdir=runs/skip

`--config=experiments/linearize.py:ARGS`, ARGS a comma-separated list: one variant and any of the
modifiers. Variants, the rows of Table 3.1: `shallow1`, `shallow2` (phase pooling on one conv
layer; rigid-transform triplets of the photographs bundled with scikit-image, 3.3.1), `deep1`
(a Siamese encoder whose decoder learns the extrapolation), `deep2` (the fixed extrapolation
a = [2, -1]), `deep3` (default; phase pooling of the code and curvature regularisation), the last
three on rotation triplets of NORB-like toys (3.3.2). Modifiers: `skip` (the third frame skips one
step with probability 1/2, 3.3.3), `latent` (delta of eq. 3.11-3.13 inferred in the step,
`latent_dim` 3, `latent_steps` k), `tiny` (a few steps at small widths, for the tests).

Fields set to None are filled from `budgets[budget]` when the run starts: `budget='auto'` picks
`cpu` on a CPU and `full` (the thesis' widths) on accelerators.
"""

from __future__ import annotations

from ml_collections import config_dict

from experiments import cli

VARIANTS = {
    "shallow1": dict(architecture="shallow1", dataset="rigid_photos", channels=3,
                     lambda_curvature=1.0),
    "shallow2": dict(architecture="shallow2", dataset="rigid_photos", channels=3,
                     lambda_curvature=1.0),
    # Deep 1 and 2: no phase pooling and no curvature term (Figure 3.6a's caption).
    "deep1": dict(architecture="deep1", dataset="rotating_toys", channels=1, lambda_curvature=0.0),
    "deep2": dict(architecture="deep2", dataset="rotating_toys", channels=1, lambda_curvature=0.0),
    "deep3": dict(architecture="deep3", dataset="rotating_toys", channels=1, lambda_curvature=1.0),
}
MODIFIERS = ("skip", "latent", "tiny")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  """The config of one chapter-3 variant; see the module docstring for `arg`."""
  variant, modifiers = cli.parse_config_arg(arg, VARIANTS, MODIFIERS, "deep3")
  c = config_dict.ConfigDict()
  c.task = "linearize"
  c.variant = variant
  c.seed = 0

  # Data: triplets [B, 3, S, S, C]; the test set is fixed.
  c.dataset = "rotating_toys"  # or "rigid_photos"; "smallnorb" (TFDS, 1 channel)
  c.tfds_data_dir = ""  # '' = TFDS' default data dir
  c.image_size = 32
  c.channels = 1
  c.skip = False  # 3.3.3: the third frame skips one step with probability 1/2
  c.num_test_clips = 256
  c.num_interp_clips = 64  # test trajectories scored at t = 0, 1/2, ..., 3
  c.num_sample_clips = 8  # rows of the interpolation figure
  c.eval_batch_size = 64
  # With `latent` on `skip` data: training triplets whose inferred delta fits the linear probe of s.
  c.skip_probe_examples = 1024

  # Model (Table 3.1).
  c.architecture = "deep3"
  c.width_multiplier = config_dict.placeholder(float)  # budget
  c.beta = 5.0  # phase-pooling softmax temperature (eq. 3.7-3.8)

  # Loss (eq. 3.6): lambda times the cosine of successive code differences.
  c.lambda_curvature = 1.0

  # Latent delta (eq. 3.11-3.13, Algorithm 3.1): 0 = none.
  c.latent_dim = 0
  c.latent_steps = 5  # k gradient steps on delta from 0, inside the step
  c.latent_learning_rate = 0.01  # alpha
  # 'thesis': eq. 3.11 as written, z2 + (W delta) * a[z2, z1]; 'residual': a[z2, z1] + (W delta) *
  # (z2 - z1), which at delta = 0 is the plain extrapolation of eq. 3.4.
  c.latent_correction = "thesis"

  # Optimisation (the thesis does not state it).
  c.batch_size = 32
  c.optimizer = "adam"
  c.learning_rate = 1e-3
  c.adam_beta1 = 0.9

  # Run length and bookkeeping.
  c.total_steps = config_dict.placeholder(int)  # budget
  c.log_every = 50
  c.eval_every = config_dict.placeholder(int)  # budget
  c.checkpoint_every = config_dict.placeholder(int)  # budget
  c.keep_checkpoints = 3

  c.budget = "auto"
  c.budgets = config_dict.ConfigDict({
      "cpu": dict(width_multiplier=0.25, total_steps=3000, eval_every=1000,
                  checkpoint_every=500),
      "full": dict(width_multiplier=1.0, total_steps=50_000, eval_every=5000,
                   checkpoint_every=5000),
  })

  for field, value in VARIANTS[variant].items():
    c[field] = value
  if "skip" in modifiers:
    c.skip = True
  if "latent" in modifiers:
    c.latent_dim = 3
  if "tiny" in modifiers:
    c.width_multiplier = 1 / 16
    c.total_steps = 2
    c.eval_every = 2
    c.checkpoint_every = 1
    c.log_every = 1
    c.batch_size = 8
    c.num_test_clips = 16
    c.num_interp_clips = 4
    c.num_sample_clips = 2
    c.eval_batch_size = 8
    c.skip_probe_examples = 64
  c.lock()
  return c
