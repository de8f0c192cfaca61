"""Neural style transfer (Gatys et al. 2016) on the two photographs that ship with scikit-learn.

    python experiments/main.py --config experiments/configs/style_transfer.py \
        --workdir runs/style_transfer

The content image is the "china" photo, the style image the "flower" photo (the bundled
`sample_images/128` dataset, 128x128); the image starts from the content and Adam changes its
pixels for 300 steps. The features are VGG-19's with RANDOM weights (the offline default: random
convolutional features capture texture statistics, Ustyuzhaninov et al. 2017), not the ImageNet
features of the paper. `samples/samples_*.png` shows content, style and result every 50 steps;
metrics.jsonl and TensorBoard have the three loss terms.

`:vgg` uses the ImageNet VGG-19 weights, which gen_jax never downloads: get the Keras file
vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (keras-applications release v0.1 of
github.com/fchollet/deep-learning-models) and pass it with --config.model.weights=/path/to/it.h5
(default runs/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5). `:lbfgs` optimises with L-BFGS
and its line search instead of Adam; `:noise` starts from noise; `:256` works at 256x256;
`:tiny` runs 2 steps at 64x64, for tests. docs/results.md has the measured figures from
experiments/benchmarks/style_transfer.py.
"""

import ml_collections

from gen_jax.train.config import defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = defaults("style_transfer")
  c.model.update(content_layer="block4_conv2",
                 style_layers=("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                               "block5_conv1"),
                 content_weight=1.0, style_weight=1e3, tv_weight=0.0, start="content",
                 pooling="average")
  c.data.update(name="sample_images/128", batch_size=2, eval_split="train",
                preprocess=("scale_to_unit",))
  c.optim.update(name="adam", learning_rate=0.02, schedule="constant", warmup_steps=0)
  c.train.update(num_steps=300, log_every=50, eval_every=100, checkpoint_every=300,
                 sample_every=50, num_samples=3)
  args = set(filter(None, arg.split(",")))
  if "vgg" in args:
    c.model.weights = "runs/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
  if "lbfgs" in args:
    c.optim.update(name="lbfgs", learning_rate=1.0)
    c.train.update(num_steps=100, sample_every=25, eval_every=50, checkpoint_every=100)
  if "noise" in args:
    c.model.start = "noise"
  if "256" in args:
    c.data.name = "sample_images/256"
  if "tiny" in args:
    c.data.name = "sample_images/64"
    c.model.style_layers = ("block1_conv1", "block2_conv1")
    c.model.content_layer = "block2_conv2"
    c.train.update(num_steps=2, log_every=1, eval_every=0, checkpoint_every=2, sample_every=0,
                   progress_bar=False)
  if args - {"vgg", "lbfgs", "noise", "256", "tiny"}:
    raise ValueError(f"Unknown config argument {arg!r}: use a comma-separated combination of "
                     "'vgg', 'lbfgs', 'noise', '256' and 'tiny' (or '').")
  return c
