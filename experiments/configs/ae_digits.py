"""A plain autoencoder on `digits`: the VAE of vae_digits.py with a deterministic encoder and no
KL term (the `deterministic` posterior strategy), for the contrast in sampling.

    python experiments/main.py --config experiments/configs/ae_digits.py \
        --workdir runs/ae_digits

Its decoder is fed N(0, I) vectors by `sample`, like the VAE's; nothing in its training made
those vectors look like codes of digits, so its samples are worse: experiments/benchmarks/
vae_digits.py measured a Frechet distance to the test images of 7.0 (VAE: 3.8; train images:
1.1). It has no likelihood bound: `eval` reports `recon_bpd`, the NLL of each test image given
its own code, 1.33 bits/dim after 4,000 steps, below the VAE's 1.61 (an autoencoder
reconstructs well; it is not a density model). `:tiny` runs a few steps, for tests.
"""

import importlib.util
from pathlib import Path

import ml_collections


def _vae_config(arg: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(
      "vae_digits", Path(__file__).resolve().parent / "vae_digits.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = _vae_config(arg)
  c.model.update(posterior="deterministic", objective="elbo")
  return c
