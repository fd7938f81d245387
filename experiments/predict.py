"""A trained chapter 4 run on any video: truth and prediction side by side, with per-frame scores.

    python -m experiments.predict --workdir=runs/vp --input=clip.mp4 --num_frames=4 \\
        --output=results/clip_pred.mp4
    python -m experiments.predict --workdir=runs/vp --input=frames_folder/ --num_frames=8 \\
        --start_frame=10 --output=results/clip_pred.gif

Restores the latest checkpoint of `--workdir` with the config it was trained with
(`<workdir>/config.json`), reads `--input` (a video file or a folder of images, sorted by name),
fits the frames to the generator's size multiple (`--fit`), and predicts `--num_frames` frames
recursively from each window of `num_input_frames` true frames: one window at `--start_frame`, or
windows every `--window_stride` frames (default `--num_frames`, so the predicted frames tile the
clip). Writes `--output` (.mp4, .avi, .mkv or .gif): for each window its input frames, then
`[truth (green) | prediction (red)]`; and `<output>.csv`, the PSNR and SSIM of every predicted
frame, the model's and those of copying the last input frame. Frame indices count the frames kept
after `--frame_stride`.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from experiments import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "A trained run of experiments/video_pred.py.")
  flags.DEFINE_string("input", None, "A video file, or a folder of images (one clip, sorted by "
                      "name).")
  flags.DEFINE_string("output", None, "The video to write: .mp4, .avi, .mkv or .gif. The scores "
                      "go to OUTPUT.csv.")
  flags.DEFINE_integer("num_frames", 4, "Frames predicted (recursively) per window.")
  flags.DEFINE_integer("start_frame", None, "Predict from this window only; default: every "
                       "window.")
  flags.DEFINE_integer("window_stride", None, "Frames between window starts; default: "
                       "--num_frames.")
  flags.DEFINE_enum("fit", "crop", ["crop", "pad"], "Frames whose sides are not multiples of "
                    "2^(num_scales-1): centre-crop them, or pad them for the model and crop the "
                    "predictions back.")
  flags.DEFINE_integer("short_side", 0, "Resize frames so their short side has this many "
                       "pixels; 0 keeps the input size.")
  flags.DEFINE_integer("frame_stride", 1, "Keep every FRAME_STRIDE-th input frame.")
  flags.DEFINE_float("fps", None, "Frames per second of the output; default 8 for .gif, 25 "
                     "otherwise.")
  flags.DEFINE_integer("batch_size", 8, "Windows predicted at once.")
  flags.DEFINE_integer("scale", 1, "Upscale the output frames this many times (pixel "
                       "repetition).")
  flags.mark_flags_as_required(["workdir", "input", "output"])


def _check_flags() -> None:
  """Flag values that need no file: checked before anything is read or computed."""
  from uncertainty_jax.evaluation import predict  # pylint: disable=g-import-not-at-top
  predict.check_output_path(FLAGS.output)
  for name, minimum in (("num_frames", 1), ("batch_size", 1), ("short_side", 0),
                        ("frame_stride", 1), ("scale", 1)):
    if FLAGS[name].value < minimum:
      raise ValueError(f"--{name}: {FLAGS[name].value} must be at least {minimum}")
  for name, minimum in (("start_frame", 0), ("window_stride", 1)):
    if FLAGS[name].value is not None and FLAGS[name].value < minimum:
      raise ValueError(f"--{name}: {FLAGS[name].value} must be at least {minimum}")
  if FLAGS.fps is not None and not FLAGS.fps > 0:
    raise ValueError(f"--fps: {FLAGS.fps} must be positive")


def run(workdir: str, input_path: str, output: str) -> None:
  """Reads, predicts, writes; prints progress. Raises ValueError, CheckpointError or OSError."""
  from uncertainty_jax.data import video_files  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.evaluation import predict  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.evaluation import video_pred as evaluation  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  ext = predict.check_output_path(output)
  config = cli.load_run_config(workdir, task="video_pred", chapter="chapter 4", flag="workdir",
                               config_file="experiments/video_pred.py")
  m, n = config.num_input_frames, FLAGS.num_frames
  multiple = 2 ** (config.num_scales - 1)
  frames = video_files.read_frames(input_path, short_side=FLAGS.short_side,
                                   frame_stride=FLAGS.frame_stride)
  t, h, w = frames.shape[:3]
  print(f"read {t} frames of {w}x{h} from {input_path}")
  # A clip too short or a bad start frame fails here, before the checkpoint is loaded.
  starts = predict.window_starts(t, num_input_frames=m, num_frames=n,
                                 start_frame=FLAGS.start_frame, window_stride=FLAGS.window_stride)
  _, description = predict.fit_frames(frames[:1], multiple, FLAGS.fit)

  task, state, mesh = loop.restore(config, workdir)
  print(f"loaded step {int(state.step)} of {config.variant} (model {config.model}, "
        f"{config.num_scales} scales, {m} input frames) from {workdir}")
  if description:
    print(description)
  predictor = task.predictor(mesh, n)
  variables = state.generator.variables
  predict_fn = lambda x: np.asarray(predictor(variables, evaluation.replicate(x, mesh)))
  result = predict.predict_clip(
      predict_fn, video_files.to_unit_range(frames), num_input_frames=m, num_frames=n,
      start_frame=FLAGS.start_frame, window_stride=FLAGS.window_stride,
      batch_size=FLAGS.batch_size, size_multiple=multiple, fit=FLAGS.fit)
  size = result.predictions.shape[2:4]
  shown = ", ".join(map(str, starts[:8])) + (", ..." if len(starts) > 8 else "")
  windows = (f"the window starting at frame {shown}" if len(starts) == 1 else
             f"each of {len(starts)} windows (starting at frames {shown})")
  print(f"predicted {n} frames from {windows} on frames of {size[1]}x{size[0]}")
  video = predict.side_by_side(result, scale=FLAGS.scale)
  fps = FLAGS.fps if FLAGS.fps is not None else (8.0 if ext == ".gif" else 25.0)
  predict.write_video(output, video, fps)
  print(f"wrote {output} ({len(video)} frames of {video.shape[2]}x{video.shape[1]} at {fps:g} "
        f"fps)")
  csv_path = f"{output}.csv"
  predict.write_scores_csv(csv_path, result)
  print(f"wrote {csv_path} ({result.psnr.size} predicted frames)")
  print("mean over windows, model vs copying the last input frame:")
  print(predict.summary(result))


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  # FFmpeg and OpenCV write their own lines to stderr for a file they cannot read; the error line
  # below says it once.
  os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
  os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
  from uncertainty_jax.training.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  try:
    _check_flags()
    run(os.path.abspath(FLAGS.workdir), FLAGS.input, FLAGS.output)
  except (ValueError, CheckpointError, OSError) as e:
    message = " ".join(str(e).split())
    print(f"error: {message}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
