"""Milliseconds per gated PixelCNN train step on 8x8 digits: the jitted gen_jax step against the
same network, loss and update written in plain PyTorch.

    python experiments/benchmarks/pixelcnn_step.py [--rounds 7] [--steps 10] [--batch_size 64]
        [--torch_threads CORES,1]

The model is experiments/configs/pixelcnn_digits.py's: `GatedPixelCNN` (gen_jax/nn/pixelcnn.py;
a 7x7 first layer and 4 gated 3x3 layers, 64 channels per stack, dropout 0.5 on the gated
horizontal output before its residual 1x1) over the 17 grey levels, a softmax cross-entropy per
pixel, and AdamW (weight decay 0.1) after clipping by global norm 1.0, with the config's warm-up
and cosine learning-rate schedule; the batch is the config's (64) unless --batch_size says
otherwise. No EMA on either side (the config's 0.999 is turned off, as gan_step.py does). gen_jax
runs the loop's own step (`common.compiled_train_step`: jitted, state donated). PyTorch runs the
same network (NCHW, float32, 1x1 convolutions as `Conv2d`s, the shifts and one-sided paddings as
`F.pad`), loss and update (`clip_grad_norm_`, `torch.optim.AdamW` with its default
implementation, a `LambdaLR` schedule) eagerly in train mode, once per --torch_threads setting of
`torch.set_num_threads` (default: the machine's core count, and 1), and is skipped cleanly when
torch is not installed. Before timing, the PyTorch network is given gen_jax's parameters and must
return the same logits and loss (so that the two time the same function), and the parameter
counts must be equal.

The measurements alternate: each round times --steps back-to-back steps of every framework in
turn, so all see the same machine load. Prints one JSON line per measurement (medians over
rounds, and every round) and a Markdown table with the ratio gen_jax / PyTorch (below 1: gen_jax
is faster).
"""

import argparse
import importlib.util
import math
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.train import config as config_lib
from gen_jax.train import loop

import common  # pylint: disable=wrong-import-order


def get_config(batch_size: int):
  config = common.load_config("pixelcnn_digits")
  if batch_size:
    config.data.batch_size = batch_size
  config.train.ema_decay = 0.0
  return config_lib.resolve(config)


def real_batch(config) -> dict[str, np.ndarray]:
  return next(loop.load_data(config, config.data.train_split, train=True))


def count_params(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def torch_network(config, out_features: int):
  """gen_jax's `GatedPixelCNN` of `config.model` in PyTorch (NCHW), with the same parameter
  names and shapes (a Dense as a 1x1 `Conv2d`)."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  m = config.model
  features, width = m.channels, 2 * m.channels
  r0, r = m.first_kernel_size // 2, m.kernel_size // 2

  def gate(a):
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)

  def shift_down(x):  # row i holds row i - 1, zeros in row 0
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]

  class GatedPixelCNN(nn.Module):
    def __init__(self):
      super().__init__()
      # Vertical: (r + 1) x k kernels over rows i - r..i (padded above only), columns j - r..j + r.
      self.vertical = nn.ModuleList(
          [nn.Conv2d(1, width, (r0 + 1, m.first_kernel_size))]
          + [nn.Conv2d(features, width, (r + 1, m.kernel_size)) for _ in range(m.num_layers)])
      # Horizontal: 1 x taps kernels over columns j - taps + 1..j (padded on the left only).
      self.horizontal = nn.ModuleList(
          [nn.Conv2d(1, width, (1, r0))]
          + [nn.Conv2d(features, width, (1, r + 1)) for _ in range(m.num_layers)])
      self.link = nn.ModuleList([nn.Conv2d(width, width, 1) for _ in range(m.num_layers + 1)])
      self.residual = nn.ModuleList([nn.Conv2d(features, features, 1)
                                     for _ in range(m.num_layers)])
      self.dropout = nn.Dropout(m.dropout_rate)
      self.head_hidden = nn.Conv2d(features, features, 1)
      self.head_out = nn.Conv2d(features, out_features, 1)
      nn.init.zeros_(self.head_out.weight)  # as gen_jax's head: a new network predicts uniform
      nn.init.zeros_(self.head_out.bias)

    def forward(self, x):
      v_pre = self.vertical[0](F.pad(x, (r0, r0, r0, 0)))
      # The image shifted one column right and padded r0 - 1 more on the left, in one pad: the
      # r0 taps read columns j - r0..j - 1 (the type A mask).
      h_pre = self.horizontal[0](F.pad(x, (r0, 0))[..., :-1])
      h = gate(h_pre + self.link[0](shift_down(v_pre)))
      for layer in range(1, m.num_layers + 1):
        v_pre = self.vertical[layer](F.pad(gate(v_pre), (r, r, r, 0)))
        h_pre = self.horizontal[layer](F.pad(h, (r, 0)))
        gated = self.dropout(gate(h_pre + self.link[layer](shift_down(v_pre))))
        h = h + self.residual[layer - 1](gated)
      return self.head_out(F.relu(self.head_hidden(F.relu(h))))

  return GatedPixelCNN()


def load_jax_params(net, params) -> None:
  """Copies gen_jax's parameters (flax names: vertical_l, horizontal_l, link_l, residual_l,
  head_hidden, head_out) into `net` from `torch_network`."""
  import torch  # pylint: disable=import-outside-toplevel

  def module(name):
    if name.startswith("head_"):
      return getattr(net, name)
    kind, layer = name.rsplit("_", 1)
    return getattr(net, kind)[int(layer) - (kind == "residual")]

  with torch.no_grad():
    for name, leaves in params.items():
      conv = module(name)
      kernel = np.asarray(leaves["kernel"])
      if kernel.ndim == 2:  # Dense [in, out] -> 1x1 conv [out, in, 1, 1]
        kernel = kernel.T[:, :, None, None]
      else:  # Conv [kh, kw, in, out] -> [out, in, kh, kw]
        kernel = kernel.transpose(3, 2, 0, 1)
      conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
      conv.bias.copy_(torch.from_numpy(np.asarray(leaves["bias"])))


def torch_inputs(images, method):
  """Images [batch, h, w, c] in [-1, 1] (a torch tensor) -> (the network's input
  [batch, 1, h, w * c], the levels [batch, h, w * c] int64), as `ConvNetwork` sees them."""
  import torch  # pylint: disable=import-outside-toplevel
  h, w, c = method.image_shape
  k = method.likelihood.num_levels
  levels = torch.clamp(torch.round((images + 1.0) * (0.5 * (k - 1))), 0, k - 1)
  x = levels * (2.0 / (k - 1)) - 1.0
  return x.reshape(-1, 1, h, w * c), levels.reshape(-1, h, w * c).long()


def check_same_function(config, method, params) -> None:
  """The PyTorch network given gen_jax's parameters (the zero-initialised output layer made
  random, so that the logits are not all zero) returns gen_jax's logits and loss, without
  dropout."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  params = jax.tree.map(np.array, params)
  rng = np.random.default_rng(0)
  out = params["head_out"]
  out["kernel"] = rng.normal(0, 0.3, out["kernel"].shape).astype(np.float32)
  out["bias"] = rng.normal(0, 0.3, out["bias"].shape).astype(np.float32)
  images = np.asarray(real_batch(config)["image"], np.float32)
  levels = method.levels(jnp.asarray(images))
  jax_logits = np.asarray(method.network(params, levels, None))  # [batch, N, K]
  jax_loss = float(jnp.mean(method.nll(params, jnp.asarray(images), None)) / method.num_dims)

  net = torch_network(config, method.likelihood.params_per_pixel).eval()
  load_jax_params(net, params)
  x, target = torch_inputs(torch.from_numpy(images), method)
  with torch.no_grad():
    logits = net(x)
    loss = F.cross_entropy(logits, target).item()
  logits = logits.permute(0, 2, 3, 1).reshape(jax_logits.shape).numpy()
  np.testing.assert_allclose(logits, jax_logits, rtol=1e-4, atol=1e-4,
                             err_msg="the PyTorch network is not gen_jax's")
  np.testing.assert_allclose(loss, jax_loss, rtol=1e-5, err_msg="the PyTorch loss is not gen_jax's")


def torch_stepper(config, method, threads: int):
  """The same network, loss and update in plain PyTorch (eager, train mode), on `threads`
  intra-op threads (set before every timed round: the setting is global to the process).
  Returns `run(steps) -> seconds per step` and the network's parameter count."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  o = config.optim
  net = torch_network(config, method.likelihood.params_per_pixel).train()
  # optax.adamw's defaults (b1, b2, eps) are torch's; weight decay applies to every parameter in
  # both (no mask), decoupled from the gradient.
  kw = o.kwargs
  opt = torch.optim.AdamW(net.parameters(), lr=o.learning_rate,
                          betas=(kw.get("b1", 0.9), kw.get("b2", 0.999)), eps=kw.get("eps", 1e-8),
                          weight_decay=kw.get("weight_decay", 1e-4))
  num_steps, warmup = config.train.num_steps, o.warmup_steps
  decay_steps = max(num_steps - warmup, 1)

  def lr_factor(count):  # optimizers.learning_rate_schedule, relative to the peak rate
    if count < warmup:
      return count / warmup
    if o.schedule == "constant":
      return 1.0
    t = min(count - warmup, decay_steps) / decay_steps
    return 0.5 * (1 + math.cos(math.pi * t)) if o.schedule == "cosine" else 1.0 - t

  schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
  images = torch.from_numpy(np.asarray(real_batch(config)["image"], np.float32))

  def step():
    x, target = torch_inputs(images, method)
    loss = F.cross_entropy(net(x), target)  # mean over pixels: nats per dimension
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if o.grad_clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip_norm)
    opt.step()
    schedule.step()
    return loss.item()  # a host read each step, as the loop's metrics

  return common.torch_runner(torch, step, threads), sum(p.numel() for p in net.parameters())


def torch_name(threads: int) -> str:
  return f"pytorch {threads} thread" + ("s" if threads > 1 else "")


def torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


def measure(config, torch_threads: tuple[int, ...], rounds: int, steps: int
            ) -> tuple[dict[str, list[float]], dict[str, int]]:
  """Seconds per step of every framework in turn, `rounds` times, keyed "gen_jax" and like
  "pytorch 2 threads"; and each framework's parameter count."""
  method = loop.build_method(config)
  run, state = common.jax_stepper(config)
  params = state.params["model"]
  runners, counts = {"gen_jax": run}, {"gen_jax": count_params(params)}
  if torch_threads:
    check_same_function(config, method, params)
  for threads in torch_threads:
    name = torch_name(threads)
    runners[name], counts[name] = torch_stepper(config, method, threads)
  print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
  assert len(set(counts.values())) == 1, f"parameter counts differ: {counts}"
  times = {key: [] for key in runners}
  for _ in range(rounds):
    for key, run in runners.items():
      times[key].append(run(steps))
  return times, counts


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
  parser.add_argument("--batch_size", type=int, default=0, help="0: the config's (64)")
  parser.add_argument("--torch_threads", default=f"{os.cpu_count()},1",
                      help="PyTorch intra-op thread counts to time, comma-separated; '' for none")
  args = parser.parse_args(argv)

  threads = tuple(int(t) for t in args.torch_threads.split(",") if t)
  if threads and not torch_available():
    print("PyTorch is not importable: timing gen_jax only.", file=sys.stderr)
    threads = ()
  config = get_config(args.batch_size)
  times, counts = measure(config, threads, args.rounds, args.steps)
  med = {key: statistics.median(t) * 1e3 for key, t in times.items()}
  common_fields = {"batch": config.data.batch_size, "rounds": args.rounds, "steps": args.steps,
                   "cpus": os.cpu_count(), "backend": jax.default_backend(),
                   "jax": jax.__version__, "params": counts["gen_jax"]}
  if threads:
    import torch  # pylint: disable=import-outside-toplevel
    common_fields["torch"] = torch.__version__
  rows = common.Rows()
  for key, ms in med.items():
    row = {"framework": key, "ms": round(ms, 3),
           "ms_rounds": [round(1e3 * t, 2) for t in times[key]], **common_fields}
    if key != "gen_jax":
      row["gen_jax_over_pytorch"] = round(med["gen_jax"] / ms, 3)
    rows.emit(row)

  names = [torch_name(t) for t in threads]
  row = lambda cells: "| " + " | ".join(cells) + " |"
  lines = [row(["batch", "gen_jax ms/step"] + [f"{n} ms/step" for n in names]
               + [f"gen_jax / {n}" for n in names]),
           row(["---"] * (2 + 2 * len(names))),
           row([str(config.data.batch_size), f"{med['gen_jax']:.2f}"]
               + [f"{med[n]:.2f}" for n in names] + [f"{med['gen_jax'] / med[n]:.2f}"
                                                     for n in names])]
  print("\n" + "\n".join(lines))
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
