"""Chapter 4: multi-scale adversarial video prediction (Mathieu, Couprie & LeCun; thesis 4.2-4.3).

    python -m experiments.main --config=experiments/video_pred.py --workdir=runs/vp
    python -m experiments.main --config=experiments/video_pred.py:l1,tiny --workdir=runs/l1_tiny

`--config=experiments/video_pred.py:ARGS`, ARGS a comma-separated list: one variant name and,
optionally, the modifiers `multimodal` and `tiny`. Variants: `model1` (default; Adv + GDL, Table 4.1), `model2` (Table 4.2: batch
norm, Adam, pure adversarial, 64x64), and the rows of Table 4.3: `single_scale_l2`, `l2`, `l1`,
`gdl_l1`, `adv`. `tiny` shrinks any variant so it trains in seconds on a CPU (the tests use it). `multimodal` trains
and evaluates on `multimodal_photos`, where each clip's next frame is one of several known futures
(section 4.4's uncertainty, measured by the mode-fidelity scores).

Fields set to None are filled from `budgets[budget]` when the run starts: `budget='auto'` picks
`cpu` on a CPU (about an hour on 2 cores) and `full` (the thesis' widths) on accelerators;
`--config.budget=full` asks for the thesis' model anywhere.
"""

from __future__ import annotations

from ml_collections import config_dict

from experiments import cli

# Table 4.3, plus Model 1 (Adv + GDL) and Model 2.
VARIANTS = {
    "model1": dict(num_scales=4, lambda_lp=1.0, p=1.0, lambda_adv=0.05, lambda_gdl=1.0, alpha=1.0),
    "single_scale_l2": dict(num_scales=1, lambda_lp=1.0, p=2.0, lambda_adv=0.0, lambda_gdl=0.0),
    "l2": dict(num_scales=4, lambda_lp=1.0, p=2.0, lambda_adv=0.0, lambda_gdl=0.0),
    "l1": dict(num_scales=4, lambda_lp=1.0, p=1.0, lambda_adv=0.0, lambda_gdl=0.0),
    "gdl_l1": dict(num_scales=4, lambda_lp=1.0, p=1.0, lambda_adv=0.0, lambda_gdl=1.0, alpha=1.0),
    "adv": dict(num_scales=4, lambda_lp=1.0, p=1.0, lambda_adv=0.05, lambda_gdl=0.0),
    # Model 2 (4.3.1): batch norm, real and fake in separate minibatches, a per-frame first
    # discriminator layer, generator noise, Adam 2e-4 on both sides, pure adversarial, batch 16,
    # 64x64 patches.
    "model2": dict(model="model2", num_scales=4, lambda_lp=0.0, lambda_gdl=0.0, lambda_adv=1.0,
                   batch_norm=True, per_frame_discriminator=True, generator_noise_std=0.1,
                   g_optimizer="adam", g_learning_rate=2e-4, g_lr_schedule="constant",
                   d_optimizer="adam", d_learning_rate=2e-4, d_lr_schedule="constant",
                   batch_size=16, image_size=64, test_frame_size=128),
}
MODIFIERS = ("tiny", "multimodal")


def _parse(arg: str | None) -> tuple[str, set[str]]:
  return cli.parse_config_arg(arg, VARIANTS, MODIFIERS, "model1")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  """The config of one chapter-4 variant; see the module docstring for `arg`."""
  variant, modifiers = _parse(arg)
  c = config_dict.ConfigDict()
  c.task = "video_pred"
  c.variant = variant
  c.seed = 0

  # Data.
  c.dataset = "moving_photos"  # or "multimodal_photos"; "ucf101", "moving_mnist" (TFDS);
  # "video_files" (a folder of video files, see below)
  c.tfds_data_dir = ""  # '' = TFDS' default data dir
  # dataset="video_files" (uncertainty_jax/data/video_files.py): a folder, searched recursively,
  # or a glob. Frames are decoded once (OpenCV) into `video_cache_dir` ('' =
  # ~/.cache/uncertainty_jax/video_files), every `frame_stride`-th kept, short side resized to
  # `video_short_side` (0 = native; 240 is UCF101's). Files split by a hash of their path
  # (`test_fraction`) or by a UCF101-style list of test files (`split_file`; `train_split_file`
  # restricts training); every `test_every`-th test file is used (10 for the thesis' UCF101
  # protocol). Test clips are full frames; training patches are drawn where the RMS difference
  # between successive frames exceeds `patch_motion_threshold`, up to `patch_tries` draws.
  c.video_dir = ""
  c.video_short_side = 240
  c.frame_stride = 1
  c.test_fraction = 0.1
  c.split_file = ""
  c.train_split_file = ""
  c.test_every = 1
  c.video_cache_dir = ""
  c.patch_motion_threshold = 0.02
  c.patch_tries = 10
  c.num_input_frames = 4
  c.image_size = 32  # training patch
  c.test_frame_size = 64  # full test frames; the generator is fully convolutional
  c.num_test_clips = 64
  c.test_future_frames = 4  # frames per test clip after the inputs (2 scored, all animated)
  c.motion_threshold = 0.5  # pixels/frame above which the renderer marks a pixel as moving
  # Pixels/frame above which the optical flow (OpenCV Farneback) marks a pixel as moving: the
  # moving-area mask of Table 4.4b. 0.5 matches the renderer's exact mask best on the embedded data.
  c.flow_mask_threshold = 0.5
  c.eval_batch_size = 16
  # On data with several possible futures (`multimodal`): predictions drawn per test input for the
  # mode-fidelity scores, when the generator has noise (Model 2); deterministic models give one.
  c.num_mode_samples = 8
  c.num_sample_clips = 4

  # Model (Table 4.1 / 4.2).
  c.model = "model1"
  c.num_scales = 4
  c.width_multiplier = config_dict.placeholder(float)  # budget
  c.batch_norm = False
  c.per_frame_discriminator = False
  c.generator_noise_std = 0.0

  # Loss (eq. 4.6); each weight has a schedule from its value to `_final` over the run.
  c.lambda_adv = 0.05
  c.lambda_adv_schedule = "constant"
  c.lambda_adv_final = config_dict.placeholder(float)
  c.lambda_lp = 1.0
  c.lambda_lp_schedule = "constant"
  c.lambda_lp_final = config_dict.placeholder(float)
  c.p = 1.0
  c.lambda_gdl = 1.0
  c.lambda_gdl_schedule = "constant"
  c.lambda_gdl_final = config_dict.placeholder(float)
  c.alpha = 1.0

  # Optimisation (4.3.1): SGD, rho_G 0.04 decaying to 0.005, rho_D 0.02.
  c.batch_size = 8  # global, across all devices
  c.g_optimizer = "sgd"
  c.g_learning_rate = 0.04
  c.g_lr_schedule = "geometric"
  c.g_final_learning_rate = config_dict.placeholder(float)
  c.d_optimizer = "sgd"
  c.d_learning_rate = 0.02
  c.d_lr_schedule = "constant"
  c.d_final_learning_rate = config_dict.placeholder(float)
  # The discriminator's loss over the minibatch: 'sum' as Algorithm 4.1 writes its update, or
  # 'mean' (rho_D then acts B times smaller). With SGD at rho_D = 0.02 and 'mean', D hardly
  # separates real from predicted frames in the `cpu` budget; the reproduction uses 'sum'.
  c.d_loss_reduction = "mean"
  c.adam_beta1 = 0.5

  # Run length and bookkeeping.
  c.total_steps = config_dict.placeholder(int)  # budget
  c.log_every = 10
  c.eval_every = config_dict.placeholder(int)  # budget
  c.checkpoint_every = config_dict.placeholder(int)  # budget
  c.keep_checkpoints = 3

  # What None fields become. `cpu` is sized to finish in about an hour on a 2-core CPU and beat
  # copying the last frame on moving areas; `full` is the thesis' Model 1 (the thesis does not give
  # its number of iterations).
  c.budget = "auto"
  c.budgets = config_dict.ConfigDict({
      "cpu": dict(width_multiplier=0.25, total_steps=6000, eval_every=1000, checkpoint_every=500,
                  g_final_learning_rate=0.005),
      "full": dict(width_multiplier=1.0, total_steps=200_000, eval_every=5000,
                   checkpoint_every=5000, g_final_learning_rate=0.005),
  })

  for field, value in VARIANTS[variant].items():
    c[field] = value

  if "multimodal" in modifiers:
    c.dataset = "multimodal_photos"

  if "tiny" in modifiers:
    c.width_multiplier = 1 / 32
    c.total_steps = 2
    c.eval_every = 2
    c.checkpoint_every = 1
    c.log_every = 1
    c.batch_size = 8
    c.image_size = 32
    c.test_frame_size = 32
    c.num_test_clips = 8
    c.eval_batch_size = 8
    c.num_sample_clips = 2

  c.lock()
  return c
