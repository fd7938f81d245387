"""The chapter-4 evaluation: flow masks, reference predictors, mode scores, eval CLI."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import run_main
from uncertainty_jax import metrics
from uncertainty_jax.evaluation import flow
from uncertainty_jax.evaluation import modes
from uncertainty_jax.evaluation import video_pred as evaluation
from uncertainty_jax.training import sharding
from uncertainty_jax.training import writers

CONFIG = "--config=experiments/video_pred.py"


def _textured_clips(num_clips=3, num_frames=6, size=32, shift=(1, 2), seed=0):
  """Clips of a smooth random texture translated by an integral `shift` per frame."""
  rng = np.random.default_rng(seed)
  big = size + 4 * num_frames * max(abs(s) for s in shift)
  texture = rng.uniform(-1, 1, (num_clips, big // 4, big // 4, 3)).astype(np.float32)
  texture = np.repeat(np.repeat(texture, 4, axis=1), 4, axis=2)  # blocks: Farneback tracks them
  clips = []
  for t in range(num_frames):
    dy, dx = shift[0] * t, shift[1] * t
    clips.append(np.roll(texture, (dy, dx), axis=(1, 2))[:, :size, :size])
  return np.stack(clips, axis=1)


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


def _masked_psnr(pred, target, mask):
  p, t = metrics.masked(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask))
  return np.asarray(metrics.psnr(p, t, 2.0))


def test_predictor_equal_to_a_reference_scores_as_that_reference(mesh):
  frames = _textured_clips()
  m = 4
  batch = {"frames": frames, "motion_mask": np.ones(frames.shape[:4], bool)}
  copy_last = lambda inputs: jnp.repeat(inputs[:, -1:], 2, axis=1)
  results = evaluation.evaluate(copy_last, [batch], num_input_frames=m, mesh=mesh)
  for region in ("full", "moving", "moving_exact"):
    for k in (1, 2):
      for name in ("psnr", "ssim", "sharpness"):
        key = f"{region}/frame{k}/{name}"
        np.testing.assert_allclose(results[key], results[f"last_input/{key}"], rtol=1e-6)
  assert results["num_clips"] == 3
  # The flow reference moves the texture along its motion: it beats copying by a wide margin.
  assert results["flow/full/frame1/psnr"] > results["last_input/full/frame1/psnr"] + 10


def test_moving_region_is_the_flow_mask_of_successive_true_frames(mesh):
  frames = _textured_clips(shift=(0, 2))
  frames[1] = frames[1, :1]  # clip 1 is still: an empty flow mask, left out of the moving means
  m = 4
  noisy = lambda inputs: jnp.asarray(inputs[:, -1:] * 0.9 + 0.05).repeat(2, axis=1)
  results = evaluation.evaluate(noisy, [{"frames": frames}], num_input_frames=m, mesh=mesh,
                                flow_threshold=1.0)
  preds = np.repeat(frames[:, m - 1:m] * 0.9 + 0.05, 2, axis=1)
  for k in (1, 2):
    mask = flow.motion_mask(frames[:, m + k - 2], frames[:, m + k - 1], 1.0)
    assert not mask[1].any() and mask[0].mean() > 0.5
    moving = [0, 2]
    expected = _masked_psnr(preds[moving, k - 1], frames[moving, m + k - 1], mask[moving]).mean()
    np.testing.assert_allclose(results[f"moving/frame{k}/psnr"], expected, rtol=1e-5)
    np.testing.assert_allclose(results[f"mask/frame{k}/moving_fraction"], mask.mean(), rtol=1e-6)
  assert not any(key.startswith("moving_exact/") for key in results)  # no exact mask given


def test_mask_iou_against_the_exact_mask(mesh):
  frames = _textured_clips(num_clips=2)
  exact = np.zeros(frames.shape[:4], bool)
  exact[:, :, :16] = True  # the top half
  batch = {"frames": frames, "motion_mask": exact}
  results = evaluation.evaluate(lambda x: jnp.repeat(x[:, -1:], 2, axis=1), [batch],
                                num_input_frames=4, mesh=mesh)
  for k in (1, 2):
    fm = flow.motion_mask(frames[:, 3 + k - 1], frames[:, 4 + k - 1], 0.5)
    ex = exact[:, 4 + k - 1]
    iou = ((fm & ex).sum(axis=(1, 2)) / (fm | ex).sum(axis=(1, 2))).mean()
    np.testing.assert_allclose(results[f"mask/frame{k}/iou"], iou, rtol=1e-6)


def test_mode_scores_of_model_and_references(mesh):
  frames = _textured_clips(num_clips=4)
  m = 4
  futures = np.stack([frames[:, m], frames[:, m - 1], -frames[:, m]], axis=1)  # [B, 3, ...]
  probs = np.array([0.5, 0.25, 0.25])
  batch = {"frames": frames, "futures": futures}
  oracle = lambda inputs: jnp.asarray(np.stack([frames[:, m], frames[:, m + 1]], axis=1))
  draws = {0: futures[:, 0], 1: futures[:, 2]}
  sample = lambda inputs, i: jnp.asarray(draws[i % 2][:, None])
  results = evaluation.evaluate(oracle, [batch], num_input_frames=m, mesh=mesh,
                                mode_probs=probs, sample=sample, num_samples=2)
  # The model's two draws land exactly on futures 0 and 2.
  assert results["modes/mode_distance"] == 0.0
  np.testing.assert_allclose(results["modes/mode_coverage"], 2 / 3)
  samples = np.stack([futures[:, 0], futures[:, 2]], axis=1)
  expected = modes.mode_scores(samples, futures, probs)
  for name, value in expected.items():
    np.testing.assert_allclose(results[f"modes/{name}"], value, rtol=1e-6)
  # Copying the last input is exactly future 1 (the object stops).
  assert results["last_input/modes/mode_distance"] == 0.0
  np.testing.assert_allclose(results["last_input/modes/mode_coverage"], 1 / 3)


def test_eval_mode_writes_eval_json_and_a_metrics_line(tmp_path):
  workdir = str(tmp_path / "run")
  proc = run_main([f"{CONFIG}:l1,tiny", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdir, "eval.json")) as f:
    trained = json.load(f)
  assert trained["step"] == 2  # training writes its latest evaluation there too
  os.remove(os.path.join(workdir, "eval.json"))
  proc = run_main([f"{CONFIG}:l1,tiny", f"--workdir={workdir}", "--mode=eval"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdir, "eval.json")) as f:
    result = json.load(f)
  assert result["step"] == 2
  for prefix in ("", "last_input/", "flow/"):
    for region in ("full", "moving", "moving_exact"):
      for k in (1, 2):
        for name in ("psnr", "ssim", "sharpness"):
          assert np.isfinite(result[f"{prefix}{region}/frame{k}/{name}"])
  assert 0 <= result["mask/frame1/iou"] <= 1
  # The same numbers as the evaluation at the end of training, and as a new metrics line.
  for key, value in trained.items():
    np.testing.assert_allclose(result[key], value, rtol=1e-5, err_msg=key)
  line = [r for r in writers.read_metrics(workdir) if "eval/flow/full/frame1/psnr" in r][-1]
  assert line["step"] == 2
  for key, value in result.items():
    if key != "step":
      np.testing.assert_allclose(line[f"eval/{key}"], value, rtol=1e-6, err_msg=key)


def test_eval_mode_on_a_run_of_another_model_is_a_clear_error(tmp_path):
  workdir = str(tmp_path / "run")
  assert run_main([f"{CONFIG}:l1,tiny", f"--workdir={workdir}"]).returncode == 0
  proc = run_main([f"{CONFIG}:single_scale_l2,tiny", f"--workdir={workdir}", "--mode=eval"])
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "Traceback" not in proc.stderr


def test_model2_draws_several_futures_on_multimodal_data(tmp_path, tiny_config):
  from uncertainty_jax.training import loop  # pylint: disable=g-import-not-at-top
  config = tiny_config("model2,multimodal")
  config.num_mode_samples = 3
  results = loop.train_and_evaluate(config, str(tmp_path / "run"))
  for prefix in ("", "last_input/", "flow/"):
    for name in modes.MODE_SCORES:
      assert np.isfinite(results[f"{prefix}modes/{name}"])
  # The generator's noise is on when sampling: different keys, different futures; same key, same.
  task, state, mesh = loop.restore(config, str(tmp_path / "run"))
  draw = task.predictor(mesh, 1, sample=True)
  inputs = evaluation.replicate(np.zeros((2, 4, 32, 32, 3), np.float32), mesh)
  variables = state.generator.variables
  a, b, c = (np.asarray(draw(variables, inputs, jax.random.PRNGKey(i))) for i in (0, 1, 0))
  assert np.abs(a - b).max() > 1e-4
  np.testing.assert_array_equal(a, c)
  deterministic = np.asarray(task.predictor(mesh, 1)(variables, inputs))
  np.testing.assert_array_equal(deterministic, np.asarray(task.predictor(mesh, 1)(variables,
                                                                                   inputs)))
