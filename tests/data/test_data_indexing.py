"""Batch arithmetic: epochs, shuffling, process shards and windows, against enumeration."""

import numpy as np
import pytest

from gen_jax.data import indexing


def _plan(**kw) -> indexing.Plan:
  args = dict(num_examples=10, batch_size=3, seed=0, shuffle=True, num_epochs=2,
              drop_remainder=False, process_index=0, process_count=1)
  return indexing.Plan(**{**args, **kw})


def _stream(plan: indexing.Plan) -> tuple[np.ndarray, np.ndarray]:
  """(epoch, index) of every valid example the plan yields, in order."""
  rows = [indexing.batch_positions(plan, step) for step in range(plan.num_batches)]
  epoch = np.concatenate([r.epoch[r.valid] for r in rows])
  index = np.concatenate([r.index[r.valid] for r in rows])
  return epoch, index


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_epoch_is_a_permutation(shuffle):
  plan = _plan(shuffle=shuffle, num_epochs=3)
  assert plan.num_batches == 10  # ceil(30 / 3)
  epoch, index = _stream(plan)
  for e in range(3):
    assert sorted(index[epoch == e]) == list(range(10))
  if shuffle:
    assert not np.array_equal(index[epoch == 0], index[epoch == 1])
  else:
    np.testing.assert_array_equal(index, np.tile(np.arange(10), 3))


def test_padding_is_only_at_the_end():
  plan = _plan(num_examples=7, batch_size=4, num_epochs=1)
  first, last = indexing.batch_positions(plan, 0), indexing.batch_positions(plan, 1)
  assert first.valid.all()
  np.testing.assert_array_equal(last.valid, [True, True, True, False])
  assert plan.num_batches == 2


@pytest.mark.parametrize("drop_remainder", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_processes_read_blocks_of_the_global_batches_of_one_process(drop_remainder, shuffle):
  # Oracle: one process with the global batch of 6. Process p of 3 (batches of 2) must read rows
  # 2p, 2p + 1 of each of its global batches, so that any process count trains on the same data.
  one = _plan(num_examples=11, batch_size=6, num_epochs=2, drop_remainder=drop_remainder,
              shuffle=shuffle)
  plans = [_plan(num_examples=11, batch_size=2, num_epochs=2, drop_remainder=drop_remainder,
                 shuffle=shuffle, process_index=p, process_count=3) for p in range(3)]
  assert all(plan.num_batches == one.num_batches for plan in plans)
  assert one.num_batches == (3 if drop_remainder else 4)  # 22 examples: 22 // 6 or ceil(22 / 6)
  for step in range(one.num_batches):
    whole = indexing.batch_positions(one, step)
    parts = [indexing.batch_positions(plan, step) for plan in plans]
    for field in ("epoch", "index", "valid"):
      np.testing.assert_array_equal(np.concatenate([getattr(q, field) for q in parts]),
                                    getattr(whole, field))
  if not drop_remainder:  # the last global batch: 4 real rows, then padding
    np.testing.assert_array_equal(indexing.batch_positions(one, 3).valid, [1, 1, 1, 1, 0, 0])
    assert not indexing.batch_positions(plans[2], 3).valid.any()  # all padding


def test_batches_of_several_steps_are_their_steps_concatenated():
  plan = _plan(num_examples=7, batch_size=2, num_epochs=None, process_index=1, process_count=2)
  several = indexing.batch_positions(plan, 5, count=3)
  single = [indexing.batch_positions(plan, step) for step in (5, 6, 7)]
  np.testing.assert_array_equal(several.index, np.concatenate([s.index for s in single]))
  np.testing.assert_array_equal(several.epoch, np.concatenate([s.epoch for s in single]))


def test_endless_plans_index_any_step():
  plan = _plan(num_epochs=None)
  assert plan.num_batches is None
  far = indexing.batch_positions(plan, 10**9)
  assert far.valid.all() and far.epoch.min() == 3 * 10**8


def test_tiled_windows_cover_every_target_once():
  windows = indexing.Windows(stream_length=23, seq_len=5, seed=0, shuffle=False, tile=True)
  assert windows.num_windows == 6  # ceil(22 / 4)
  starts = indexing.window_starts(windows, np.zeros(6, np.int64), np.arange(6))
  targets = np.concatenate([s + np.arange(1, 5) for s in starts])
  np.testing.assert_array_equal(targets[targets < 23], np.arange(1, 23))


@pytest.mark.parametrize("stride, num_windows", [(2, 10), (3, 7), (4, 6)])
def test_strided_eval_windows_score_every_target_once_with_context(stride, num_windows):
  windows = indexing.Windows(stream_length=23, seq_len=5, seed=0, shuffle=False, tile=True,
                             eval_stride=stride)
  assert windows.num_windows == num_windows  # 1 + ceil((23 - 5) / stride)
  index = np.arange(num_windows)
  starts = indexing.window_starts(windows, np.zeros_like(index), index)
  np.testing.assert_array_equal(starts, index * stride)
  first = windows.first_target(index)
  targets = np.concatenate([s + np.arange(f, 5) for s, f in zip(starts, first)])
  np.testing.assert_array_equal(targets[targets < 23], np.arange(1, 23))
  assert (first[1:] == 5 - stride).all()  # every later target sees >= 5 - stride tokens


@pytest.mark.parametrize("stride, tile", [(5, True), (-1, True), (2, False)])
def test_eval_stride_out_of_range_or_for_training_is_refused(stride, tile):
  with pytest.raises(ValueError, match="eval_stride"):
    indexing.Windows(stream_length=23, seq_len=5, seed=0, shuffle=not tile, tile=tile,
                     eval_stride=stride)


def test_shuffled_windows_are_whole_for_every_offset():
  windows = indexing.Windows(stream_length=100, seq_len=8, seed=4, shuffle=True, tile=False)
  offsets = {indexing.window_offset(windows, e) for e in range(200)}
  assert offsets == set(range(7))
  last = windows.num_windows - 1
  assert max(offsets) + last * windows.stride + windows.seq_len <= 100
  assert max(offsets) + (last + 1) * windows.stride + windows.seq_len > 100
