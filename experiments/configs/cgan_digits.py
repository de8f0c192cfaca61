"""A class-conditional DCGAN on the bundled 8x8 `digits`: both players see each digit's label.

    python experiments/main.py --config experiments/configs/cgan_digits.py \
        --workdir runs/cgan_digits

experiments/configs/dcgan_digits.py's players and training, conditioned on `batch["label"]`
(`model.label_key`): the generator concatenates a learned label embedding to its latent, the
discriminator adds the projection term <embed(y), features> to its logit. The sample grid
(`samples/samples_*.png`, 100 samples) shows one class per row, 0 to 9 from the top; each row of
`samples/interpolation_*.png` is a spherical path between two latents under one label.
Measured by experiments/benchmarks/gan_digits.py (3,000 steps, about 5 minutes on a shared
2-core CPU): Frechet distance to the test digits 1.74 (1.61-1.90; real train images 1.08), and
the digits classifier reads 98.1% of the samples as the class asked for (97.5% on the real test
images); docs/images/cgan_digits_samples.png.

`:tiny` runs a few steps of a smaller model, for tests.
"""

import importlib.util
from pathlib import Path

import ml_collections


def _dcgan_digits(arg: str) -> ml_collections.ConfigDict:
  path = Path(__file__).with_name("dcgan_digits.py")
  spec = importlib.util.spec_from_file_location("dcgan_digits", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  if arg not in ("", "tiny"):
    raise ValueError(f"Unknown config argument {arg!r}: use '' or 'tiny'.")
  c = _dcgan_digits(arg)
  c.model.update(label_key="label", num_classes=10)
  return c
