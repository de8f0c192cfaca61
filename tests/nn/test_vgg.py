"""gen_jax.nn.vgg: VGG-19's layers, early stopping, preprocessing, pooling and weight files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.nn import vgg


@pytest.fixture(scope="module")
def params():
  """One full set of random VGG-19 parameters (20M floats) for the whole module."""
  return vgg.random_params(seed=0)


@pytest.fixture(scope="module")
def images():
  return jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3), minval=-1.0, maxval=1.0)


def identity_block1(params):
  """`params` with block1_conv1 and block1_conv2 replaced by the identity on the first 3
  channels: a 3x3 kernel that is 1 at its centre tap from channel k to channel k (k < 3), zero
  bias. With SAME padding the centre tap reads the pixel itself, so each conv copies channels
  0-2 of its input (then the ReLU) and zeros the others."""
  inner = dict(params["params"])
  for name, in_channels in (("block1_conv1", 3), ("block1_conv2", 64)):
    kernel = np.zeros((3, 3, in_channels, 64), np.float32)
    kernel[1, 1, np.arange(3), np.arange(3)] = 1.0
    inner[name] = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(64)}
  return {"params": inner}


def test_layers_are_vgg19_configuration_e_with_keras_names(params, images):
  # Simonyan & Zisserman 2015, Table 1, column E, written out by hand.
  expected = []
  for block, (convs, channels) in enumerate(zip((2, 2, 4, 4, 4), (64, 128, 256, 512, 512)), 1):
    expected += [(f"block{block}_conv{i}", channels) for i in range(1, convs + 1)]
    expected.append((f"block{block}_pool", channels))
  assert vgg.LAYERS == tuple(name for name, _ in expected)
  assert vgg.LAYERS[:3] == ("block1_conv1", "block1_conv2", "block1_pool")
  assert vgg.LAYERS[-2:] == ("block5_conv4", "block5_pool")
  assert [vgg.layer_channels(name) for name in vgg.LAYERS] == [c for _, c in expected]
  assert len(vgg.CONV_LAYERS) == 16
  # Every 3x3 conv has 9 * in * out weights and out biases; Keras's VGG19(include_top=False)
  # summary reports the same total, 20,024,384.
  widths = [3] + [vgg.layer_channels(name) for name in vgg.CONV_LAYERS]
  assert sum(9 * a * b + b for a, b in zip(widths, widths[1:])) == 20_024_384
  inner = params["params"]
  assert sorted(inner) == sorted(vgg.CONV_LAYERS)
  for a, b, name in zip(widths, widths[1:], vgg.CONV_LAYERS):
    assert inner[name]["kernel"].shape == (3, 3, a, b) and inner[name]["bias"].shape == (b,)
  assert sum(x.size for x in jax.tree.leaves(params)) == 20_024_384
  # 32x32 inputs: each pool halves the size, 32 -> 16 -> 8 -> 4 -> 2 -> 1.
  out = vgg.VGG19().apply(params, images, layers=vgg.LAYERS)
  assert list(out) == list(vgg.LAYERS)
  size = 32
  for name in vgg.LAYERS:
    if name.endswith("pool"):
      size //= 2
    assert out[name].shape == (2, size, size, vgg.layer_channels(name)), name
    if "conv" in name:  # taken after the ReLU
      assert float(jnp.min(out[name])) >= 0.0
  # Odd sizes round down, as Keras's VALID pooling does.
  odd = vgg.VGG19().apply(params, images[:, :15, :13], layers=["block2_pool"])["block2_pool"]
  assert odd.shape == (2, 3, 3, 128)


def test_computation_stops_at_the_deepest_requested_layer(params, images):
  model = vgg.VGG19()
  # init creates the parameters of the layers it runs: only block 1's for block1_conv2.
  created = model.init(jax.random.PRNGKey(0), images, layers=["block1_conv2"])
  assert sorted(created["params"]) == ["block1_conv1", "block1_conv2"]
  # Applying with the parameters up to block4_conv2 only works: had block 4's third conv or
  # block 5 run, Flax would have raised for their missing parameters.
  upto = vgg.LAYERS[:vgg.LAYERS.index("block4_conv2") + 1]
  partial = {"params": {n: p for n, p in params["params"].items() if n in upto}}
  assert len(partial["params"]) == 10
  out = model.apply(partial, images, layers=["block4_conv2", "block1_conv1"])
  assert list(out) == ["block1_conv1", "block4_conv2"]  # network order
  # Traced with all parameters, the computation holds 2 + 2 + 4 + 2 = 10 convolutions and the
  # 3 pools before block 4.
  jaxpr = str(jax.make_jaxpr(lambda p, x: model.apply(p, x, layers=["block4_conv2"]))(
      params, images))
  assert jaxpr.count("conv_general_dilated[") == 10
  assert jaxpr.count("reduce_window_max[") == 3
  # Stopping early changes nothing: the same values as in the full network.
  full = model.apply(params, images, layers=vgg.LAYERS)
  only = model.apply(params, images, layers=["block1_conv1"])
  assert list(only) == ["block1_conv1"]
  np.testing.assert_array_equal(only["block1_conv1"], full["block1_conv1"])
  np.testing.assert_array_equal(out["block4_conv2"], full["block4_conv2"])


def test_bad_layer_names_and_settings_are_refused(params, images):
  model = vgg.VGG19()
  with pytest.raises(ValueError, match="block6_conv1.*'block1_conv1', 'block1_conv2'"):
    model.apply(params, images, layers=["block1_conv1", "block6_conv1"])
  with pytest.raises(ValueError, match="is a string"):
    model.apply(params, images, layers="block1_conv1")
  with pytest.raises(ValueError, match="empty"):
    model.apply(params, images, layers=[])
  with pytest.raises(ValueError, match="pooling='min'.*'max', 'average'"):
    vgg.VGG19(pooling="min").apply(params, images, layers=["block1_pool"])
  with pytest.raises(ValueError, match=r"\[batch, h, w, 3\]"):
    model.apply(params, images[..., :1], layers=["block1_conv1"])
  with pytest.raises(ValueError, match="unknown"):
    vgg.layer_channels("conv1_1")


def test_caffe_preprocessing_of_a_known_pixel(params):
  # RGB (-1, 0, 1) in [-1, 1] is (0, 127.5, 255) in [0, 255]; in BGR order (255, 127.5, 0);
  # minus the BGR mean (103.939, 116.779, 123.68): (151.061, 10.721, -123.68).
  pixel = jnp.array([[[[-1.0, 0.0, 1.0]]]])  # [1, 1, 1, 3]
  expected = np.array([151.061, 10.721, -123.68], np.float32)
  np.testing.assert_allclose(vgg.caffe_preprocess(pixel)[0, 0, 0], expected, rtol=1e-6)
  # The model applies it itself: with block1_conv1 the identity on 3 channels, block1_conv1's
  # output is relu(preprocessed pixel) on them, zero elsewhere.
  out = vgg.VGG19().apply(identity_block1(params), pixel, layers=["block1_conv1"])
  expected_out = np.zeros(64, np.float32)
  expected_out[:3] = np.maximum(expected, 0.0)
  np.testing.assert_allclose(out["block1_conv1"][0, 0, 0], expected_out, rtol=1e-6)


def test_average_pooling_averages_and_max_pooling_takes_the_maximum(params):
  # No preprocessing and identity convolutions in block 1, so block1_pool pools the (positive)
  # image itself; the expected values are 2x2 block means and maxima computed with NumPy.
  x = jax.random.uniform(jax.random.PRNGKey(2), (1, 4, 6, 3), minval=0.0, maxval=1.0)
  blocks = np.asarray(x).reshape(1, 2, 2, 3, 2, 3)  # [batch, i, di, j, dj, c]
  pooled = {}
  for pooling in ("max", "average"):
    model = vgg.VGG19(pooling=pooling, preprocess_fn=lambda v: v)
    out = model.apply(identity_block1(params), x, layers=["block1_pool"])
    pooled[pooling] = np.asarray(out["block1_pool"])
    assert pooled[pooling].shape == (1, 2, 3, 64)
    np.testing.assert_array_equal(pooled[pooling][..., 3:], 0.0)
  np.testing.assert_allclose(pooled["average"][..., :3], blocks.mean(axis=(2, 4)), rtol=1e-6)
  np.testing.assert_array_equal(pooled["max"][..., :3], blocks.max(axis=(2, 4)))
  assert np.all(pooled["max"][..., :3] > pooled["average"][..., :3])


def write_keras_h5(path, arrays, variant):
  """An h5 file in the layout Keras's save_weights gives VGG19(include_top=False): root
  attribute layer_names, a group per layer (weightless ones for the input and pools) with the
  attribute weight_names, the datasets named as Keras 1 (`variant="keras1"`) or Keras 2
  (`variant="keras2"`) name them."""
  h5py = pytest.importorskip("h5py", reason="load_keras_h5 needs h5py")
  names = ["input_1"] + list(vgg.LAYERS)
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = [n.encode() for n in names]
    for name in names:
      group = f.create_group(name)
      if name not in arrays:
        group.attrs["weight_names"] = np.array([], dtype="S1")
        continue
      if variant == "keras1":
        weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
      else:
        weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
      group.attrs["weight_names"] = [n.encode() for n in weight_names]
      for weight_name, value in zip(weight_names, arrays[name]):
        group.create_dataset(weight_name, data=value)  # "a/b" makes the subgroup a


def numpy_arrays(params):
  return {name: (np.asarray(p["kernel"]), np.asarray(p["bias"]))
          for name, p in params["params"].items()}


@pytest.mark.parametrize("variant", ["keras1", "keras2"])
def test_keras_h5_round_trip(params, images, tmp_path, variant):
  path = str(tmp_path / vgg.KERAS_WEIGHTS_FILE)
  arrays = numpy_arrays(params)  # distinct random arrays, so a swapped layer would show
  write_keras_h5(path, arrays, variant)
  with pytest.importorskip("h5py").File(path, "r") as f:  # the layout really is the variant's
    inside = "block1_conv1_W_1:0" if variant == "keras1" else "block1_conv1/kernel:0"
    assert f["block1_conv1"][inside].shape == (3, 3, 3, 64)
  loaded = vgg.load_keras_h5(path)
  assert sorted(loaded["params"]) == sorted(vgg.CONV_LAYERS)
  for name, (kernel, bias) in arrays.items():
    assert loaded["params"][name]["kernel"].dtype == jnp.float32
    np.testing.assert_array_equal(loaded["params"][name]["kernel"], kernel)
    np.testing.assert_array_equal(loaded["params"][name]["bias"], bias)
  # The model runs with them, to the same activations as with the original parameters.
  model = vgg.VGG19()
  np.testing.assert_array_equal(
      model.apply(loaded, images, layers=["block2_conv1"])["block2_conv1"],
      model.apply(params, images, layers=["block2_conv1"])["block2_conv1"])
  assert jax.tree.structure(vgg.load_params(path)) == jax.tree.structure(params)


def test_npz_round_trip(params, tmp_path):
  path = str(tmp_path / "vgg19")  # no suffix: save_npz writes exactly this name
  vgg.save_npz(params, path)
  with np.load(path) as f:  # the documented format
    assert sorted(f.files) == sorted(f"{n}/{k}" for n in vgg.CONV_LAYERS for k in ("kernel",
                                                                                    "bias"))
    np.testing.assert_array_equal(f["block3_conv2/kernel"],
                                  params["params"]["block3_conv2"]["kernel"])
  loaded = vgg.load_npz(path)
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, want)
  vgg.save_npz(params["params"], path + ".npz")  # the inner dict is accepted too
  for got, want in zip(jax.tree.leaves(vgg.load_params(path + ".npz")), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, want)


def test_bad_weight_files_are_refused_with_the_layer_and_shapes(params, tmp_path):
  arrays = numpy_arrays(params)
  block1 = {name: arrays[name] for name in ("block1_conv1", "block1_conv2")}
  # A file that stops after block 1: the first missing convolution is named.
  path = str(tmp_path / "truncated.h5")
  write_keras_h5(path, block1, "keras2")
  with pytest.raises(ValueError, match="no weights for VGG-19 layer 'block2_conv1'"):
    vgg.load_keras_h5(path)
  # A kernel with one output channel too few.
  kernel, bias = block1["block1_conv2"]
  path = str(tmp_path / "misshapen.h5")
  write_keras_h5(path, {**block1, "block1_conv2": (kernel[..., :63], bias)}, "keras1")
  with pytest.raises(ValueError, match=r"'block1_conv2' kernel has shape \(3, 3, 64, 63\), "
                                       r"expected \(3, 3, 64, 64\)"):
    vgg.load_keras_h5(path)
  # The same checks guard the npz: a misshapen bias.
  path = str(tmp_path / "misshapen.npz")
  with open(path, "wb") as f:
    np.savez(f, **{"block1_conv1/kernel": block1["block1_conv1"][0],
                   "block1_conv1/bias": np.zeros(65, np.float32)})
  with pytest.raises(ValueError, match=r"'block1_conv1' bias has shape \(65,\), expected \(64,\)"):
    vgg.load_npz(path)
  # Files of another format: an image named .h5, and one read as .npz.
  image = tmp_path / "photo.png"
  image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
  (tmp_path / "photo.h5").write_bytes(image.read_bytes())
  with pytest.raises(ValueError, match="photo.h5 is not an HDF5 file: pass the Keras weights"):
    vgg.load_keras_h5(str(tmp_path / "photo.h5"))
  with pytest.raises(ValueError, match="photo.png is not an .npz archive"):
    vgg.load_params(str(image))


@pytest.mark.parametrize("loader", [vgg.load_keras_h5, vgg.load_npz, vgg.load_params])
def test_a_missing_file_says_where_to_get_the_weights_and_how_to_pass_them(loader, tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    loader(str(tmp_path / "nowhere.h5"))
  message = str(error.value)
  assert "nowhere.h5" in message
  assert ("https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
          "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5") in message
  assert "never downloads" in message
  assert "model.weights=/path/to/" in message


def test_random_params_are_reproducible_he_normal_with_zero_biases(params):
  again = vgg.random_params(seed=0)
  for got, want in zip(jax.tree.leaves(again), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, want)
  for name in vgg.CONV_LAYERS:
    kernel = np.asarray(params["params"][name]["kernel"])
    np.testing.assert_array_equal(params["params"][name]["bias"], 0.0)
    # He normal: variance 2 / fan_in, fan_in = 9 * in channels (a truncated normal, rescaled
    # to keep that variance). block1_conv1 has only 5184 weights, hence the 10% tolerance.
    np.testing.assert_allclose(kernel.var(), 2.0 / (9 * kernel.shape[2]), rtol=0.1)
