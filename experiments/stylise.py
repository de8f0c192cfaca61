"""Stylises your own photograph: neural style transfer on two image files.

    python experiments/stylise.py --content photo.jpg --style painting.jpg --out runs/stylised \
        [--size 256] [--steps 300] [--weights vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5]

Each file is centre-cropped to a square and resized to --size (Pillow, LANCZOS), then the
`style_transfer` method of experiments/configs/style_transfer.py (--config_arg selects its
optimisation variants: `lbfgs`, `noise`, `vgg`) optimises the image with the setup's jitted
train step. Writes `progress_<step>.png` (content, style, current image) every --every steps
and `stylised.png` (the result alone) under --out, and prints their paths. Without --content /
--style it uses the bundled scikit-learn photographs; without --weights (or `vgg`, which reads
runs/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5) the features are VGG-19's with random
weights (not ImageNet features). Training runs with checkpoints and TensorBoard are
experiments/main.py's, on a dataset.
"""

import sys
from pathlib import Path

import jax
import numpy as np
from absl import app, flags
from absl import logging as absl_logging
from PIL import Image

from gen_jax.data.builders import center_square
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.train import config as config_lib
from gen_jax.train import setup as setup_lib
from gen_jax.viz import grids

CONFIG = Path(__file__).resolve().parent / "configs" / "style_transfer.py"

_CONTENT = flags.DEFINE_string("content", "", "Content image file (default: sklearn's china).")
_STYLE = flags.DEFINE_string("style", "", "Style image file (default: sklearn's flower).")
_OUT = flags.DEFINE_string("out", "runs/stylised", "Output folder.")
_SIZE = flags.DEFINE_integer("size", 128, "Side of the square images, in pixels.")
_STEPS = flags.DEFINE_integer("steps", 300, "Optimisation steps.")
_EVERY = flags.DEFINE_integer("every", 50, "Steps between progress images.")
_WEIGHTS = flags.DEFINE_string("weights", "", "VGG-19 weights (.h5 Keras or .npz).")
_CONFIG_ARG = flags.DEFINE_string(
    "config_arg", "", "Variants of style_transfer.py that set the optimisation: a comma-separated "
    "combination of lbfgs, noise and vgg (the size is --size).")
# The config variants this script takes: the others set the data, which are the files here.
VARIANTS = ("lbfgs", "noise", "vgg")


def read_image(path: str, default: str, size: int) -> np.ndarray:
  """The file (or sklearn's sample photo `default`) as uint8 [size, size, 3]."""
  if path:
    if not Path(path).is_file():
      sys.exit(f"stylise.py: {path} is not a file: pass an image file (JPEG, PNG, ...).")
    try:
      image = np.asarray(Image.open(path).convert("RGB"))
    except OSError as e:
      sys.exit(f"stylise.py: {path} cannot be read as an image ({e}).")
  else:
    from sklearn.datasets import load_sample_image  # pylint: disable=import-outside-toplevel
    image = load_sample_image(default)
  square = Image.fromarray(center_square(image))
  return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), np.uint8)


def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)
  if len(argv) > 1:
    sys.exit(f"stylise.py: unexpected arguments {argv[1:]}: every input is a --flag.")
  for name, flag, low in (("size", _SIZE, 32), ("steps", _STEPS, 1), ("every", _EVERY, 1)):
    if flag.value < low:
      sys.exit(f"stylise.py: --{name} must be at least {low}, got {flag.value}.")
  unknown = set(filter(None, _CONFIG_ARG.value.split(","))) - set(VARIANTS)
  if unknown:
    sys.exit(f"stylise.py: --config_arg {_CONFIG_ARG.value!r}: {', '.join(sorted(unknown))} is "
             f"not one of {', '.join(VARIANTS)} (the size is --size, the images the files).")
  images = np.stack([read_image(_CONTENT.value, "china.jpg", _SIZE.value),
                     read_image(_STYLE.value, "flower.jpg", _SIZE.value)])
  batch = {"image": images.astype(np.float32) / 127.5 - 1.0, "label": np.array([0, 1], np.int32)}
  config = config_lib.load_file(f"{CONFIG}:{_CONFIG_ARG.value}")
  config.model.update(content_label=0, style_label=1)
  if _WEIGHTS.value:
    config.model.weights = _WEIGHTS.value
  config.train.num_steps = _STEPS.value
  spec = DataSpec(features={"image": Feature((_SIZE.value, _SIZE.value, 3), "uint8"),
                            "label": Feature((), "int32")}, num_levels=256, num_classes=2,
                  name="your images")
  try:
    setup = setup_lib.make_setup(config_lib.resolve(config), spec=spec,
                                 example=batch)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"stylise.py: {e}")
  state = setup.init_state(batch)
  step = setup.train_step()
  out = Path(_OUT.value)
  for i in range(1, _STEPS.value + 1):
    state, metrics = step(state, batch)
    if i % _EVERY.value == 0 or i == _STEPS.value:
      path = grids.save_image_grid(np.asarray(setup.method.sample(state.variables(), None, 3)),
                                   out / f"progress_{i:05d}.png", columns=3)
      print(f"{path}  loss {float(metrics['image/loss']):.4g}")
  image = np.asarray(jax.device_get(setup.method.sample(state.variables(), None, 3)))[2]
  print(grids.save_image_grid(image[None], out / "stylised.png", columns=1, padding=0))


if __name__ == "__main__":
  app.run(main)
