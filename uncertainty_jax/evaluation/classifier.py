"""The digit classifier behind the tweaked inception score I' (thesis eq. 6.62, section 6.3.1).

Section 6.3.1 scores generated MNIST digits with "a regular 3 layer convolutional network trained
on MNIST": `Classifier` is two 3x3 convolutions and one dense layer, `train_classifier` fits it
with Adam, and `TrainedClassifier.probs` gives the `p(y|x)` table that
`uncertainty_jax.metrics.tweaked_inception_score` takes. Compare I' only between samples scored by
one and the same classifier: `load_or_train_classifier` keeps one per dataset on disk and refuses
to reuse it for other data.

On disk a classifier is a directory holding `variables/` (an Orbax `StandardCheckpointer`
checkpoint of the Flax variables) and `classifier.json` (num_classes, image_shape, test_accuracy,
the training settings and the caller's `meta`, e.g. the dataset name). `save_classifier` writes
both into a hidden sibling directory and renames it into place once complete, so an interrupted
save leaves at most a `.<name>.partial-*` directory, never a classifier that loads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
import shutil
import uuid
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

_META_FILE = 'classifier.json'
_VARIABLES_DIR = 'variables'
_FORMAT_VERSION = 1
# Training losses are read back (and `progress` called) once per this many steps.
_LOG_EVERY = 100
_MIN_SIZE = 8
# Images are checked to lie in [-1, 1] up to this rounding slack.
_RANGE_TOLERANCE = 1e-3


class Classifier(nn.Module):
  """Two 3x3 convolutions and a dense layer: logits `[B, num_classes]` of images `[B, H, W, C]`.

  conv 3x3 (features[0]) - ReLU - conv 3x3 stride 2 (features[1]) - ReLU - flatten - dense.

  The second convolution's features are flattened rather than averaged over space: with two 3x3
  convolutions each feature sees only a 5x5 window, and which digit it is depends on where the
  strokes are (a 6 and a 9 have the same local pieces), which global average pooling would
  discard. The price is a dense layer sized for one `H, W`, recorded with the trained weights.
  There is no batch norm, so the logits are a pure function of the parameters.

  Attributes:
    num_classes: the number of logits.
    features: the two convolutions' output channels.
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 64)

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """Returns the logits `[B, num_classes]` of `images` `[B, H, W, C]` in [-1, 1], H, W >= 8."""
    if images.ndim != 4 or min(images.shape[1:3]) < _MIN_SIZE:
      raise ValueError(f'images.shape={images.shape}: expected [B, H, W, C] with H, W >= '
                       f'{_MIN_SIZE}')
    x = nn.relu(nn.Conv(self.features[0], (3, 3), padding='SAME')(images))
    x = nn.relu(nn.Conv(self.features[1], (3, 3), strides=(2, 2), padding='SAME')(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


@functools.lru_cache(maxsize=None)
def _probs_fn(num_classes: int) -> Callable[[Any, jax.Array], jax.Array]:
  model = Classifier(num_classes)
  return jax.jit(lambda variables, images: jax.nn.softmax(model.apply(variables, images)))


def _batched_probs(variables, num_classes: int, images: np.ndarray,
                   batch_size: int) -> np.ndarray:
  """Softmax `[N, num_classes]` of host `images` `[N, H, W, C]`, in jitted batches."""
  n = images.shape[0]
  size = min(batch_size, n)
  fn = _probs_fn(num_classes)
  out = []
  for start in range(0, n, size):
    batch = images[start:start + size]
    valid = batch.shape[0]
    if valid < size:
      # One compiled shape for every batch: the last one is padded, and the padding dropped.
      batch = np.concatenate([batch, np.zeros((size - valid,) + batch.shape[1:], batch.dtype)])
    out.append(np.asarray(fn(variables, batch))[:valid])
  return np.concatenate(out).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
  """A trained `Classifier` with its variables and what it was trained on.

  Attributes:
    variables: the Flax variables, `{'params': ...}`.
    num_classes: the number of classes.
    image_shape: `(H, W, C)` of the images it takes.
    test_accuracy: its accuracy on the test split given to `train_classifier`, in [0, 1].
    steps: Adam steps it was trained for.
    batch_size: training minibatch size.
    learning_rate: Adam's learning rate.
    seed: the seed of its initialisation and minibatches.
    meta: the caller's description of the data (e.g. `{'dataset': 'mnist'}`), JSON values.
  """
  variables: Any
  num_classes: int
  image_shape: tuple[int, int, int]
  test_accuracy: float
  steps: int
  batch_size: int = 64
  learning_rate: float = 1e-3
  seed: int = 0
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def _check_images(self, images, name: str = 'images') -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != tuple(self.image_shape) or images.shape[0] == 0:
      raise ValueError(f'{name}.shape={images.shape}: expected [N, *{tuple(self.image_shape)}] '
                       f'with N >= 1, the image shape this classifier was trained on')
    return images

  def probs(self, images, batch_size: int = 512) -> np.ndarray:
    """Class probabilities `p(y|x)`.

    Args:
      images: `[N, H, W, C]` in [-1, 1], `(H, W, C) == image_shape`; numpy or jax.
      batch_size: images per jitted call (the last batch is padded to it).

    Returns:
      `[N, num_classes]` float32 numpy array of softmax rows.
    """
    images = self._check_images(images)
    _check_positive_int(batch_size, 'batch_size')
    return _batched_probs(self.variables, self.num_classes, images, batch_size)

  def accuracy(self, images, labels) -> float:
    """Fraction of `images` `[N, H, W, C]` whose most probable class is `labels` `[N]`."""
    images = self._check_images(images)
    labels = np.asarray(labels)
    if labels.shape != images.shape[:1]:
      raise ValueError(f'labels.shape={labels.shape}: expected [{images.shape[0]}], one per image')
    return float(np.mean(np.argmax(self.probs(images), axis=-1) == labels))


def _check_split(split, name: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  if not isinstance(split, Mapping) or 'images' not in split or 'labels' not in split:
    raise ValueError(f'{name}: expected a dict with keys "images" and "labels", got '
                     f'{type(split).__name__}'
                     f'{" with keys " + str(sorted(split)) if isinstance(split, Mapping) else ""}')
  images = np.asarray(split['images'])
  labels = np.asarray(split['labels'])
  if images.ndim != 4 or images.shape[0] == 0 or min(images.shape[1:3]) < _MIN_SIZE:
    raise ValueError(f'{name}["images"].shape={images.shape}: expected [N, H, W, C] with N >= 1 '
                     f'and H, W >= {_MIN_SIZE}')
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'{name}["images"].dtype={images.dtype}: expected float images in [-1, 1]')
  images = images.astype(np.float32)
  lo, hi = float(images.min()), float(images.max())
  if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1 - _RANGE_TOLERANCE or (
      hi > 1 + _RANGE_TOLERANCE):
    raise ValueError(f'{name}["images"] range [{lo}, {hi}]: expected finite values in [-1, 1]')
  if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{name}["labels"]: shape {labels.shape} dtype {labels.dtype}, expected '
                     f'[{images.shape[0]}] integers, one per image')
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f'{name}["labels"] range [{labels.min()}, {labels.max()}]: expected classes '
                     f'in [0, {num_classes}) for num_classes={num_classes}')
  return images, labels.astype(np.int32)


def _check_positive_int(value, name: str, minimum: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f'{name}={value!r}: expected an int >= {minimum}')


@functools.lru_cache(maxsize=None)
def _train_step_fn(num_classes: int, batch_size: int, learning_rate: float):
  """The jitted Adam step `(params, opt_state), step -> (params, opt_state), loss`, and Adam.

  One step per call rather than a `lax.scan` over many: XLA:CPU runs these convolutions inside a
  loop body over ten times slower than as a top-level program.
  """
  model = Classifier(num_classes)
  optimizer = optax.adam(learning_rate)

  def loss_fn(params, images, labels):
    logits = model.apply({'params': params}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  def step(state, images, labels, data_key, index):
    params, opt_state = state
    # The minibatch is a pure function of (seed, step number).
    picks = jax.random.randint(jax.random.fold_in(data_key, index), (batch_size,), 0,
                               images.shape[0])
    loss, grads = jax.value_and_grad(loss_fn)(params, images[picks], labels[picks])
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return jax.jit(step, donate_argnums=0), optimizer


def train_classifier(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], *,
                     num_classes: int, steps: int = 2000, batch_size: int = 64,
                     learning_rate: float = 1e-3, seed: int = 0,
                     progress: Optional[Callable[[int, float], None]] = None) -> TrainedClassifier:
  """Trains a `Classifier` with Adam on minibatches drawn (with replacement) from `train`.

  Args:
    train: `{'images': [N, H, W, C] float in [-1, 1], 'labels': [N] int in [0, num_classes)}`.
    test: the same for the held-out split; its `H, W, C` must be the training ones.
    num_classes: the number of classes, >= 2.
    steps: Adam steps.
    batch_size: images per step.
    learning_rate: Adam's learning rate.
    seed: initialisation and minibatches are a pure function of it.
    progress: called as `progress(steps_done, mean_loss)` after every 100 steps and at the end,
      `mean_loss` the cross-entropy averaged over those steps.

  Returns:
    The `TrainedClassifier`, `test_accuracy` measured on `test`.

  Raises:
    ValueError: bad arguments (shapes, ranges, labels, sizes).
    FloatingPointError: the loss became non-finite.
  """
  _check_positive_int(num_classes, 'num_classes', 2)
  _check_positive_int(steps, 'steps')
  _check_positive_int(batch_size, 'batch_size')
  _check_positive_int(seed, 'seed', 0)
  if not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
    raise ValueError(f'learning_rate={learning_rate!r}: expected a positive number')
  train_images, train_labels = _check_split(train, 'train', num_classes)
  test_images, test_labels = _check_split(test, 'test', num_classes)
  if test_images.shape[1:] != train_images.shape[1:]:
    raise ValueError(f'test["images"].shape={test_images.shape}: expected the training images\' '
                     f'[H, W, C] = {list(train_images.shape[1:])}')
  image_shape = tuple(int(d) for d in train_images.shape[1:])

  init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
  params = Classifier(num_classes).init(init_key, jnp.zeros((1,) + image_shape))['params']
  step_fn, optimizer = _train_step_fn(num_classes, batch_size, float(learning_rate))
  state = (params, optimizer.init(params))
  images, labels = jnp.asarray(train_images), jnp.asarray(train_labels)
  losses = []
  for index in range(steps):
    state, loss = step_fn(state, images, labels, data_key, index)
    losses.append(loss)
    if len(losses) == _LOG_EVERY or index + 1 == steps:
      # Reading the losses back waits for the device only once per `_LOG_EVERY` steps.
      mean_loss = float(jnp.mean(jnp.stack(losses)))
      losses = []
      if not np.isfinite(mean_loss):
        raise FloatingPointError(f'classifier training: non-finite loss {mean_loss} by step '
                                 f'{index + 1}; lower learning_rate={learning_rate}')
      if progress is not None:
        progress(index + 1, mean_loss)

  variables = {'params': jax.device_get(state[0])}
  probs = _batched_probs(variables, num_classes, test_images, 512)
  test_accuracy = float(np.mean(np.argmax(probs, axis=-1) == test_labels))
  return TrainedClassifier(variables=variables, num_classes=num_classes, image_shape=image_shape,
                           test_accuracy=test_accuracy, steps=steps, batch_size=batch_size,
                           learning_rate=float(learning_rate), seed=seed)


def _json_meta(meta, name: str = 'meta') -> dict:
  """`meta` as it reads back from JSON (tuples become lists), or ValueError."""
  if meta is None:
    return {}
  if not isinstance(meta, Mapping):
    raise ValueError(f'{name}={meta!r}: expected a dict of JSON values or None')
  try:
    return json.loads(json.dumps(dict(meta)))
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name}={meta!r}: expected a dict of JSON values ({e})') from e


def has_classifier(directory: str | os.PathLike) -> bool:
  """Whether `directory` holds a saved classifier (complete saves only; it is not read)."""
  directory = os.fspath(directory)
  return (os.path.isfile(os.path.join(directory, _META_FILE))
          and os.path.isdir(os.path.join(directory, _VARIABLES_DIR)))


def save_classifier(directory: str | os.PathLike, trained: TrainedClassifier,
                    meta: Optional[Mapping[str, Any]] = None, *, overwrite: bool = False) -> None:
  """Saves `trained` to `directory`, atomically.

  Everything is written into a hidden sibling, `.<name>.partial-<random>`, which is then renamed
  to `directory`: a save interrupted at any point leaves no `directory` that loads.

  Args:
    directory: where the classifier goes; must not exist unless `overwrite`.
    trained: the classifier.
    meta: a description of its data, JSON values (e.g. `{'dataset': 'mnist'}`); default
      `trained.meta`.
    overwrite: replace an existing `directory`. The old one is moved aside before the new one is
      renamed in and deleted after, so there is a moment with no classifier, never a mixed one.

  Raises:
    FileExistsError: `directory` exists and `overwrite` is False.
    ValueError: `meta` is not a dict of JSON values.
  """
  directory = os.path.abspath(os.fspath(directory))
  meta = _json_meta(trained.meta if meta is None else meta)
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f'save_classifier: {directory} already exists; pass overwrite=True or '
                          f'choose another directory')
  parent, name = os.path.split(directory)
  os.makedirs(parent, exist_ok=True)
  partial = os.path.join(parent, f'.{name}.partial-{uuid.uuid4().hex}')
  os.makedirs(partial)
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(os.path.join(partial, _VARIABLES_DIR), trained.variables)
      checkpointer.wait_until_finished()
    record = {'format_version': _FORMAT_VERSION, 'num_classes': trained.num_classes,
              'image_shape': list(trained.image_shape), 'test_accuracy': trained.test_accuracy,
              'steps': trained.steps, 'batch_size': trained.batch_size,
              'learning_rate': trained.learning_rate, 'seed': trained.seed, 'meta': meta}
    with open(os.path.join(partial, _META_FILE), 'w') as f:
      json.dump(record, f, indent=2, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    old = None
    if os.path.exists(directory):
      old = os.path.join(parent, f'.{name}.old-{uuid.uuid4().hex}')
      os.rename(directory, old)
    os.rename(partial, directory)
    partial = None
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if partial is not None:
      shutil.rmtree(partial, ignore_errors=True)


def _read_record(directory: str) -> dict:
  if not has_classifier(directory):
    raise FileNotFoundError(f'load_classifier: no classifier in {directory} (expected '
                            f'{_META_FILE} and {_VARIABLES_DIR}/)')
  try:
    with open(os.path.join(directory, _META_FILE)) as f:
      record = json.load(f)
    record['num_classes'] = int(record['num_classes'])
    record['image_shape'] = tuple(int(d) for d in record['image_shape'])
    if len(record['image_shape']) != 3 or record['format_version'] != _FORMAT_VERSION:
      raise ValueError(f'image_shape {record["image_shape"]}, format_version '
                       f'{record["format_version"]}')
    missing = [k for k in ('test_accuracy', 'steps', 'batch_size', 'learning_rate', 'seed', 'meta')
               if k not in record]
    if missing:
      raise KeyError(', '.join(missing))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f'load_classifier: {os.path.join(directory, _META_FILE)} is unreadable '
                     f'({type(e).__name__}: {e}); move it out of the way and train again') from e
  return record


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def load_classifier(directory: str | os.PathLike) -> TrainedClassifier:
  """Loads a classifier written by `save_classifier`.

  Raises:
    FileNotFoundError: `directory` holds no classifier.
    ValueError: it holds one that cannot be read.
  """
  directory = os.path.abspath(os.fspath(directory))
  record = _read_record(directory)
  num_classes, image_shape = record['num_classes'], record['image_shape']
  abstract = jax.eval_shape(Classifier(num_classes).init, jax.random.PRNGKey(0),
                            jnp.zeros((1,) + image_shape))
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      variables = checkpointer.restore(os.path.join(directory, _VARIABLES_DIR), abstract)
  except Exception as e:  # Orbax raises many types for unreadable or mismatched checkpoints.
    first_line = str(e).splitlines()[0] if str(e) else ''
    raise ValueError(f'load_classifier: the variables in {directory} cannot be restored for '
                     f'num_classes={num_classes}, image_shape={image_shape} '
                     f'({type(e).__name__}: {first_line})') from e
  # Orbax restores the stored shapes whatever the target's, so a record that does not describe
  # these variables is caught here.
  expected, found = _shapes(abstract), _shapes(variables)
  if found != expected:
    differing = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    raise ValueError(f'load_classifier: the variables in {directory} cannot be restored for '
                     f'num_classes={num_classes}, image_shape={image_shape} ('
                     f'{differing[0]}: stored {found.get(differing[0])}, expected '
                     f'{expected.get(differing[0])})')
  return TrainedClassifier(variables=jax.device_get(variables), num_classes=num_classes,
                           image_shape=image_shape, test_accuracy=float(record['test_accuracy']),
                           steps=int(record['steps']), batch_size=int(record['batch_size']),
                           learning_rate=float(record['learning_rate']), seed=int(record['seed']),
                           meta=record['meta'])


def load_or_train_classifier(directory: str | os.PathLike, train: Mapping[str, np.ndarray],
                             test: Mapping[str, np.ndarray], *, num_classes: int,
                             meta: Optional[Mapping[str, Any]] = None, steps: int = 2000,
                             batch_size: int = 64, learning_rate: float = 1e-3, seed: int = 0,
                             log: Optional[Callable[[str], Any]] = None) -> TrainedClassifier:
  """Loads the classifier in `directory` if it was written for this data, else trains and saves.

  A stored classifier is reused when its `num_classes`, image shape and `meta` equal the ones
  given (`train`'s images fix the shape): I' is only comparable across samples scored by the same
  classifier, so different training settings (steps, seed, ...) are only logged, not retrained.

  Args:
    directory: the classifier's directory.
    train: training split, as for `train_classifier`.
    test: test split, as for `train_classifier`.
    num_classes: the number of classes.
    meta: a description of the data, JSON values (e.g. `{'dataset': 'mnist'}`).
    steps: `train_classifier`'s steps, when training.
    batch_size: `train_classifier`'s batch size, when training.
    learning_rate: `train_classifier`'s learning rate, when training.
    seed: `train_classifier`'s seed, when training.
    log: called with one-line messages (e.g. `print`), or None.

  Raises:
    ValueError: `directory` holds a classifier for other data (nothing is written), an unreadable
      one, or the arguments are bad.
  """
  directory = os.path.abspath(os.fspath(directory))
  say = log if log is not None else (lambda message: None)
  meta = _json_meta(meta)
  _check_positive_int(num_classes, 'num_classes', 2)
  images, _ = _check_split(train, 'train', num_classes)
  if has_classifier(directory):
    record = _read_record(directory)
    wanted = {'num_classes': num_classes, 'image_shape': tuple(images.shape[1:]), 'meta': meta}
    differing = [f'{k}: stored {record[k]!r}, given {v!r}' for k, v in wanted.items()
                 if record[k] != v]
    if differing:
      raise ValueError(f'load_or_train_classifier: the classifier in {directory} was trained for '
                       f'other data ({"; ".join(differing)}); use another directory')
    trained = load_classifier(directory)
    settings = {'steps': steps, 'batch_size': batch_size, 'learning_rate': learning_rate,
                'seed': seed}
    changed = [f'{k}={getattr(trained, k)!r} (asked {v!r})' for k, v in settings.items()
               if getattr(trained, k) != v]
    say(f'classifier: loaded {directory}, test accuracy {trained.test_accuracy:.4f}'
        + (f'; trained with {", ".join(changed)}' if changed else ''))
    return trained

  def progress(step, loss):
    if step % 500 == 0 or step == steps:
      say(f'classifier: step {step}/{steps}, loss {loss:.4f}')

  say(f'classifier: training {steps} steps for {directory}')
  trained = train_classifier(train, test, num_classes=num_classes, steps=steps,
                             batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                             progress=progress)
  trained = dataclasses.replace(trained, meta=meta)
  save_classifier(directory, trained)
  say(f'classifier: saved {directory}, test accuracy {trained.test_accuracy:.4f}')
  return trained
