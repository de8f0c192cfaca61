"""Which examples form batch `step` of a process: sharding, epochs, shuffling and windows.

Pure NumPy. A pipeline is a fixed `Plan`; `batch_positions(plan, step)` gives the examples of
one batch, so any batch can be rebuilt from `(plan, step)` alone, which is what makes a
`DataIterator`'s state a single step count.

Epoch `e` orders the `N` examples by `permutation(seed, e, N)` (the identity without shuffling).
The epochs form one stream (epoch 0, then epoch 1, ...) cut into global batches of
`B = process_count * batch_size` rows, so a batch may straddle two epochs (as `grain`'s
`repeat().batch()` does). Process `p` reads rows `p * batch_size .. (p + 1) * batch_size - 1` of
every global batch: the global batch, and so the whole run, is the same for any number of
processes (1 process x 8 devices and 2 processes x 4 devices train on the same batches). With
`num_epochs=E` the stream has `E * N` examples; the last global batch is dropped when short, or
padded and its padding rows marked invalid (a process's share may then be all padding).
"""

import dataclasses
import functools

import numpy as np

# Tags separating the random streams derived from one seed.
PERMUTATION_STREAM = 0
WINDOW_OFFSET_STREAM = 1
PREPROCESS_STREAM = 2
FRESH_STREAM = 3


@dataclasses.dataclass(frozen=True)
class Plan:
  """The fixed arithmetic of one process's pipeline over `num_examples` examples per epoch."""

  num_examples: int  # N, examples per epoch over all processes
  batch_size: int  # this process's batch size
  seed: int
  shuffle: bool
  num_epochs: int | None  # None: endless
  drop_remainder: bool
  process_index: int
  process_count: int

  @property
  def num_batches(self) -> int | None:
    """Batches in the whole stream; None when endless."""
    if self.num_epochs is None:
      return None
    total, global_batch = self.num_epochs * self.num_examples, self.batch_size * self.process_count
    if self.drop_remainder:
      return total // global_batch
    return -(-total // global_batch)


@dataclasses.dataclass(frozen=True)
class Positions:
  """The examples of one batch."""

  epoch: np.ndarray  # [batch] int64, the epoch each example belongs to
  index: np.ndarray  # [batch] int64, example index in 0..N-1 (0 where padded)
  valid: np.ndarray  # [batch] bool, False for padding


@functools.lru_cache(maxsize=4)
def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of the `n` examples in epoch `epoch`: a read-only [n] int64 permutation."""
  order = np.random.default_rng([seed, PERMUTATION_STREAM, epoch]).permutation(n)
  order.setflags(write=False)
  return order


def batch_positions(plan: Plan, step: int, count: int = 1) -> Positions:
  """The epoch, example index and validity of every row of batches `step .. step + count - 1`
  of this process, concatenated ([count * batch_size] rows)."""
  steps = step + np.arange(count, dtype=np.int64)[:, None]
  rows = plan.process_index * plan.batch_size + np.arange(plan.batch_size, dtype=np.int64)
  stream = (steps * plan.batch_size * plan.process_count + rows).reshape(-1)
  epoch, position = np.divmod(stream, plan.num_examples)
  valid = np.ones(stream.shape, bool)
  if plan.num_epochs is not None:
    valid = epoch < plan.num_epochs
  position = np.where(valid, position, 0)
  index = position
  if plan.shuffle:
    first, last = int(epoch[0]), int(epoch[-1])  # the stream's epochs never decrease
    if first == last:  # the common case: the batch lies within one epoch
      index = permutation(plan.seed, first, plan.num_examples)[position]
    else:
      index = np.empty_like(position)
      for e in range(first, last + 1):
        rows = epoch == e
        index[rows] = permutation(plan.seed, e, plan.num_examples)[position[rows]]
  return Positions(epoch=epoch, index=np.where(valid, index, 0), valid=valid)


@dataclasses.dataclass(frozen=True)
class Windows:
  """Windows of `seq_len` tokens over a token stream.

  Position 0 of a window is context only; a causal model predicts positions 1..seq_len-1 from
  the tokens before them.

  - `tile=False` (training): window `j` of epoch `e` starts at `offset(e) + j * (seq_len - 1)`,
    consecutive windows sharing one token, so an epoch's targets are consecutive stream
    positions, each once. Only whole windows, at a random offset in `0..seq_len-2` per epoch
    when `shuffle` (0 otherwise), `(n - o_max - seq_len) // (seq_len - 1) + 1` of them in every
    epoch with `o_max` the largest offset, so every epoch has the same number of windows.
  - `tile=True` (evaluation): window `j` starts at `j * eval_stride` (default `seq_len - 1`);
    window 0 scores positions 1..seq_len-1 and every later window only its last `eval_stride`
    positions (`first_target`), so the scored targets are exactly the stream's positions
    1..n-1, each once, and each after window 0 sees at least `seq_len - eval_stride` tokens of
    context. `1 + ceil((n - seq_len) / eval_stride)` windows, the last one padded.
  """

  stream_length: int  # n, tokens in the stream
  seq_len: int
  seed: int
  shuffle: bool
  tile: bool
  eval_stride: int = 0  # tile only; 0: seq_len - 1

  def __post_init__(self):
    if self.eval_stride and not (self.tile and 1 <= self.eval_stride <= self.seq_len - 1):
      raise ValueError(f"eval_stride {self.eval_stride} must be in 1..seq_len-1 "
                       f"(= {self.seq_len - 1}), and is for evaluation windows only.")

  @property
  def stride(self) -> int:
    return self.eval_stride or self.seq_len - 1  # eval_stride is only set for tiling

  def first_target(self, index: np.ndarray) -> np.ndarray:
    """The first scored position of windows `index`: 1 for window 0, `seq_len - stride` for
    later ones (also 1 unless `eval_stride` is set)."""
    return np.where(index == 0, 1, self.seq_len - self.stride)

  @property
  def max_offset(self) -> int:
    return self.stride - 1 if self.shuffle else 0

  @property
  def num_windows(self) -> int:
    if self.tile:
      return 1 + max(0, -(-(self.stream_length - self.seq_len) // self.stride))
    return (self.stream_length - self.max_offset - self.seq_len) // self.stride + 1


def window_offset(windows: Windows, epoch: int) -> int:
  """Where the windows of `epoch` start: uniform in `0..max_offset`, fixed by (seed, epoch)."""
  if windows.max_offset == 0:
    return 0
  rng = np.random.default_rng([windows.seed, WINDOW_OFFSET_STREAM, epoch])
  return int(rng.integers(0, windows.max_offset + 1))


def window_starts(windows: Windows, epoch: np.ndarray, index: np.ndarray) -> np.ndarray:
  """[batch] int64 stream positions of the first token of windows `index` of epochs `epoch`."""
  offsets = np.zeros_like(epoch)
  for e in np.unique(epoch):
    offsets[epoch == e] = window_offset(windows, int(e))
  return offsets + index * windows.stride
