"""Where the byte-level LM's training step spends its time, as a fraction of `jnp.dot`'s FLOP/s.

    python experiments/benchmarks/lm_step.py [--config lm_python] [--rounds 9] [--iters 5]
        [--baseline_ref HEAD] [--variant gelu:model.activation=gelu,model.norm=layer ...]

Times, side by side in one process and alternating (so that every variant sees the same machine
load): the forward pass (loss only), forward + backward (`value_and_grad` of the loss), the full
train step (gradients + AdamW, jitted with the state donated, on one device; all in the config's
`train.cpu_async_dispatch` mode, which holds for the whole process), and a float32
`jnp.dot` of the model's largest matmul shape `[batch * length, d_model] x [d_model, d_ff]`. With
`--baseline_ref`, the same three model timings are also taken for `gen_jax/nn/transformer.py` as
it is at that git revision, so that a change to the module is measured against the old one under
the same load; each `--variant NAME:SECTION.KEY=VALUE,...` adds the same timings for the config
with those overrides (its own batch's FLOPs; the `jnp.dot` keeps the config's shape). Model
FLOPs are `train_flops_per_token` of experiments/benchmarks/lm_python.py (the forward pass
counts one third of them). The batch is random tokens of the config's shape, so
no data is read. Prints one JSON line per variant and part, and a Markdown table of medians.
"""

import argparse
import dataclasses
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from gen_jax import host_memory
from gen_jax.methods.base import DataSpec
from gen_jax.nn.transformer import TransformerConfig
from gen_jax.train import config as config_lib
from gen_jax.train.setup import make_setup

from lm_python import train_flops_per_token  # pylint: disable=wrong-import-order
from common import apply_overrides, load_config  # pylint: disable=wrong-import-order

REPO = Path(__file__).resolve().parents[2]


def transformer_at(ref: str):
  """The `Transformer` class of gen_jax/nn/transformer.py at git revision `ref`."""
  source = subprocess.run(["git", "show", f"{ref}:gen_jax/nn/transformer.py"], cwd=REPO,
                          check=True, capture_output=True, text=True).stdout
  path = Path(tempfile.mkdtemp()) / f"transformer_{ref.replace('/', '_')}.py"
  path.write_text(source)
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.Transformer


def make_fns(config, network_cls=None):
  """Jitted (forward, forward + backward, train step) and their first arguments; the train step
  is the loop's (`gen_jax.train.setup`)."""
  config = config_lib.resolve(config)
  host_memory.set_cpu_async_dispatch(config.train.cpu_async_dispatch)
  vocab_size = TransformerConfig.from_config(config.model).vocab_size
  tokens = jax.random.randint(jax.random.key(0), (config.data.batch_size, config.data.seq_len),
                              0, vocab_size, jnp.int32)
  batch = {config.model.tokens_key: tokens}
  setup = make_setup(config, spec=DataSpec.from_batch(batch, vocab_size=vocab_size),
                     example=batch)
  if network_cls is not None:
    # The old class takes the hyperparameters it had then, by name.
    method = setup.method
    known = {f.name for f in dataclasses.fields(network_cls)}
    hyperparameters = dataclasses.asdict(method.network.config)
    setup = dataclasses.replace(setup, method=dataclasses.replace(method, network=network_cls(
        **{k: v for k, v in hyperparameters.items() if k in known})))
  state = setup.init_state(batch)
  player = setup.method.players[0]
  # A copy: the train step donates (deletes) the state's buffers.
  params = jax.tree.map(jnp.copy, state.params[player.name])
  loss_fn = lambda p, b: player.loss_fn({player.name: p}, p, b, None, {})[0]
  forward = jax.jit(loss_fn)
  backward = jax.jit(jax.value_and_grad(loss_fn))
  return {"forward": (forward, params, batch), "forward+backward": (backward, params, batch),
          "train_step": (setup.train_step(), state, batch)}


def time_fn(fn, args: tuple, iters: int, donated: bool) -> tuple[float, tuple]:
  """Mean seconds per call over `iters` back-to-back calls, and the arguments for the next call."""
  tic = time.perf_counter()
  out = None
  for _ in range(iters):
    out = fn(*args)
    if donated:
      args = (out[0],) + tuple(args[1:])
  jax.block_until_ready(out)
  return (time.perf_counter() - tic) / iters, args


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="lm_python")
  parser.add_argument("--rounds", type=int, default=9)
  parser.add_argument("--iters", type=int, default=5, help="calls per timing")
  parser.add_argument("--baseline_ref", default="", help="git revision to compare against")
  parser.add_argument("--variant", action="append", default=[],
                      metavar="NAME:SECTION.KEY=VALUE,...", help="config overrides to time too")
  args = parser.parse_args(argv)

  config = load_config(args.config)
  m, d = TransformerConfig.from_config(config.model), config.data
  tokens = d.batch_size * (d.seq_len - 1)

  def step_flops(c):
    return (train_flops_per_token(TransformerConfig.from_config(c.model)) * c.data.batch_size
            * (c.data.seq_len - 1))

  variants = {"current": make_fns(config)}
  flops = {"current": step_flops(config)}
  if args.baseline_ref:
    variants[args.baseline_ref] = make_fns(config, transformer_at(args.baseline_ref))
    flops[args.baseline_ref] = flops["current"]
  for spec in args.variant:
    name, _, overrides = spec.partition(":")
    variant_config = apply_overrides(load_config(args.config), overrides.split(","))
    variants[name] = make_fns(variant_config)
    flops[name] = step_flops(variant_config)
  a = jnp.ones((tokens, m.d_model), jnp.float32)
  b = jnp.ones((m.d_model, m.d_ff), jnp.float32)
  dot = jax.jit(jnp.dot)

  timers = {("dot", "dot"): [dot, (a, b), False]}
  for variant, fns in variants.items():
    for part, (fn, *fn_args) in fns.items():
      timers[(variant, part)] = [fn, tuple(fn_args), part == "train_step"]
  for timer in timers.values():  # compile and warm up
    _, timer[1] = time_fn(timer[0], timer[1], 2, timer[2])
  times = {key: [] for key in timers}
  for _ in range(args.rounds):
    for key, timer in timers.items():  # alternating: every variant sees the same load
      iters = args.iters * (20 if key[0] == "dot" else 1)
      seconds, timer[1] = time_fn(timer[0], timer[1], iters, timer[2])
      times[key].append(seconds)

  dot_sec = statistics.median(times[("dot", "dot")])
  dot_flops = 2 * tokens * m.d_model * m.d_ff / dot_sec
  results = []
  lines = ["| variant | part | ms | share of train step | GFLOP/s | fraction of jnp.dot |",
           "|---|---|---|---|---|---|"]
  for variant in variants:
    step_sec = statistics.median(times[(variant, "train_step")])
    for part in ("forward", "forward+backward", "train_step"):
      sec = statistics.median(times[(variant, part)])
      gflops = flops[variant] / (3 if part == "forward" else 1) / sec / 1e9
      result = {"config": args.config, "variant": variant, "part": part,
                "ms": round(sec * 1e3, 3), "share_of_step": round(sec / step_sec, 3),
                "gflops": round(gflops, 2), "dot_gflops": round(dot_flops / 1e9, 2),
                "fraction_of_dot": round(gflops * 1e9 / dot_flops, 4),
                "rounds": args.rounds, "backend": jax.default_backend()}
      print(json.dumps(result))
      results.append(result)
      lines.append(f"| {variant} | {part} | {sec * 1e3:.2f} | {100 * sec / step_sec:.0f}% | "
                   f"{gflops:.1f} | {100 * result['fraction_of_dot']:.1f}% |")
  lines.append(f"| jnp.dot [{tokens},{m.d_model}]x[{m.d_model},{m.d_ff}] | | {dot_sec * 1e3:.3f} "
               f"| | {dot_flops / 1e9:.1f} | 100% |")
  print("\n" + "\n".join(lines))
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
