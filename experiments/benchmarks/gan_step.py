"""Milliseconds per DCGAN train step (both players) at batch 128 on 8x8 digits: the jitted
gen_jax step against the same networks and updates written in plain PyTorch, for both of the
generator's upsampling modes.

    python experiments/benchmarks/gan_step.py [--rounds 7] [--steps 20] [--malloc_rounds 3]

The model is experiments/configs/dcgan_digits.py's (its widths, latent, losses and Adam), with
`model.upsample` set to `resize` (nearest-neighbour x2, then a 3x3 convolution) or `transpose`
(a 4x4 transposed convolution of stride 2), and `--penalty` (default none; `r1_penalty` adds
the R1 term, a double backward pass, on both sides). No EMA on either side. One step is a
discriminator update on a real batch and fresh fakes, then a generator update on fresh
latents, as `gen_jax.train.step.make_train_step` runs them (jitted as the loop jits it, state
donated); PyTorch runs the same sequence eagerly, once per --torch_threads setting of
`torch.set_num_threads` (default: the machine's core count, and 1), and is skipped cleanly when
torch is not installed.

The measurements alternate: each round times --steps back-to-back steps of every (framework,
mode) in turn, so all see the same machine load; the table gives medians over rounds and the
ratio gen_jax / PyTorch (below 1: gen_jax is faster). With --malloc_rounds N, the gen_jax steps
are also timed in fresh subprocesses with and without gen_jax's malloc settings
(gen_jax/host_memory.py; experiments/benchmarks/malloc_env.py), alternating, N rounds each.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

import jax
import numpy as np

from gen_jax.train import config as config_lib
from gen_jax.train import loop

import common  # pylint: disable=wrong-import-order
from malloc_env import child_env  # pylint: disable=wrong-import-order

MODES = ("resize", "transpose")
BATCH = 128


def get_config(mode: str, penalty: str):
  config = common.load_config("dcgan_digits")
  config.model.update(upsample=mode, penalty=penalty)
  config.data.batch_size = BATCH
  config.train.ema_decay = 0.0
  return config_lib.resolve(config)


def real_batch(config) -> dict[str, np.ndarray]:
  return next(loop.load_data(config, config.data.train_split, train=True))


def torch_stepper(config, threads: int):
  """The same players and updates in plain PyTorch (eager, NCHW, float32), on `threads`
  intra-op threads (set before every timed round: the setting is global to the process)."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  m, o = config.model, config.optim
  h, w, c = m.image_shape
  gw, dw = tuple(m.gen_widths), tuple(m.disc_widths)
  ups = len(gw) - 1

  class ChannelNorm(nn.Module):  # flax LayerNorm over the channel axis of NHWC
    def __init__(self, ch):
      super().__init__()
      self.norm = nn.LayerNorm(ch, eps=1e-6)

    def forward(self, x):
      return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

  class Resize(nn.Module):
    def __init__(self, cin, cout):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
      return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

  def transpose(cin, cout):  # 4x4, stride 2, output exactly twice the input, like flax "SAME"
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)

  upsample = Resize if m.upsample == "resize" else transpose

  class Generator(nn.Module):
    def __init__(self):
      super().__init__()
      self.h0, self.w0 = h >> ups, w >> ups
      self.project = nn.Linear(m.latent_dim, self.h0 * self.w0 * gw[0])
      self.norms = nn.ModuleList([ChannelNorm(ch) for ch in gw])
      self.ups = nn.ModuleList([upsample(a, b) for a, b in zip(gw[:-1], gw[1:])])
      self.to_image = nn.Conv2d(gw[-1], c, 3, padding=1)

    def forward(self, z):
      x = self.project(z).view(-1, self.h0, self.w0, gw[0]).permute(0, 3, 1, 2)
      x = F.relu(self.norms[0](x))
      for up, norm in zip(self.ups, self.norms[1:]):
        x = F.relu(norm(up(x)))
      return torch.tanh(self.to_image(x))

  class Discriminator(nn.Module):
    def __init__(self):
      super().__init__()
      convs = [nn.Conv2d(c, dw[0], 3, padding=1)]
      convs += [nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(dw[:-1], dw[1:])]
      self.convs = nn.ModuleList(convs)
      self.logit = nn.Linear((h >> ups) * (w >> ups) * dw[-1], 1)

    def forward(self, x):
      for conv in self.convs:
        x = F.leaky_relu(conv(x), 0.2)
      return self.logit(x.flatten(1))[:, 0]

  gen, disc = Generator(), Discriminator()
  betas = (o.kwargs["b1"], o.kwargs["b2"])
  opt_d = torch.optim.Adam(disc.parameters(), lr=o.learning_rate, betas=betas)
  opt_g = torch.optim.Adam(gen.parameters(), lr=o.learning_rate, betas=betas)
  real = torch.from_numpy(np.ascontiguousarray(
      np.asarray(real_batch(config)["image"], np.float32).transpose(0, 3, 1, 2)))
  weight = m.penalty_weight if m.penalty else 0.0

  def step():
    z = torch.randn(BATCH, m.latent_dim)
    with torch.no_grad():
      fake = gen(z)
    x = real.detach().requires_grad_(weight > 0)
    real_logits = disc(x)
    loss = (F.softplus(-real_logits) + F.softplus(disc(fake))).mean()
    if weight > 0:  # R1: the squared norm of d critic / d real, per example
      (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
      loss = loss + weight * grad.pow(2).sum((1, 2, 3)).mean()
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    g_loss = F.softplus(-disc(gen(torch.randn(BATCH, m.latent_dim)))).mean()
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return loss.item() + g_loss.item()  # a host read each step, as the loop's metrics

  return common.torch_runner(torch, step, threads)


def torch_name(threads: int) -> str:
  return f"pytorch {threads} thread" + ("s" if threads > 1 else "")


def torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


def measure(torch_threads: tuple[int, ...], penalty: str, rounds: int, steps: int
            ) -> dict[tuple[str, str], list[float]]:
  """Seconds per step of every (framework, mode) in turn, `rounds` times; keys like
  ("gen_jax", "resize") and ("pytorch 2 threads", "resize")."""
  runners = {}
  for mode in MODES:
    config = get_config(mode, penalty)
    runners[("gen_jax", mode)] = common.jax_stepper(config)[0]
    for threads in torch_threads:
      runners[(torch_name(threads), mode)] = torch_stepper(config, threads)
  times = {key: [] for key in runners}
  for _ in range(rounds):
    for key, run in runners.items():
      times[key].append(run(steps))
  return times


def malloc_child_times(penalty: str, rounds: int, steps: int, malloc: bool) -> dict:
  out = subprocess.run([sys.executable, __file__, "--child", "--penalty", penalty,
                        "--rounds", str(rounds), "--steps", str(steps)],
                       env=child_env(malloc), capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
  parser.add_argument("--penalty", default="", help="'' or r1_penalty (both frameworks)")
  parser.add_argument("--torch_threads", default=f"{os.cpu_count()},1",
                      help="PyTorch intra-op thread counts to time, comma-separated; '' for none")
  parser.add_argument("--malloc_rounds", type=int, default=0,
                      help="subprocess pairs timing gen_jax with and without its malloc settings")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.child:  # gen_jax only, median per mode, for the malloc comparison
    times = measure((), args.penalty, args.rounds, args.steps)
    print(json.dumps({mode: statistics.median(t) for (_, mode), t in times.items()}))
    return {}

  threads = tuple(int(t) for t in args.torch_threads.split(",") if t)
  if threads and not torch_available():
    print("PyTorch is not importable: timing gen_jax only.", file=sys.stderr)
    threads = ()
  times = measure(threads, args.penalty, args.rounds, args.steps)
  med = {key: statistics.median(t) * 1e3 for key, t in times.items()}
  result = {"batch": BATCH, "penalty": args.penalty or "none", "rounds": args.rounds,
            "steps": args.steps, "cpus": os.cpu_count(), "backend": jax.default_backend(),
            "ms": {f"{f}/{m}": round(v, 3) for (f, m), v in med.items()},
            "ms_rounds": {f"{f}/{m}": [round(1e3 * t, 2) for t in v]
                          for (f, m), v in times.items()}}
  if threads:
    import torch  # pylint: disable=import-outside-toplevel
    result["torch"] = torch.__version__
  result["jax"] = jax.__version__
  print(json.dumps(result), flush=True)
  torch_names = [torch_name(t) for t in threads]
  row = lambda cells: "| " + " | ".join(cells) + " |"
  lines = [row(["upsample", "gen_jax ms/step"] + [f"{n} ms/step" for n in torch_names]
               + [f"gen_jax / {n}" for n in torch_names]),
           row(["---"] * (2 + 2 * len(threads)))]
  for mode in MODES:
    jx = med[("gen_jax", mode)]
    pts = [med[(n, mode)] for n in torch_names]
    lines.append(row([mode, f"{jx:.1f}"] + [f"{pt:.1f}" for pt in pts]
                     + [f"{jx / pt:.2f}" for pt in pts]))
  lines.append("")
  for name in ["gen_jax"] + torch_names:
    lines.append(f"{name} transpose / resize: "
                 f"{med[(name, 'transpose')] / med[(name, 'resize')]:.2f}")

  if args.malloc_rounds:
    plain, tuned = {m: [] for m in MODES}, {m: [] for m in MODES}
    for _ in range(args.malloc_rounds):
      for malloc, store in ((False, plain), (True, tuned)):
        out = malloc_child_times(args.penalty, 3, args.steps, malloc)
        for mode in MODES:
          store[mode].append(out[mode])
    lines += ["", "| upsample | gen_jax, glibc default ms/step | gen_jax, its settings ms/step | "
              "speed-up |", "|---|---|---|---|"]
    for mode in MODES:
      p, q = statistics.median(plain[mode]) * 1e3, statistics.median(tuned[mode]) * 1e3
      result.setdefault("malloc", {})[mode] = {"default_ms": round(p, 3),
                                               "settings_ms": round(q, 3)}
      lines.append(f"| {mode} | {p:.1f} | {q:.1f} | {p / q:.2f}x |")
    print(json.dumps({"malloc": result["malloc"], "rounds": args.malloc_rounds}), flush=True)
  print("\n" + "\n".join(lines))
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
