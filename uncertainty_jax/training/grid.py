"""The MNIST grid search of thesis 6.3.1 (Table 6.1): configurations, selection, training, records.

Every configuration of Table 6.1, for EBGANs and GANs, is a `GridPoint`. Points sharing an
architecture (framework, nLayerG, sizeG, nLayerD, sizeD) train together as the members of one
vmapped sweep (`training.sweep`); what varies inside such a group (dropout, optimizers, learning
rate, seed) is state, not shape. Each finished configuration appends one JSON line to
`<workdir>/results.jsonl` and, optionally, its samples to `<workdir>/samples/<id>.npy`; a rerun
skips the configurations already recorded, so an interrupted search resumes where it stopped.
`<workdir>/grid.json` pins what the records depend on (data, steps, margin, ...): a search with
other settings refuses to write into it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from uncertainty_jax.models import ebgan as ebgan_models
from uncertainty_jax.training import sweep as sweep_lib
from uncertainty_jax.training import writers

FRAMEWORKS = ("ebgan", "gan", "ebgan_pt")
RESULTS = "results.jsonl"
FINGERPRINT = "grid.json"
# Parameters (of all members together, Adam moments included) one vmapped chunk may hold.
MAX_CHUNK_FLOATS = 200_000_000
# The config fields the records depend on; a grid workdir accepts only the same values.
FINGERPRINT_FIELDS = ("seed", "dataset", "image_size", "latent", "latent_dim", "margin", "energy_reduction",
                      "batch_size", "adam_beta1", "batch_norm_g", "batch_norm_d",
                      "num_eval_samples")


@dataclasses.dataclass(frozen=True)
class GridPoint:
  """One configuration of Table 6.1 (plus its seed and, for EBGAN-PT, lambda_PT)."""

  framework: str
  num_layers_g: int
  size_g: int
  num_layers_d: int
  size_d: int
  dropout_d: bool
  optimizer_d: str
  optimizer_g: str
  learning_rate: float
  seed: int = 0

  @property
  def id(self) -> str:
    return (f"{self.framework}-g{self.num_layers_g}x{self.size_g}-d{self.num_layers_d}x"
            f"{self.size_d}-drop{int(self.dropout_d)}-{self.optimizer_d}-{self.optimizer_g}-"
            f"lr{self.learning_rate:g}-s{self.seed}")

  @property
  def architecture(self) -> tuple:
    """What the members of one vmapped group share."""
    return (self.framework, self.num_layers_g, self.size_g, self.num_layers_d, self.size_d)

  @property
  def lambda_pt(self) -> float:
    return 0.1 if self.framework == "ebgan_pt" else 0.0

  def record(self) -> dict:
    return dataclasses.asdict(self)


def table_6_1(grid_config) -> list[GridPoint]:
  """Every configuration of the search for `grid_config.frameworks`, in a fixed order.

  EBGANs: Adam on both sides at `ebgan_learning_rate`; GANs: optimD and optimG in {adam, sgd} and
  `learning_rates`; both over nLayerG, nLayerD, sizeG, sizeD, dropoutD (`grid_config`'s
  `num_layers_g`, ... : Table 6.1's values by default) and `seeds`. 'ebgan_pt' searches what EBGAN
  does, with lambda_PT = 0.1.

  Raises:
    ValueError: an unknown framework, or a dimension with no value (an empty grid).
  """
  frameworks = tuple(grid_config.frameworks)
  unknown = [f for f in frameworks if f not in FRAMEWORKS]
  if unknown or not frameworks:
    raise ValueError(f"grid.frameworks: {list(frameworks)} must be a non-empty subset of "
                     f"{list(FRAMEWORKS)}")
  dims = ("num_layers_g", "size_g", "num_layers_d", "size_d", "dropout_d", "seeds",
          "learning_rates")
  empty = [d for d in dims if not tuple(grid_config[d])]
  if empty:
    raise ValueError(f"grid: {', '.join('grid.' + d for d in empty)} has no value, so the grid is "
                     f"empty; give at least one value each")
  for d in dims:
    values = tuple(grid_config[d])
    if len(set(values)) != len(values):
      raise ValueError(f"grid.{d}: {values} repeats a value, which would train the same "
                       f"configuration twice; give each value once")
  if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in grid_config.seeds):
    raise ValueError(f"grid.seeds: {tuple(grid_config.seeds)} must be integers >= 0")
  rates = (*grid_config.learning_rates, grid_config.ebgan_learning_rate)
  if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in rates):
    raise ValueError(f"grid.learning_rates, grid.ebgan_learning_rate: {rates} must be positive "
                     f"numbers")
  for d in ("num_layers_g", "num_layers_d"):
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in grid_config[d]):
      raise ValueError(f"grid.{d}: {tuple(grid_config[d])} must be integers >= 2")
  for d in ("size_g", "size_d"):
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in grid_config[d]):
      raise ValueError(f"grid.{d}: {tuple(grid_config[d])} must be positive integers")
  points = []
  shapes = list(itertools.product(grid_config.num_layers_g, grid_config.size_g,
                                  grid_config.num_layers_d, grid_config.size_d))
  for framework in frameworks:
    if framework == "gan":
      optim = list(itertools.product(("adam", "sgd"), ("adam", "sgd"),
                                     tuple(grid_config.learning_rates)))
    else:
      optim = [("adam", "adam", grid_config.ebgan_learning_rate)]
    for (lg, sg, ld, sd), dropout, (od, og, lr), seed in itertools.product(
        shapes, grid_config.dropout_d, optim, tuple(grid_config.seeds)):
      points.append(GridPoint(framework, lg, sg, ld, sd, bool(dropout), od, og, float(lr),
                              int(seed)))
  return points


def group_by_architecture(points: Iterable[GridPoint]) -> list[list[GridPoint]]:
  """Points grouped by `architecture`, groups and members in first-seen order."""
  groups: dict[tuple, list[GridPoint]] = {}
  for p in points:
    groups.setdefault(p.architecture, []).append(p)
  return list(groups.values())


def select(points: Sequence[GridPoint], *, sample: Optional[int] = None, seed: int = 0,
           shard: int = 0, num_shards: int = 1) -> list[GridPoint]:
  """The points one process trains: an even sample of the grid, then its shard.

  Args:
    points: the whole grid (`table_6_1`).
    sample: None for every point; else about `sample` points, split evenly over the frameworks
      and drawn as whole architectures (every configuration of an architecture, so each group
      still trains under one vmap): architectures are taken in an order shuffled with `seed`,
      the same for every framework, until the framework's share is reached.
    seed: the draw's seed; every shard must use the same one.
    shard, num_shards: this process' share: the selected architectures dealt round-robin, so the
      shards are disjoint and together are the selection.

  Raises:
    ValueError: on a non-positive sample, a shard outside [0, num_shards), or an empty result.
  """
  if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
    raise ValueError(f"num_shards: {num_shards!r} must be a positive integer")
  if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < num_shards:
    raise ValueError(f"shard: {shard!r} must be an integer in [0, {num_shards})")
  groups = group_by_architecture(points)
  if sample is not None:
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
      raise ValueError(f"sample: {sample!r} must be a positive integer")
    frameworks = sorted({g[0].framework for g in groups})
    shapes = sorted({g[0].architecture[1:] for g in groups})
    order = {s: i for i, s in enumerate(np.random.default_rng(seed).permutation(len(shapes)))}
    rank = {s: order[i] for i, s in enumerate(shapes)}
    chosen = []
    for framework in frameworks:
      share = math.ceil(sample / len(frameworks))
      mine = sorted((g for g in groups if g[0].framework == framework),
                    key=lambda g: rank[g[0].architecture[1:]])
      taken = 0
      for g in mine:
        if taken >= share:
          break
        chosen.append(g)
        taken += len(g)
    groups = chosen
  groups = groups[shard::num_shards]
  if not groups:
    raise ValueError(f"grid: no configuration selected (sample={sample}, shard {shard} of "
                     f"{num_shards}); use fewer shards or a larger --sample")
  return [p for g in groups for p in g]


# --- the records --------------------------------------------------------------------------------


def read_records(workdir: str) -> list[dict]:
  """The records in `<workdir>/results.jsonl` (`ebgan_figures.read_grid_records`; none if absent)."""
  from uncertainty_jax.evaluation import ebgan_figures  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, RESULTS)
  return ebgan_figures.read_grid_records(path) if os.path.exists(path) else []


def _append(path: str, records: Sequence[dict]) -> None:
  # One write per group; a kill mid-write leaves at most a torn last line, which is skipped.
  text = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)
  if os.path.exists(path):
    with open(path, "rb+") as f:
      data = f.read()
      if data and not data.endswith(b"\n"):
        f.truncate(data.rfind(b"\n") + 1)  # drop a torn last line before appending after it
  with open(path, "a") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def fingerprint(config) -> dict:
  """What the records of a grid depend on: a few config fields and the grid's steps."""
  fp = {k: config[k] for k in FINGERPRINT_FIELDS}
  fp["image_size"] = fp["image_size"] if config.dataset != "digits" else None
  fp["steps"] = config.grid.steps
  return json.loads(json.dumps(fp))


def check_workdir(config, workdir: str) -> None:
  """Creates `workdir`'s fingerprint, or checks it matches; never changes an existing one.

  Raises:
    ValueError: the workdir holds a grid run with other settings (naming the fields that differ).
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, FINGERPRINT)
  mine = fingerprint(config)
  if os.path.exists(path):
    with open(path) as f:
      theirs = json.load(f)
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
      shown = ", ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in diff[:4])
      raise ValueError(f"grid: {workdir} holds a grid search with other settings ({shown}); its "
                       f"results are kept; use another --workdir or the same settings")
    return
  writers.replace_atomically(path, json.dumps(mine, indent=2, sort_keys=True))


# --- training -----------------------------------------------------------------------------------


def point_config(config, point: GridPoint):
  """The task config of `point`'s architecture (what varies inside a group is set per member)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.framework = "gan" if point.framework == "gan" else "ebgan"
    c.model = "fc"
    c.num_layers_g, c.size_g = point.num_layers_g, point.size_g
    c.num_layers_d, c.size_d = point.num_layers_d, point.size_d
    c.dropout_d = 0.0
    c.lambda_pt = 0.0
  return c


def member(point: GridPoint) -> sweep_lib.Member:
  """The sweep member of `point`: its seed, optimizers, dropout rate and lambda_PT."""
  return sweep_lib.Member(
      seed=point.seed,
      optimizers={"g": (point.optimizer_g, point.learning_rate),
                  "d": (point.optimizer_d, point.learning_rate)},
      hparams={"dropout_d": ebgan_models.GRID_DROPOUT_RATE if point.dropout_d else 0.0,
               "lambda_pt": point.lambda_pt})


def chunk_size(task, num_members: int) -> int:
  """How many members of `task`'s architecture fit one vmapped chunk (`MAX_CHUNK_FLOATS`)."""
  import jax  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
  params = sum(np.prod(x.shape) for net in (shapes.generator, shapes.discriminator)
               for x in jax.tree_util.tree_leaves(net.params))
  # Parameters, gradients and Adam's two moments.
  return max(1, min(num_members, int(MAX_CHUNK_FLOATS // (4 * params))))


def train_group(config, points: Sequence[GridPoint], dataset, score: Callable, *,
                keep_samples: int = 0, log: Callable[[str], None] = print
                ) -> list[tuple[dict, Optional[np.ndarray]]]:
  """Trains one architecture's points together; returns `(record, samples or None)` per point.

  Args:
    config: the `experiments/ebgan.py:grid` config.
    points: points sharing one architecture.
    dataset: the image dataset (`train_batch`).
    score: `score(samples [N, ...]) -> dict` (the task's `score_samples`), e.g. I'.
    keep_samples: how many of each point's evaluation samples to return.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.tasks import ebgan as ebgan_task  # pylint: disable=g-import-not-at-top
  task = ebgan_task.EBGANTask(point_config(config, points[0]), sweepable=True)
  size = chunk_size(task, len(points))
  steps = config.grid.steps
  out = []
  for start in range(0, len(points), size):
    chunk = list(points[start:start + size])
    members = [member(p) for p in chunk]
    result = sweep_lib.train_members(task, dataset, members, steps)
    z = task.eval_latents(config.num_eval_samples)
    samples = np.asarray(jax.jit(jax.vmap(task.generate, in_axes=(0, None)))(
        result.state.generator.variables, z))
    per_point = result.seconds / len(chunk)
    for i, p in enumerate(chunk):
      finite = bool(np.all(np.isfinite(samples[i])))
      diverged = bool(result.nonfinite[i]) or not finite
      scores = {} if diverged else score(samples[i])
      final = {k: (float(v[i]) if np.isfinite(v[i]) else None)
               for k, v in sorted(result.final.items()) if k in ("d/loss", "g/loss")}
      record = {**p.record(), "id": p.id, "steps": steps, "diverged": diverged,
                "inception_score": scores.get("inception_score"),
                "classes_covered": scores.get("classes_covered"), "final": final,
                "seconds": round(per_point, 3), "group_size": len(chunk)}
      out.append((record, samples[i][:keep_samples] if keep_samples else None))
    log(f"{points[0].architecture}: {len(chunk)} configurations in {result.seconds:.1f} s")
  return out


def run(config, workdir: str, points: Sequence[GridPoint], *, log: Callable[[str], None] = print
        ) -> list[dict]:
  """Trains the `points` not yet recorded in `workdir`, group by group, appending their records.

  Returns:
    Every record in `workdir` after the run (earlier ones included).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from uncertainty_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.tasks import ebgan as ebgan_task  # pylint: disable=g-import-not-at-top
  from uncertainty_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  check_workdir(config, workdir)
  done = {r["id"] for r in read_records(workdir)}
  todo = [p for p in points if p.id not in done]
  log(f"grid: {len(points)} configurations selected, {len(points) - len(todo)} already in "
      f"{os.path.join(workdir, RESULTS)}, {len(todo)} to train")
  if not todo:
    return read_records(workdir)
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  dataset = data_lib.get_image_dataset(config, sharding_lib.batch_sharding(mesh))
  scorer = ebgan_task.EBGANTask(config)
  scorer.prepare(workdir)
  keep = config.grid.keep_samples
  sample_dir = os.path.join(workdir, "samples")
  os.makedirs(sample_dir, exist_ok=True)
  groups = group_by_architecture(todo)
  start = time.time()
  trained = 0
  for n, group in enumerate(groups):
    results = train_group(config, group, dataset, lambda s: scorer.score_samples(s, dataset),
                          keep_samples=keep, log=log)
    for record, samples in results:
      if samples is not None:
        path = os.path.join(sample_dir, f"{record['id']}.npy")
        tmp = f"{path}.tmp.npy"
        np.save(tmp, samples.astype(np.float32))
        os.replace(tmp, path)
    _append(os.path.join(workdir, RESULTS), [r for r, _ in results])
    trained += len(group)
    elapsed = time.time() - start
    rate = trained / elapsed * 3600
    best = max((r["inception_score"] for r, _ in results if r["inception_score"] is not None),
               default=float("nan"))
    log(f"grid: group {n + 1}/{len(groups)} done, {trained}/{len(todo)} configurations, "
        f"{rate:.0f} configurations/hour, best I' in group {best:.3f}, "
        f"{elapsed / 60:.1f} min elapsed")
  return read_records(workdir)
