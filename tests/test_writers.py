"""Tests for uncertainty_jax.training.writers: metrics.jsonl, TensorBoard events, ProgressLine."""

import io
import json
import math
import os

import numpy as np
import PIL.Image
import pytest
from tensorboard.backend.event_processing import event_accumulator

from uncertainty_jax.training import writers


def _accumulator(workdir):
  acc = event_accumulator.EventAccumulator(
      str(workdir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
  acc.Reload()
  return acc


def _metrics_lines(workdir):
  with open(os.path.join(workdir, writers.METRICS_FILENAME), encoding='utf-8') as f:
    return f.read().splitlines()


class TestMetricsJsonl:

  def test_lines_parse_and_round_trip(self, tmp_path):
    logged = [
        (0, {'train/loss': 0.25, 'eval/psnr': np.float32(21.5), 'count': np.int64(7)}),
        (3, {'train/loss': float('nan'), 'eval/psnr': float('inf'), 'count': 2}),
        (10, {'train/loss': -float('inf'), 'eval/psnr': np.array(1.0 / 3.0), 'count': True}),
    ]
    with writers.MetricWriter(tmp_path) as writer:
      for step, scalars in logged:
        writer.write_scalars(step, scalars)
    lines = _metrics_lines(tmp_path)
    assert len(lines) == len(logged)
    for line, (step, scalars) in zip(lines, logged):
      record = json.loads(line)  # strict JSON: json.loads rejects nothing we wrote
      assert list(record) == sorted(['step', *scalars])
      assert record['step'] == step
    read = writers.read_metrics(tmp_path)
    assert [r['step'] for r in read] == [0, 3, 10]
    for record, (_, scalars) in zip(read, logged):
      for name, value in scalars.items():
        expected = float(np.asarray(value)) if name != 'count' else int(value)
        if math.isnan(expected):
          assert math.isnan(record[name])
        else:
          assert record[name] == expected
          assert type(record[name]) is type(expected)
    assert json.loads(lines[1])['train/loss'] == 'nan'
    assert json.loads(lines[2])['train/loss'] == '-inf'

  def test_append_across_writers_keeps_earlier_lines(self, tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
      writer.write_scalars(1, {'loss': 1.0})
      writer.write_scalars(2, {'loss': 0.5})
    first_lines = _metrics_lines(tmp_path)
    with writers.MetricWriter(tmp_path) as writer:
      writer.write_scalars(3, {'loss': 0.25})
    lines = _metrics_lines(tmp_path)
    assert lines[:2] == first_lines
    assert [(r['step'], r['loss']) for r in writers.read_metrics(tmp_path)] == [
        (1, 1.0), (2, 0.5), (3, 0.25)]

  @pytest.mark.parametrize('k', [0, 4, 6, 20])
  def test_truncate_keeps_exactly_steps_up_to_k(self, tmp_path, k):
    steps = [0, 2, 4, 6, 8, 10, 5]  # 5 after 10: a line order the filter must not rely on
    with writers.MetricWriter(tmp_path) as writer:
      for step in steps:
        writer.write_scalars(step, {'x': step / 3})
    before = _metrics_lines(tmp_path)
    removed = writers.truncate_metrics_after(tmp_path, k)
    after = _metrics_lines(tmp_path)
    expected = [line for line, step in zip(before, steps) if step <= k]
    assert after == expected
    assert removed == len(steps) - len(expected)
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.tmp')]

  def test_truncate_without_file_is_a_no_op(self, tmp_path):
    assert writers.truncate_metrics_after(tmp_path, 5) == 0
    assert not os.path.exists(tmp_path / writers.METRICS_FILENAME)

  def test_resume_logs_each_step_once(self, tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
      for step in range(1, 9):
        writer.write_scalars(step, {'loss': float(step)})
    # Killed after step 8; the last checkpoint was at step 5.
    with writers.MetricWriter(tmp_path, resume_step=5) as writer:
      for step in range(6, 11):
        writer.write_scalars(step, {'loss': 100.0 + step})
    read = writers.read_metrics(tmp_path)
    assert [r['step'] for r in read] == list(range(1, 11))
    assert [r['loss'] for r in read] == (
        [1.0, 2.0, 3.0, 4.0, 5.0] + [100.0 + s for s in range(6, 11)])

  def test_torn_last_line_is_dropped(self, tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
      writer.write_scalars(1, {'loss': 1.0})
    with open(tmp_path / writers.METRICS_FILENAME, 'a', encoding='utf-8') as f:
      f.write('{"loss": 0.5, "st')  # a write cut short by a kill
    assert [r['step'] for r in writers.read_metrics(tmp_path)] == [1]
    with writers.MetricWriter(tmp_path) as writer:
      writer.write_scalars(2, {'loss': 0.5})
    lines = _metrics_lines(tmp_path)
    assert [json.loads(line)['step'] for line in lines] == [1, 2]

  def test_corrupt_complete_line_raises(self, tmp_path):
    (tmp_path / writers.METRICS_FILENAME).write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match='line 2'):
      writers.read_metrics(tmp_path)


class TestTensorBoard:

  def test_scalars_read_back(self, tmp_path):
    values = {1: 0.75, 2: 0.5, 5: 0.125, 9: 1e-3}
    with writers.MetricWriter(tmp_path) as writer:
      for step, value in values.items():
        writer.write_scalars(step, {'train/g_loss': value, 'eval/psnr': 20.0 + step})
    assert any(name.startswith('events.out.tfevents.') for name in os.listdir(tmp_path))
    acc = _accumulator(tmp_path)
    assert set(acc.Tags()['scalars']) == {'train/g_loss', 'eval/psnr'}
    events = acc.Scalars('train/g_loss')
    assert [e.step for e in events] == list(values)
    # Event files store scalars as float32.
    np.testing.assert_array_equal([e.value for e in events],
                                  np.float32(list(values.values())))
    np.testing.assert_array_equal([e.value for e in acc.Scalars('eval/psnr')],
                                  np.float32([20.0 + s for s in values]))

  def test_images_read_back(self, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)
    with writers.MetricWriter(tmp_path) as writer:
      writer.write_images(4, {'samples/grid': image})
    acc = _accumulator(tmp_path)
    (event,) = acc.Images('samples/grid')
    assert event.step == 4
    assert (event.height, event.width) == (12, 20)
    decoded = np.asarray(PIL.Image.open(io.BytesIO(event.encoded_image_string)).convert('RGB'))
    np.testing.assert_array_equal(decoded, image)

  def test_resume_purges_later_events(self, tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
      for step in range(1, 9):
        writer.write_scalars(step, {'loss': float(step)})
    with writers.MetricWriter(tmp_path, resume_step=5) as writer:
      for step in range(6, 8):
        writer.write_scalars(step, {'loss': 100.0 + step})
    events = _accumulator(tmp_path).Scalars('loss')
    assert [(e.step, e.value) for e in events] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 106.0), (7, 107.0)]


class TestMetricWriterContract:

  def test_non_chief_writes_nothing(self, tmp_path):
    workdir = tmp_path / 'run'
    with writers.MetricWriter(workdir, is_chief=False) as writer:
      writer.write_scalars(1, {'loss': 1.0})
      writer.write_images(1, {'grid': np.zeros((4, 4, 3), np.uint8)})
      writer.flush()
    assert not workdir.exists()
    assert writers.read_metrics(workdir) == []

  def test_non_chief_leaves_existing_files_alone(self, tmp_path):
    with writers.MetricWriter(tmp_path) as writer:
      writer.write_scalars(1, {'loss': 1.0})
    before = sorted(os.listdir(tmp_path))
    content = _metrics_lines(tmp_path)
    with writers.MetricWriter(tmp_path, is_chief=False, resume_step=0) as writer:
      writer.write_scalars(2, {'loss': 2.0})
    assert sorted(os.listdir(tmp_path)) == before
    assert _metrics_lines(tmp_path) == content

  @pytest.mark.parametrize('step, scalars', [
      (-1, {'loss': 1.0}),
      (1.5, {'loss': 1.0}),
      (1, {'step': 1.0}),
      (1, {'': 1.0}),
      (1, {'loss': 'high'}),
      (1, {'loss': np.ones(2)}),
  ])
  def test_bad_scalars_raise(self, tmp_path, step, scalars):
    with writers.MetricWriter(tmp_path) as writer:
      with pytest.raises(ValueError):
        writer.write_scalars(step, scalars)
    assert writers.read_metrics(tmp_path) == []

  @pytest.mark.parametrize('image', [
      np.zeros((4, 4, 3), np.float32),
      np.zeros((4, 4), np.uint8),
      np.zeros((4, 4, 4), np.uint8),
  ])
  def test_bad_images_raise(self, tmp_path, image):
    with writers.MetricWriter(tmp_path) as writer:
      with pytest.raises(ValueError, match='uint8'):
        writer.write_images(0, {'grid': image})

  def test_write_after_close_raises(self, tmp_path):
    writer = writers.MetricWriter(tmp_path)
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match='closed'):
      writer.write_scalars(1, {'loss': 1.0})


class _FakeClock:

  def __init__(self, t=0.0):
    self.t = t

  def __call__(self):
    return self.t


class _TTY(io.StringIO):

  def isatty(self):
    return True


def _hms(seconds):
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class TestProgressLine:

  def test_rate_and_eta_exclude_the_first_step(self):
    stream, clock = io.StringIO(), _FakeClock()
    progress = writers.ProgressLine(1000, stream=stream, clock=clock)
    clock.t = 95.0  # the first step took 95 s, mostly compiling
    progress.update(1, {'loss': 0.0123456})
    clock.t = 95.0 + 40.0
    progress.update(21, {'loss': 0.5, 'psnr': 24.125})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('1/1000 (0.1%)')
    assert 'steps/s' not in lines[0] and 'ETA' not in lines[0]
    assert 'loss=0.01235' in lines[0]
    rate = (21 - 1) / 40.0
    assert lines[1].startswith('21/1000 (2.1%)')
    assert f'{rate:.2f} steps/s' in lines[1]
    assert f'ETA {_hms((1000 - 21) / rate)}' in lines[1]
    assert 'loss=0.5 psnr=24.12' in lines[1]

  def test_log_prints_every_tenth_of_the_run(self):
    stream, clock = io.StringIO(), _FakeClock()
    progress = writers.ProgressLine(100, stream=stream, clock=clock)
    for step in range(1, 101):  # one step per second: the 10% marks come before 30 s
      clock.t = float(step)
      progress.update(step)
    progress.close()
    steps = [int(line.split('/')[0]) for line in stream.getvalue().splitlines()]
    assert steps == [1] + list(range(10, 101, 10))
    assert '\r' not in stream.getvalue()

  def test_log_prints_every_30_seconds(self):
    stream, clock = io.StringIO(), _FakeClock()
    progress = writers.ProgressLine(10_000, stream=stream, clock=clock)
    for step in range(1, 101):
      clock.t = float(step)
      progress.update(step)
    steps = [int(line.split('/')[0]) for line in stream.getvalue().splitlines()]
    assert steps == [1, 31, 61, 91]
    progress.close()  # prints the pending step 100
    assert stream.getvalue().splitlines()[-1].startswith('100/10000')

  def test_tty_redraws_in_place(self):
    stream, clock = _TTY(), _FakeClock()
    progress = writers.ProgressLine(50, stream=stream, clock=clock, min_interval_s=1.0)
    for step in range(1, 11):
      clock.t = 0.4 * step
      progress.update(step, {'a_long_scalar_name_that_goes_away': 1.0} if step == 1 else None)
    text = stream.getvalue()
    assert '\n' not in text
    draws = text.split('\r')[1:]
    # Printed at t = 0.4 (first), then whenever 1 s has passed since the last print.
    assert [int(d.split('/')[0]) for d in draws] == [1, 4, 7, 10]
    # A shorter line is padded to wipe the previous one.
    assert len(draws[1]) == len(draws[0])
    progress.close()
    assert stream.getvalue().endswith('\n')

  def test_final_step_always_printed(self):
    stream, clock = io.StringIO(), _FakeClock()
    progress = writers.ProgressLine(20, start_step=10, stream=stream, clock=clock,
                                    min_interval_s=1000.0)
    progress.update(11)
    progress.update(19)
    progress.update(20)
    lines = stream.getvalue().splitlines()
    assert [int(line.split('/')[0]) for line in lines] == [11, 20]

  @pytest.mark.parametrize('kwargs', [
      {'total_steps': 0}, {'total_steps': 10, 'start_step': 11},
      {'total_steps': 10, 'min_interval_s': -1.0}])
  def test_bad_arguments_raise(self, kwargs):
    with pytest.raises(ValueError):
      writers.ProgressLine(**kwargs, stream=io.StringIO())

  def test_step_out_of_range_raises(self):
    progress = writers.ProgressLine(10, start_step=2, stream=io.StringIO())
    with pytest.raises(ValueError, match='step=11'):
      progress.update(11)
    with pytest.raises(ValueError, match='step=1'):
      progress.update(1)
    with pytest.raises(ValueError, match='step=2.5'):
      progress.update(2.5)


def test_json_safe_round_trip_keeps_non_finite_values():
  obj = {"a": math.inf, "b": [1.5, -math.inf, {"c": math.nan}], "d": "text", "e": 3}
  safe = writers.to_json_safe(obj)
  text = json.dumps(safe, allow_nan=False)  # strict JSON
  back = writers.from_json_safe(json.loads(text))
  assert back["a"] == math.inf and back["b"][1] == -math.inf and math.isnan(back["b"][2]["c"])
  assert back["b"][0] == 1.5 and back["d"] == "text" and back["e"] == 3


def test_replace_atomically_writes_whole_files_with_the_usual_permissions(tmp_path, monkeypatch):
  path = str(tmp_path / "settings.json")
  writers.replace_atomically(path, "first\n")
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0o600
  writers.replace_atomically(path, "second, longer\n")
  with open(path, encoding="utf-8") as f:
    assert f.read() == "second, longer\n"

  def fail(*args):
    raise OSError("disk full")

  monkeypatch.setattr(writers.os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    writers.replace_atomically(path, "third\n")
  with open(path, encoding="utf-8") as f:
    assert f.read() == "second, longer\n"  # the old file is kept whole
  assert os.listdir(tmp_path) == ["settings.json"]  # no temporary file left
