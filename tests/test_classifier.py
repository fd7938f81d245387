"""Tests of uncertainty_jax.evaluation.classifier: the I' classifier, its training and its files."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tests.conftest import tree_snapshot
from uncertainty_jax import metrics
from uncertainty_jax.evaluation import classifier

_STEPS = 500


@pytest.fixture(scope='module')
def digits():
  """scikit-learn's 8x8 digits, 0..16 scaled to [-1, 1], a stratified 75/25 split."""
  data = load_digits()
  images = (data.images / 8.0 - 1.0).astype(np.float32)[..., None]
  x_train, x_test, y_train, y_test = train_test_split(
      images, data.target, test_size=0.25, stratify=data.target, random_state=0)
  return {'images': x_train, 'labels': y_train}, {'images': x_test, 'labels': y_test}


@pytest.fixture(scope='module')
def trained_and_progress(digits):
  calls = []
  trained = classifier.train_classifier(*digits, num_classes=10, steps=_STEPS, seed=0,
                                        progress=lambda step, loss: calls.append((step, loss)))
  return trained, calls


@pytest.fixture(scope='module')
def trained(trained_and_progress):
  return trained_and_progress[0]


class TestClassifier:

  @pytest.mark.parametrize('shape,num_classes', [((2, 8, 8, 1), 10), ((3, 28, 28, 1), 10),
                                                 ((1, 9, 12, 3), 7)])
  def test_logit_shape(self, shape, num_classes):
    model = classifier.Classifier(num_classes)
    images = jnp.zeros(shape)
    variables = model.init(jax.random.PRNGKey(0), images)
    logits = jax.jit(model.apply)(variables, images)
    chex.assert_shape(logits, (shape[0], num_classes))
    chex.assert_tree_all_finite(logits)

  def test_no_batch_statistics(self):
    variables = classifier.Classifier(10).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
    assert set(variables) == {'params'}

  def test_three_layers(self):
    params = classifier.Classifier(10).init(jax.random.PRNGKey(0),
                                            jnp.zeros((1, 8, 8, 1)))['params']
    kernels = {name: layer['kernel'].shape for name, layer in params.items()}
    # Two 3x3 convolutions; the second has stride 2, so 4x4x64 features reach the dense layer.
    assert kernels == {'Conv_0': (3, 3, 1, 32), 'Conv_1': (3, 3, 32, 64), 'Dense_0': (1024, 10)}

  @pytest.mark.parametrize('shape', [(8, 8, 1), (2, 7, 8, 1), (2, 8, 8)])
  def test_bad_shape(self, shape):
    with pytest.raises(ValueError, match='images.shape'):
      classifier.Classifier(10).init(jax.random.PRNGKey(0), jnp.zeros(shape))


class TestTrainClassifier:

  def test_accuracy_on_digits(self, trained, digits):
    _, test = digits
    probs = trained.probs(test['images'])
    accuracy = np.mean(np.argmax(probs, axis=1) == test['labels'])
    assert accuracy >= 0.95
    assert trained.test_accuracy == accuracy
    assert trained.accuracy(test['images'], test['labels']) == accuracy

  def test_probs_are_distributions(self, trained, digits):
    probs = trained.probs(digits[1]['images'])
    chex.assert_shape(probs, (len(digits[1]['labels']), 10))
    assert probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

  def test_probs_do_not_depend_on_batching(self, trained, digits):
    images = digits[1]['images'][:50]
    np.testing.assert_allclose(trained.probs(images, batch_size=7), trained.probs(images),
                               rtol=1e-5, atol=1e-6)

  def test_record(self, trained):
    assert (trained.num_classes, trained.image_shape, trained.steps, trained.seed) == (
        10, (8, 8, 1), _STEPS, 0)

  def test_progress(self, trained_and_progress):
    _, calls = trained_and_progress
    assert [step for step, _ in calls] == list(range(100, _STEPS + 1, 100))
    losses = [loss for _, loss in calls]
    assert np.all(np.isfinite(losses))
    # Cross-entropy starts near log(10) = 2.3 and must fall well below it.
    assert losses[-1] < 0.5 * losses[0]

  def test_deterministic_for_a_seed(self, digits):
    first, second, other = [
        classifier.train_classifier(*digits, num_classes=10, steps=20, seed=seed).probs(
            digits[1]['images']) for seed in (3, 3, 4)]
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other, atol=1e-3)

  def test_informative_for_the_tweaked_inception_score(self, trained, digits):
    images, labels = digits[1]['images'], digits[1]['labels']
    spread = metrics.tweaked_inception_score(trained.probs(images), floor=1e-6)
    collapsed = metrics.tweaked_inception_score(trained.probs(images[labels == 3]), floor=1e-6)
    # Samples of a single class (a collapsed generator) score near 0, real digits near the
    # maximum given in the metric's docstring,
    # (C - 1) / C * log(1 / floor) - log(C) + log(1 + (C - 1) floor).
    best = 0.9 * np.log(1e6) - np.log(10) + np.log(1 + 9e-6)
    assert float(collapsed) < 0.2 * best < 0.6 * best < float(spread) <= best + 1e-4

  @pytest.mark.parametrize('change,match', [
      (lambda tr, te: ({**tr, 'images': (tr['images'] + 1) * 8}, te), r'train\["images"\] range'),
      (lambda tr, te: ({**tr, 'labels': tr['labels'] + 1}, te), r'train\["labels"\] range'),
      (lambda tr, te: (tr, {**te, 'labels': te['labels'][:-1]}), r'test\["labels"\]'),
      (lambda tr, te: (tr, {**te, 'images': te['images'][:, :, :, [0, 0]]}), r'test\["images"\]'),
      (lambda tr, te: ({'images': tr['images']}, te), 'train: expected a dict'),
  ])
  def test_bad_data(self, digits, change, match):
    with pytest.raises(ValueError, match=match):
      classifier.train_classifier(*change(*digits), num_classes=10, steps=1)

  @pytest.mark.parametrize('kwargs,match', [({'steps': 0}, 'steps=0'), ({'num_classes': 1},
                                                                         'num_classes=1'),
                                            ({'learning_rate': -1.0}, 'learning_rate=-1.0'),
                                            ({'batch_size': 0}, 'batch_size=0')])
  def test_bad_settings(self, digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
      classifier.train_classifier(*digits, **{'num_classes': 10, 'steps': 1, **kwargs})

  def test_probs_of_wrong_shape(self, trained):
    with pytest.raises(ValueError, match='image shape this classifier was trained on'):
      trained.probs(np.zeros((2, 28, 28, 1), np.float32))


class TestSaveLoad:

  def test_round_trip(self, trained, digits, tmp_path):
    directory = tmp_path / 'clf'
    assert not classifier.has_classifier(directory)
    classifier.save_classifier(directory, trained, meta={'dataset': 'digits'})
    assert classifier.has_classifier(directory)
    loaded = classifier.load_classifier(directory)
    images = digits[1]['images']
    np.testing.assert_array_equal(loaded.probs(images), trained.probs(images))
    assert (loaded.num_classes, loaded.image_shape, loaded.test_accuracy, loaded.steps,
            loaded.batch_size, loaded.learning_rate, loaded.seed) == (
                trained.num_classes, trained.image_shape, trained.test_accuracy, trained.steps,
                trained.batch_size, trained.learning_rate, trained.seed)
    assert loaded.meta == {'dataset': 'digits'}
    # Only the finished directory remains next to it.
    assert os.listdir(tmp_path) == ['clf']

  def test_refuses_to_overwrite(self, trained, tmp_path):
    classifier.save_classifier(tmp_path / 'clf', trained)
    with pytest.raises(FileExistsError, match='clf'):
      classifier.save_classifier(tmp_path / 'clf', trained)

  def test_overwrite(self, trained, tmp_path):
    classifier.save_classifier(tmp_path / 'clf', trained, meta={'dataset': 'a'})
    classifier.save_classifier(tmp_path / 'clf', trained, meta={'dataset': 'b'}, overwrite=True)
    assert classifier.load_classifier(tmp_path / 'clf').meta == {'dataset': 'b'}
    assert os.listdir(tmp_path) == ['clf']

  def test_interrupted_save_leaves_nothing_that_loads(self, trained, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
      raise KeyboardInterrupt

    monkeypatch.setattr(classifier.json, 'dump', interrupted)
    with pytest.raises(KeyboardInterrupt):
      classifier.save_classifier(tmp_path / 'clf', trained)
    assert not classifier.has_classifier(tmp_path / 'clf')
    assert os.listdir(tmp_path) == []

  def test_missing(self, tmp_path):
    with pytest.raises(FileNotFoundError, match=f'no classifier in {tmp_path / "nothing"}'):
      classifier.load_classifier(tmp_path / 'nothing')

  def test_unreadable_metadata(self, trained, tmp_path):
    classifier.save_classifier(tmp_path / 'clf', trained)
    (tmp_path / 'clf' / 'classifier.json').write_text('{"num_classes": ')
    with pytest.raises(ValueError, match='clf.*unreadable'):
      classifier.load_classifier(tmp_path / 'clf')

  def test_metadata_that_does_not_fit_the_variables(self, trained, tmp_path):
    classifier.save_classifier(tmp_path / 'clf', trained)
    path = tmp_path / 'clf' / 'classifier.json'
    record = json.loads(path.read_text())
    record['image_shape'] = [28, 28, 1]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match='cannot be restored'):
      classifier.load_classifier(tmp_path / 'clf')

  def test_meta_must_be_json(self, trained, tmp_path):
    with pytest.raises(ValueError, match='meta='):
      classifier.save_classifier(tmp_path / 'clf', trained, meta={'dataset': object()})
    assert not os.path.exists(tmp_path / 'clf')


class TestLoadOrTrain:

  def test_trains_once_then_loads(self, digits, tmp_path, monkeypatch):
    directory = tmp_path / 'clf'
    messages = []
    first = classifier.load_or_train_classifier(directory, *digits, num_classes=10,
                                                meta={'dataset': 'digits'}, steps=100,
                                                log=messages.append)
    assert classifier.has_classifier(directory)
    assert any('training' in m for m in messages)

    def no_training(*args, **kwargs):
      raise AssertionError('train_classifier called although a classifier is saved')

    monkeypatch.setattr(classifier, 'train_classifier', no_training)
    messages.clear()
    second = classifier.load_or_train_classifier(directory, *digits, num_classes=10,
                                                 meta={'dataset': 'digits'}, steps=100,
                                                 log=messages.append)
    assert any('loaded' in m for m in messages)
    images = digits[1]['images']
    np.testing.assert_array_equal(second.probs(images), first.probs(images))
    assert second.test_accuracy == first.test_accuracy

  @pytest.mark.parametrize('kwargs,match', [
      ({'meta': {'dataset': 'mnist'}}, 'meta'),
      ({'meta': None}, 'meta'),
      ({'num_classes': 11}, 'num_classes'),
      ({'pad': 1}, 'image_shape'),
  ])
  def test_refuses_other_data(self, trained, digits, tmp_path, kwargs, match):
    directory = tmp_path / 'clf'
    classifier.save_classifier(directory, trained, meta={'dataset': 'digits'})
    before = tree_snapshot(directory)
    train, test = digits
    pad = kwargs.pop('pad', 0)
    if pad:
      train, test = [{**split, 'images': np.pad(split['images'], ((0, 0), (pad, pad), (pad, pad),
                                                                   (0, 0)), constant_values=-1)}
                     for split in (train, test)]
    settings = {'num_classes': 10, 'meta': {'dataset': 'digits'}, 'steps': 5, **kwargs}
    with pytest.raises(ValueError, match=f'{directory}.*other data.*{match}'):
      classifier.load_or_train_classifier(directory, train, test, **settings)
    assert tree_snapshot(directory) == before
