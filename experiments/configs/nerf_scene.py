"""NeRF (Mildenhall et al. 2020) on the bundled procedural scene: 64 posed 32x32 views of two
spheres and two boxes on a slab, ray traced at build time (`gen_jax.data.scene`).

    python experiments/main.py --config experiments/configs/nerf_scene.py \
        --workdir runs/nerf_scene

Each step draws 1,024 random pixels from 16 training views and renders their rays with a
coarse field (32 stratified depths) and a fine field (the 32 plus 32 hierarchical depths); the
fields are 4 x 64 ReLU MLPs on positionally encoded points (10 octaves) with a 32-unit colour
head on the encoded direction (4 octaves): the paper's design, made small enough for a 2-core
CPU. Evaluation renders the 16 held-out views (cameras the training views never had) and
reports their mean `psnr` (dB) in metrics.jsonl; samples are a 24-frame turntable,
`samples/turntable_*.gif` (and its depth) with a grid of the frames. Expected after 800 steps
(about 4 minutes of steps on a 2-core CPU): held-out `psnr` 22.6 dB (21.2 at 400 steps); the
mean training colour scores 9.4 dB. experiments/benchmarks/nerf_scene.py measured it, with
`:coarse` (23.3 dB), in docs/results.md.

`:64` trains on the 64x64 views (scene/primitives_64); `:coarse` drops the fine field (96
stratified depths instead: as many field evaluations per ray); `:tiny` runs 2 steps of a small
field, for tests.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("nerf")
  c.model.update(near=2.0, far=6.0, num_coarse=32, num_fine=32, rays_per_batch=1024,
                 point_freqs=10, direction_freqs=4, width=64, depth=4, head_width=32,
                 background=1.0)
  c.data.update(name="scene/primitives_32", batch_size=16, eval_batch_size=4)
  c.optim.update(name="adam", learning_rate=5e-3, schedule="cosine", warmup_steps=100)
  c.train.update(num_steps=800, log_every=100, eval_every=200, checkpoint_every=400,
                 sample_every=0, num_samples=24)
  args = set(filter(None, arg.split(",")))
  if "64" in args:
    c.data.name = "scene/primitives_64"
  if "coarse" in args:
    c.model.update(num_coarse=96, num_fine=0)
  if "tiny" in args:
    c.model.update(num_coarse=8, num_fine=8, rays_per_batch=64, point_freqs=4,
                   direction_freqs=2, width=16, depth=2, head_width=8)
    c.data.update(batch_size=4, eval_batch_size=8)
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, num_samples=3,
                   progress_bar=False)
  if args - {"64", "coarse", "tiny"}:
    raise ValueError(f"Unknown config argument {arg!r}: use a comma-separated combination of "
                     "'64', 'coarse' and 'tiny' (or '').")
  return c
