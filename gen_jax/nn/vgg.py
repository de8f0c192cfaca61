"""The convolutional trunk of VGG-19, with its layers named as Keras names them, for perceptual
features (style transfer, texture synthesis, perceptual losses).

VGG-19 is configuration E of Simonyan & Zisserman 2015 (Table 1): sixteen 3x3 convolutions
(stride 1, padding 1, each followed by a ReLU) in five blocks of 2, 2, 4, 4 and 4 convolutions
with 64, 128, 256, 512 and 512 channels, and a 2x2 pooling of stride 2 after each block. The
fully connected layers are left out (Keras's `include_top=False`): 20,024,384 parameters.

Layer names are Keras's (`keras.applications.VGG19`): `block{b}_conv{i}` and `block{b}_pool`,
b = 1..5. Gatys et al. 2016 call the same activations `relu{b}_{i}` (or `conv{b}_{i}`, the Caffe
ReLU being in place) and `pool{b}`.

Weights. gen_jax never downloads anything. `load_keras_h5` reads the file that Keras itself
downloads, `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (about 80 MB, ImageNet-trained,
converted from the authors' Caffe model), from `KERAS_WEIGHTS_URL`; `save_npz` converts it once
into an `.npz` that `load_npz` reads without h5py. `random_params` gives the offline default:
random weights, which are NOT ImageNet features but still give usable texture statistics (see
its docstring).

References:
  Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    ICLR 2015 (Table 1, configuration E; Sec. 2.1 for the 3x3 convolutions and 2x2 pooling).
  Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016
    (Sec. 2: VGG-19 features without the fully connected layers; average instead of max
    pooling for image synthesis).
  Ustyuzhaninov, Brendel, Gatys and Bethge, "What does it take to generate natural textures?",
    ICLR 2017 (textures from convolutional networks with random filters).
  He, Wang and Hopcroft, "A Powerful Generative Model Using Random Weights for the Deep Image
    Representation", NeurIPS 2016 (texture synthesis and style transfer with a random-weight
    VGG-19).
"""

import os
import zipfile
from typing import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import MissingFileError, SettingError
from gen_jax.types import Array, Params

BLOCK_CONVS = (2, 2, 4, 4, 4)  # 3x3 convolutions per block, configuration E
BLOCK_CHANNELS = (64, 128, 256, 512, 512)  # output channels of every convolution in the block

LAYERS: tuple[str, ...] = tuple(
    name for block, convs in enumerate(BLOCK_CONVS, start=1)
    for name in [f"block{block}_conv{i}" for i in range(1, convs + 1)] + [f"block{block}_pool"])
CONV_LAYERS: tuple[str, ...] = tuple(name for name in LAYERS if "_conv" in name)

# The ImageNet mean pixel of the Caffe VGG models, in BGR order and [0, 255] units (Keras's
# `imagenet_utils.preprocess_input`, mode "caffe").
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

KERAS_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_WEIGHTS_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
                     + KERAS_WEIGHTS_FILE)


def layer_channels(name: str) -> int:
  """The number of channels of layer `name`'s output: 64, 128, 256, 512 or 512 for blocks 1 to 5
  (a pool keeps its block's channels). Raises a ValueError for a name not in `LAYERS`."""
  _check_names([name])
  return BLOCK_CHANNELS[int(name[len("block")]) - 1]


def _conv_shapes(name: str) -> tuple[tuple[int, ...], tuple[int]]:
  """(kernel [3, 3, in, out], bias [out]) shapes of convolution `name`."""
  index = CONV_LAYERS.index(name)
  in_channels = 3 if index == 0 else layer_channels(CONV_LAYERS[index - 1])
  out_channels = layer_channels(name)
  return (3, 3, in_channels, out_channels), (out_channels,)


def _check_names(names: Sequence[str]) -> None:
  unknown = [name for name in names if name not in LAYERS]
  if unknown:
    raise SettingError(f"unknown VGG-19 layer name(s) {unknown}; the valid names, in order, are "
                       f"{list(LAYERS)}.")


# ----------------------------------------------------------------------------------------------
# Input preprocessing and pooling.
# ----------------------------------------------------------------------------------------------


def caffe_preprocess(x: Array) -> Array:
  """Images in gen_jax's range -> the input the Caffe (and Keras) VGG weights were trained on.

  x [..., 3] RGB in [-1, 1] -> [..., 3] BGR in [0, 255] minus the ImageNet mean pixel
  `CAFFE_MEAN_BGR`: out[..., k] = 127.5 * (x[..., 2 - k] + 1) - mean_bgr[k]. This is Keras's
  `preprocess_input(mode="caffe")` (RGB -> BGR, subtract the mean, no scaling) applied after
  mapping [-1, 1] to [0, 255]; e.g. the RGB pixel (-1, 0, 1) becomes (151.061, 10.721, -123.68).
  """
  rgb255 = 127.5 * (x + 1.0)
  return rgb255[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR, dtype=x.dtype)


def max_pool(x: Array) -> Array:
  """2x2 max pooling of stride 2, VALID (an odd row or column is dropped, as in Keras)."""
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def average_pool(x: Array) -> Array:
  """2x2 average pooling of stride 2, VALID: each output is the mean of its 4 inputs."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


POOLINGS: dict[str, Callable[[Array], Array]] = {"max": max_pool, "average": average_pool}


class VGG19(nn.Module):
  """The VGG-19 convolutional trunk (configuration E, no fully connected layers).

  Parameters are `{"params": {conv_name: {"kernel": [3, 3, in, out], "bias": [out]}}}` for the
  16 names in `CONV_LAYERS`: Flax's HWIO kernels, the layout of Keras's TensorFlow kernels, so
  `load_keras_h5` copies them unchanged. Build them with `random_params`, `load_keras_h5` or
  `load_npz`; `init` creates only the convolutions up to the deepest layer it is asked for.

  Attributes:
    pooling: "max" (VGG's own, the default) or "average" (Gatys et al. 2016, Sec. 2, find that
      average pooling gives slightly more appealing syntheses); a key of `POOLINGS`.
    preprocess_fn: applied to the images first, inside `__call__`, so callers always pass RGB in
      [-1, 1]. `caffe_preprocess` (the default) is what the Keras/Caffe ImageNet weights expect.
      With `random_params` it matters less: their biases are zero, so the ReLU network is
      positively homogeneous and the factor 127.5 only scales every activation (the mean shift
      does change them).

  Gatys et al. 2016 rescale the trained weights so that each filter's mean activation over
  images and positions is one; these are the weights as Keras ships them, unrescaled, so layers'
  activations (and Gram matrices) differ in scale and a loss over several layers should weigh
  them accordingly.
  """

  pooling: str = "max"
  preprocess_fn: Callable[[Array], Array] = caffe_preprocess

  @nn.compact
  def __call__(self, x: Array, *, layers: Sequence[str]) -> dict[str, Array]:
    """Activations of the requested layers.

    Args:
      x: [batch, h, w, 3] float RGB images in [-1, 1]. h and w need not be multiples of 32; each
        pool halves them, rounding down.
      layers: names from `LAYERS`, in any order. A `block{b}_conv{i}` activation is taken after
        its ReLU (>= 0); a `block{b}_pool` activation after the pooling. Only the layers up to
        the deepest one requested are computed.

    Returns:
      {name: [batch, h / 2^p, w / 2^p, layer_channels(name)]} for each requested name, in
      network order, where p is the number of pools up to and including that layer; float32
      with float32 parameters. Under `jit`, `layers` must be static (close over it).

    Raises:
      ValueError (a `SettingError`): `layers` is a string, is empty or has a name not in
        `LAYERS` (the message lists the valid names); `pooling` is not a key of `POOLINGS`; or x
        is not [batch, h, w, 3].
    """
    if isinstance(layers, str):
      raise SettingError(f"layers={layers!r} is a string; pass a sequence of names, e.g. "
                         f"layers=[{layers!r}].")
    if not layers:
      raise SettingError(f"layers is empty; ask for at least one of {list(LAYERS)}.")
    _check_names(layers)
    if self.pooling not in POOLINGS:
      raise SettingError(f"pooling={self.pooling!r}: must be one of {list(POOLINGS)}.")
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"VGG19 takes RGB images x [batch, h, w, 3] in [-1, 1], got shape "
                       f"{x.shape}.")
    wanted = set(layers)
    deepest = max(LAYERS.index(name) for name in layers)
    outputs = {}
    h = self.preprocess_fn(x)
    for name in LAYERS[:deepest + 1]:
      if name in CONV_LAYERS:
        conv = nn.Conv(layer_channels(name), (3, 3), padding="SAME",
                       kernel_init=nn.initializers.he_normal(), name=name)
        h = nn.relu(conv(h))
      else:
        h = POOLINGS[self.pooling](h)
      if name in wanted:
        outputs[name] = h
    return outputs


# ----------------------------------------------------------------------------------------------
# Parameters: random, from the Keras h5 file, from an npz.
# ----------------------------------------------------------------------------------------------


def random_params(seed: int = 0) -> Params:
  """Random VGG-19 parameters for `VGG19().apply`: the offline default when no weight file is
  given. These are NOT ImageNet features.

  Kernels are He-normal (variance scaling 2 / fan_in, truncated normal: He et al. 2015, "Delving
  Deep into Rectifiers", Sec. 2.2), which keeps activation magnitudes roughly constant through
  the ReLUs; biases are zero. Random convolutional features still capture texture statistics:
  Gram matrices of random filters synthesise natural-looking textures (Ustyuzhaninov et al. 2017)
  and a random-weight VGG-19 supports texture synthesis and style transfer (He, Wang and Hopcroft
  2016), though content and style separate less cleanly than with trained weights.

  Args:
    seed: the PRNG seed; the same seed gives the same parameters.

  Returns:
    {"params": {conv_name: {"kernel": [3, 3, in, out], "bias": [out]}}} float32, all 16
    convolutions (about 80 MB).
  """
  images = jnp.zeros((1, 16, 16, 3), jnp.float32)  # 16 pixels reach block 5 at 1x1
  return VGG19().init(jax.random.PRNGKey(seed), images, layers=[CONV_LAYERS[-1]])


def _missing_file_error(path: str) -> MissingFileError:
  return MissingFileError(
      f"no VGG-19 weight file at {path!r}. gen_jax never downloads weights: download the Keras "
      f"file {KERAS_WEIGHTS_FILE} (about 80 MB) yourself from {KERAS_WEIGHTS_URL} and pass its "
      f"path, e.g. model.weights=/path/to/{KERAS_WEIGHTS_FILE} (an .npz written by "
      f"gen_jax.nn.vgg.save_npz works too); leave it unset for random weights.")


def _params_from_arrays(arrays: Mapping[str, Mapping[str, np.ndarray]], source: str) -> Params:
  """{conv_name: {"kernel", "bias"}} NumPy arrays -> VGG19 params, every shape checked."""
  params = {}
  for name in CONV_LAYERS:
    if name not in arrays:
      raise SettingError(f"{source} has no weights for VGG-19 layer {name!r}; it has "
                         f"{sorted(arrays)}. Is it the no-top VGG-19 file ({KERAS_WEIGHTS_FILE})?")
    layer = {}
    for kind, expected in zip(("kernel", "bias"), _conv_shapes(name)):
      found = arrays[name].get(kind)
      if found is None:
        raise SettingError(f"{source}: layer {name!r} has no {kind} (expected shape "
                           f"{expected}).")
      if tuple(found.shape) != expected:
        raise SettingError(f"{source}: layer {name!r} {kind} has shape {tuple(found.shape)}, "
                           f"expected {expected}.")
      layer[kind] = jnp.asarray(found, jnp.float32)
    params[name] = layer
  return {"params": params}


def load_keras_h5(path: str) -> Params:
  """Reads the Keras VGG-19 weight file into VGG19 params. Needs h5py.

  The file is Keras's `save_weights` HDF5 of `VGG19(include_top=False)`,
  `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` from `KERAS_WEIGHTS_URL`: a group per
  layer name ("block1_conv1", ..., and weightless groups for the pools and the input). Where the
  datasets sit inside a layer's group depends on the Keras version that wrote it:
    * Keras 1: directly, named like "block1_conv1_W_1:0" (kernel) and "block1_conv1_b_1:0";
    * Keras 2 and later: in a subgroup of the layer's name, "block1_conv1/kernel:0" and
      "block1_conv1/bias:0".
  Rather than trusting names, this reads every dataset under the layer's group and takes the
  4-D one as the kernel and the 1-D one as the bias. Kernels are TensorFlow's [3, 3, in, out]
  (the "tf_kernels" of the name; Theano's flipped kernels would be wrong here), which is Flax's
  layout, so they are copied unchanged.

  Args:
    path: the .h5 file.

  Returns:
    {"params": {conv_name: {"kernel": [3, 3, in, out], "bias": [out]}}} float32, as
    `random_params`.

  Raises:
    FileNotFoundError: no file at `path`; the message gives `KERAS_WEIGHTS_URL` and the
      `model.weights` setting.
    ValueError: not an HDF5 file, or a convolution's group is missing or empty, does not hold
      exactly one 4-D and one 1-D dataset, or holds arrays of the wrong shape; the message
      names the layer and the expected and found shapes.
    ImportError: h5py is not installed.
  """
  if not os.path.isfile(path):
    raise _missing_file_error(path)
  import h5py  # pylint: disable=g-import-not-at-top  (only this loader needs h5py)

  if not h5py.is_hdf5(path):
    raise SettingError(f"{path} is not an HDF5 file: pass the Keras weights file "
                       f"{KERAS_WEIGHTS_FILE} (or an .npz written by save_npz).")
  arrays = {}
  with h5py.File(path, "r") as f:
    for name in CONV_LAYERS:
      datasets = []  # every dataset below the layer's group, at any depth
      if name in f:
        f[name].visititems(
            lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
      if not datasets:
        continue  # a missing or weightless group: _params_from_arrays names the layer
      kernels = [d for d in datasets if d.ndim == 4]
      biases = [d for d in datasets if d.ndim == 1]
      if len(kernels) != 1 or len(biases) != 1:
        kernel_shape, bias_shape = _conv_shapes(name)
        raise SettingError(f"{path}: layer {name!r} should hold one 4-D kernel {kernel_shape} "
                           f"and one 1-D bias {bias_shape}, found the datasets "
                           f"{[(d.name, d.shape) for d in datasets]}.")
      arrays[name] = {"kernel": kernels[0][()], "bias": biases[0][()]}
  return _params_from_arrays(arrays, path)


def save_npz(params: Params, path: str) -> None:
  """Writes VGG19 params to `path` (exactly that name; no suffix is added) as an uncompressed
  .npz holding the float32 arrays "<layer>/kernel" [3, 3, in, out] and "<layer>/bias" [out] for
  each of the 16 `CONV_LAYERS`; `load_npz` reads it back. `params` is what `random_params` or
  `load_keras_h5` return (or its "params" entry). Convert the Keras file once with
  `save_npz(load_keras_h5(h5_path), npz_path)`."""
  inner = params["params"] if "params" in params else params
  arrays = {f"{name}/{kind}": np.asarray(inner[name][kind], np.float32)
            for name in CONV_LAYERS for kind in ("kernel", "bias")}
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def load_npz(path: str) -> Params:
  """Reads an .npz written by `save_npz` (arrays "<layer>/kernel" [3, 3, in, out] and
  "<layer>/bias" [out] for each of `CONV_LAYERS`; other arrays are ignored) into VGG19 params.

  Returns:
    {"params": {conv_name: {"kernel", "bias"}}} float32, as `random_params`.

  Raises:
    FileNotFoundError: no file at `path` (the message says where to get the Keras file).
    ValueError: not an .npz archive, or a layer's kernel or bias is missing or misshapen; the
      message names the layer and the expected and found shapes.
  """
  if not os.path.isfile(path):
    raise _missing_file_error(path)
  if not zipfile.is_zipfile(path):
    raise SettingError(f"{path} is not an .npz archive: pass an .npz written by save_npz, or "
                       f"the Keras weights file {KERAS_WEIGHTS_FILE} (.h5).")
  arrays: dict[str, dict[str, np.ndarray]] = {}
  with np.load(path) as f:
    for key in f.files:
      name, _, kind = key.partition("/")
      arrays.setdefault(name, {})[kind] = f[key]
  return _params_from_arrays(arrays, path)


def load_params(path: str) -> Params:
  """VGG19 params from a weight file, by its suffix: ".h5" or ".hdf5" with `load_keras_h5`, any
  other with `load_npz`. Raises as they do."""
  if os.path.splitext(path)[1].lower() in (".h5", ".hdf5"):
    return load_keras_h5(path)
  return load_npz(path)
