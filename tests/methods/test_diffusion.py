"""The diffusion method: its loss by hand, label dropout, a train step, samples and figures."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax import names
from gen_jax.losses import denoising
from gen_jax.methods import diffusion
from gen_jax.nn import unet
from gen_jax.train import config as config_lib
from gen_jax.train import optimizers as optimizers_lib
from gen_jax.train import step as step_lib

ROOT = Path(__file__).resolve().parents[2]


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny(name: str = "ddpm_digits_cond", **model) -> diffusion.Diffusion:
  config = load_config(name, "tiny")
  if name != "ddpm_toy2d":
    config.model.image_shape = (8, 8, 1)  # known: no need to prepare the dataset for its info
  config.model.update(model)
  return diffusion.from_config(config_lib.resolve(config))


def init(method, batch):
  """The method's variables; jitted, as eager Flax initialisation dispatches op by op."""
  return jax.jit(method.init)(jax.random.PRNGKey(0), batch)


def image_batch(n: int = 8):
  x = jnp.linspace(-1, 1, n * 64).reshape(n, 8, 8, 1)
  return {"image": x, "label": jnp.arange(n, dtype=jnp.int32) % 10}


def test_loss_matches_a_hand_computation():
  method = tiny(prediction="v", loss="v")
  batch = image_batch()
  params = init(method, batch)["params"]["denoiser"]
  rng = jax.random.PRNGKey(3)
  loss, (metrics, _) = jax.jit(lambda p: method.loss({}, p, batch, rng, {}))(params)
  # The same draws, written out: labels (with dropout), timesteps, noise.
  label_rng, loss_rng = jax.random.split(rng)
  drop = jax.random.bernoulli(label_rng, 0.1, (8,))
  labels = jnp.where(drop, 10, batch["label"])
  t_rng, eps_rng, _ = jax.random.split(loss_rng, 3)
  t = jax.random.randint(t_rng, (8,), 0, method.schedule.num_timesteps)
  eps = jax.random.normal(eps_rng, batch["image"].shape)
  abar = jnp.asarray(method.schedule.alpha_bar, jnp.float32)[t][:, None, None, None]
  x0 = batch["image"]
  x_t = jnp.sqrt(abar) * x0 + jnp.sqrt(1 - abar) * eps
  v = jax.jit(method.network.apply)({"params": params}, x_t, t, labels)
  target = jnp.sqrt(abar) * eps - jnp.sqrt(1 - abar) * x0
  np.testing.assert_allclose(loss, jnp.mean((v - target) ** 2), rtol=1e-5)
  eps_hat = jnp.sqrt(1 - abar) * x_t + jnp.sqrt(abar) * v
  np.testing.assert_allclose(metrics["eps_mse"], jnp.mean((eps_hat - eps) ** 2), rtol=1e-5)


def test_label_dropout_rate():
  cond = diffusion.ClassConditional(num_classes=10, drop_prob=0.25)
  labels = jnp.arange(20_000, dtype=jnp.int32) % 10
  out = np.asarray(cond.train_labels({"label": labels}, jax.random.PRNGKey(0)))
  dropped = out == 10
  # Binomial(20000, 0.25): standard deviation 61 examples.
  assert abs(dropped.sum() - 5000) < 4 * 61
  np.testing.assert_array_equal(out[~dropped], np.asarray(labels)[~dropped])


def test_train_step_runs_and_updates_the_parameters():
  method = toy_cond()
  batch = toy_batch(16)
  config = config_lib.resolve(load_config("ddpm_toy2d", "tiny"))
  optimizers = optimizers_lib.make_optimizers(config.optim, ("denoiser",), 10)
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch, ema_decay=0.9)
  step = jax.jit(step_lib.make_train_step(method, optimizers, ema_decay=0.9))
  new_state, metrics = step(state, batch)
  assert int(new_state.step) == 1
  assert set(metrics) == {"denoiser/loss", "denoiser/grad_norm", "denoiser/eps_mse"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_state.params,
                       state.params)
  assert max(jax.tree.leaves(moved)) > 0


def toy_cond(**model) -> diffusion.Diffusion:
  """The tiny 2-D model, conditioned on the mixture component (8 classes): cheap to compile."""
  return tiny("ddpm_toy2d", label_key="mode", num_classes=8, **model)


def toy_batch(n: int = 8):
  return {"point": jnp.ones((n, 2)), "mode": jnp.arange(n, dtype=jnp.int32) % 8}


def test_image_samples_shapes_and_range():
  method = tiny()
  variables = init(method, image_batch())
  out = method.sample(variables, jax.random.PRNGKey(1), 20)
  assert set(out) == {"samples"} and out["samples"].shape == (20, 8, 8, 1)
  assert float(jnp.max(jnp.abs(out["samples"]))) <= 1.0  # x0 clipped to [-1, 1]
  np.testing.assert_array_equal(method.conditioning.sample_labels(20),
                                np.repeat(np.arange(10), 2))


def test_class_grid_and_trajectory():
  method = toy_cond()
  variables = init(method, toy_batch())
  grid = diffusion.class_grid(method, variables, jax.random.PRNGKey(2), per_class=3,
                              guidance_scale=3.0, num_steps=4)
  assert grid.shape == (24, 2) and bool(jnp.all(jnp.isfinite(grid)))
  frames, timesteps = diffusion.trajectory(method, variables, jax.random.PRNGKey(3), 4, 3)
  assert frames.shape == (3, 4, 2)
  np.testing.assert_array_equal(timesteps, [49, 22, -1])  # 10 steps: 49 44 38 33 27 22 .. 0
  out = method.generate(variables, jax.random.PRNGKey(3), 4, return_trajectory=True)
  np.testing.assert_array_equal(frames[-1], out.samples)
  np.testing.assert_array_equal(frames[0], out.trajectory[0])


def test_guidance_scales_select_the_models():
  """Through the method: w = 0 samples are the null-label model's, w = 1 the labels' model's."""
  method = toy_cond(sampler="ddim", sample_steps=5)
  variables = init(method, toy_batch())
  params = variables["params"]["denoiser"]
  rng = jax.random.PRNGKey(4)
  labels = jnp.arange(6, dtype=jnp.int32)
  x_T = jax.random.normal(jax.random.split(rng)[0], (6, 2))
  run = lambda fn: diffusion.DDIM()(fn, method.schedule, x_T, jax.random.split(rng)[1],
                                    num_steps=5, prediction_fn=method.prediction_fn).samples
  for w, lab in ((0.0, jnp.full((6,), 8, jnp.int32)), (1.0, labels)):
    want = run(lambda x, t, lab=lab: method.denoise(params, x, t, lab))
    got = method.generate(variables, rng, 6, labels=labels, guidance_scale=w).samples
    np.testing.assert_array_equal(got, want)


def test_points_model_evaluates_and_scales():
  method = tiny("ddpm_toy2d", data_scale=4.0, loss="eps")
  batch = {"point": jnp.ones((8, 2)) * 4.0, "mode": jnp.zeros(8, jnp.int32)}
  np.testing.assert_array_equal(method.data(batch), jnp.ones((8, 2)))
  variables = init(method, batch)
  metrics = method.evaluate(variables, batch, jax.random.PRNGKey(1))
  assert set(metrics) == {"loss", "eps_mse"} and metrics["loss"].shape == (8,)
  np.testing.assert_allclose(metrics["loss"], metrics["eps_mse"])  # loss = "eps"
  samples = method.sample(variables, jax.random.PRNGKey(2), 5)["samples"]
  raw = method.generate(variables, jax.random.PRNGKey(2), 5).samples
  assert samples.shape == (5, 2)
  np.testing.assert_allclose(samples, 4.0 * raw)
  cond = toy_cond()
  m = cond.evaluate(init(cond, toy_batch()), toy_batch(), jax.random.PRNGKey(1))
  assert set(m) == {"loss", "eps_mse", "uncond_loss"} and m["uncond_loss"].shape == (8,)


@pytest.mark.parametrize("size,widths", [(8, (8, 16)), (28, (8, 16, 16)), (32, (8, 16, 16))])
def test_unet_keeps_the_shape(size, widths):
  net = unet.UNet(widths=widths, emb_features=8, num_classes=10)
  x = jnp.zeros((2, size, size, 3))
  t, labels = jnp.array([0, 999]), jnp.array([3, 10])
  variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), x, t, labels)  # shapes only
  assert jax.eval_shape(net.apply, variables, x, t, labels).shape == x.shape
  with pytest.raises(ValueError, match="divisible"):
    jax.eval_shape(unet.UNet(widths=(4, 4, 4, 4)).init, jax.random.PRNGKey(0),
                   jnp.zeros((1, 28, 28, 1)), jnp.zeros(1))
  with pytest.raises(ValueError, match="class-conditional"):
    jax.eval_shape(net.apply, variables, x, t, None)


def test_sinusoidal_embedding():
  emb = unet.sinusoidal_embedding(jnp.array([0.0, 3.0]), 8)
  freqs = 10_000.0 ** (-np.arange(4) / 4)
  want = np.concatenate([np.cos(3.0 * freqs), np.sin(3.0 * freqs)])
  np.testing.assert_allclose(emb[1], want, rtol=1e-5)
  np.testing.assert_allclose(emb[0], [1, 1, 1, 1, 0, 0, 0, 0])


def test_unknown_names_are_refused():
  with pytest.raises(names.UnknownNameError, match="model.loss"):
    tiny(loss="l1")
  with pytest.raises(names.UnknownNameError, match="model.prediction"):
    tiny(prediction="score")
  with pytest.raises(ValueError, match="sample_steps"):
    tiny(sample_steps=51)
  assert tiny(loss="min_snr").loss_fn is denoising.min_snr_mse
