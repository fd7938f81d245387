"""Two processes on the loopback address train like one: `jax.distributed`, each reading its share."""

import os
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import REPO
from uncertainty_jax.training import loop
from uncertainty_jax.training import writers


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_log_the_same_losses_as_one(tmp_path, tiny_config):
  config = tiny_config("model1")
  config.total_steps = 2
  single = str(tmp_path / "single")
  loop.train_and_evaluate(config, single)

  multi = str(tmp_path / "multi")
  port = _free_port()
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid))
    env.pop("XLA_FLAGS", None)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "experiments.main",
         "--config=experiments/video_pred.py:model1,tiny", f"--workdir={multi}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  assert "2 devices" in outputs[0][1]

  a = {r["step"]: r for r in writers.read_metrics(single)}
  b = {r["step"]: r for r in writers.read_metrics(multi)}
  assert sorted(a) == sorted(b)
  for step in a:
    assert set(a[step]) == set(b[step])
    for key in a[step]:
      np.testing.assert_allclose(b[step][key], a[step][key], rtol=2e-4, atol=1e-5,
                                 err_msg=f"step {step} {key}")
  assert sorted(os.listdir(os.path.join(multi, "checkpoints"))) == ["1", "2"]
