"""The diffusion method: its loss by hand, label dropout, a train step, samples and figures."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gen_jax import names
from gen_jax.losses import denoising
from gen_jax.methods import diffusion
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.nn import unet
from gen_jax.sampling import diffusion as sampling
from gen_jax.train import config as config_lib
from gen_jax.train import step as step_lib

ROOT = Path(__file__).resolve().parents[2]


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


# What the loop hands a model about its data (`DataSpec.from_info` of the dataset's info).
TOY2D = DataSpec(features={"point": Feature((2,), "float32"), "mode": Feature((), "int32")},
                 num_classes=8, name="toy2d/ring8")
DIGITS = DataSpec(features={"image": Feature((8, 8, 1), "uint8"), "label": Feature((), "int32")},
                  num_levels=17, num_classes=10, name="digits")


def tiny(name: str = "ddpm_digits_cond", **model) -> diffusion.Diffusion:
  config = load_config(name, "tiny")
  config.model.update(model)
  return diffusion.from_config(config_lib.resolve(config),
                               TOY2D if name == "ddpm_toy2d" else DIGITS)


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
  out = np.asarray(cond.train({"label": labels}, jax.random.PRNGKey(0)))
  dropped = out == 10
  # Binomial(20000, 0.25): standard deviation 61 examples.
  assert abs(dropped.sum() - 5000) < 4 * 61
  np.testing.assert_array_equal(out[~dropped], np.asarray(labels)[~dropped])


def test_train_step_runs_and_updates_the_parameters():
  method = toy_cond()
  batch = toy_batch(16)
  optimizers = {"denoiser": optax.sgd(0.05)}  # the update is then -0.05 times the gradient
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch, ema_decay=0.0)
  step = jax.jit(step_lib.make_train_step(method, optimizers))
  new_state, metrics = step(state, batch)
  assert int(new_state.step) == 1
  # The step's key for player 0, repeat 0 (fold_in(state.rng, step), then the player's index,
  # then the repeat), and the loss and gradient at that key written out.
  rng = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(state.rng, 0), 0), 0)
  (loss, (aux, _)), grads = jax.jit(jax.value_and_grad(
      lambda p: method.loss({}, p, batch, rng, {}), has_aux=True))(state.params["denoiser"])
  np.testing.assert_allclose(metrics["denoiser/loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["denoiser/eps_mse"], aux["eps_mse"], rtol=1e-6)
  np.testing.assert_allclose(metrics["denoiser/grad_norm"], np.sqrt(sum(
      np.sum(np.float64(g) ** 2) for g in jax.tree.leaves(grads))), rtol=1e-5)
  assert set(metrics) == {"denoiser/loss", "denoiser/grad_norm", "denoiser/eps_mse"}
  want = jax.tree.map(lambda p, g: np.float64(p) - 0.05 * np.float64(g),
                      state.params["denoiser"], grads)
  for got, exp in zip(jax.tree.leaves(new_state.params["denoiser"]), jax.tree.leaves(want),
                      strict=True):
    np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-8)
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads))


def toy_cond(**model) -> diffusion.Diffusion:
  """The tiny 2-D model, conditioned on the mixture component (8 classes): cheap to compile."""
  return tiny("ddpm_toy2d", label_key="mode", num_classes=8, **model)


def toy_batch(n: int = 8):
  return {"point": jnp.ones((n, 2)), "mode": jnp.arange(n, dtype=jnp.int32) % 8}


def hand_ddim_v(method, variables, x_T, labels, *, w, num_steps):
  """Guided deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0) for a v-predicting model,
  written out in float64 around the network: v = (1 - w) net(x, t, null) + w net(x, t, labels),
  x0 = alpha x - sigma v, eps = sigma x + alpha v (Salimans & Ho 2022), then
  x_s = alpha_s x0 + sigma_s eps over t = round(linspace(T - 1, 0, num_steps)); the last step
  returns x0. No clipping."""
  params = variables["params"]["denoiser"]
  net = jax.jit(lambda x, t, lab: method.denoise(params, x, t, lab))
  abar = method.schedule.alpha_bar
  ts = np.round(np.linspace(len(abar) - 1, 0, num_steps)).astype(np.int32)
  null = jnp.full(labels.shape, method.conditioning.num_classes, jnp.int32)
  x = np.float64(x_T)
  for i, t in enumerate(ts):
    x32, t32 = jnp.asarray(x, jnp.float32), jnp.full(labels.shape, t, jnp.int32)
    v = (1 - w) * np.float64(net(x32, t32, null)) + w * np.float64(net(x32, t32, labels))
    alpha, sigma = np.sqrt(abar[t]), np.sqrt(1 - abar[t])
    x0, eps = alpha * x - sigma * v, sigma * x + alpha * v
    x = x0 if i == len(ts) - 1 else np.sqrt(abar[ts[i + 1]]) * x0 + np.sqrt(
        1 - abar[ts[i + 1]]) * eps
  return x


def test_image_samples_are_the_configured_sampler_on_the_class_blocks():
  method = tiny()
  variables = init(method, image_batch())
  # The U-Net's head is zero-initialised (eps_hat = 0 for every input and label): random head
  # weights make the prediction depend on x, t and the label, so guidance changes it.
  params = variables["params"]["denoiser"]
  params["head"]["kernel"] = 0.3 * jax.random.normal(jax.random.PRNGKey(9),
                                                     params["head"]["kernel"].shape)
  rng = jax.random.PRNGKey(1)
  out = method.sample(variables, rng, 20)
  assert set(out) == {"samples"}
  labels = method.conditioning.sample_labels(20)
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 2))
  # The config's sampler written out: 5 DDIM steps (eta 0) from x_T drawn with the first half
  # of the key, guidance w = 2 against the null label 10, x0 clipped to [-1, 1]. The samplers'
  # arithmetic has its own float64 oracles (tests/sampling/test_diffusion_samplers.py).
  noise_rng, sampler_rng = jax.random.split(rng)
  x_T = jax.random.normal(noise_rng, (20, 8, 8, 1))
  null = jnp.full((20,), 10, jnp.int32)
  guided = lambda x, t: ((1.0 - 2.0) * method.denoise(params, x, t, null)
                         + 2.0 * method.denoise(params, x, t, labels))
  run = lambda clip: sampling.ddim(guided, method.schedule, x_T, sampler_rng, num_steps=5,
                                   eta=0.0, prediction_fn=method.prediction_fn,
                                   clip_x0=clip).samples
  np.testing.assert_array_equal(out["samples"], run(1.0))
  assert np.abs(out["samples"]).max() <= 1.0
  assert np.abs(run(0.0)).max() > 1.0  # the clipping mattered


def test_class_grid_and_trajectory():
  method = toy_cond(data_scale=2.0)
  variables = init(method, toy_batch())
  rng = jax.random.PRNGKey(2)
  grid = diffusion.class_grid(method, variables, rng, per_class=3, guidance_scale=3.0,
                              num_steps=4, sampler=diffusion.DDIM())
  # Row c of the 8 x 3 grid is class c: labels 0 0 0 1 1 1 ..., guided with w = 3, in the
  # data's scale (twice the model's).
  x_T = jax.random.normal(jax.random.split(rng)[0], (24, 2))
  want = hand_ddim_v(method, variables, x_T, jnp.repeat(jnp.arange(8, dtype=jnp.int32), 3),
                     w=3.0, num_steps=4)
  np.testing.assert_allclose(grid, 2.0 * want, rtol=1e-5, atol=1e-5)
  frames, timesteps = diffusion.trajectory(method, variables, jax.random.PRNGKey(3), 4, 3)
  assert frames.shape == (3, 4, 2)
  np.testing.assert_array_equal(timesteps, [49, 22, -1])  # 10 steps: 49 44 38 33 27 22 .. 0
  out = method.generate(variables, jax.random.PRNGKey(3), 4, return_trajectory=True)
  np.testing.assert_array_equal(frames[-1], 2.0 * out.samples)
  np.testing.assert_array_equal(frames[0], 2.0 * out.trajectory[0])


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
  # Suggestions are what the config says, among this kind's names only.
  with pytest.raises(names.UnknownNameError, match=r"Unknown model.sampler 'ddimm'\. Did you "
                     r"mean 'ddim'\? Valid choices: ddim, ddpm\.$"):
    tiny(sampler="ddimm")
  with pytest.raises(names.UnknownNameError, match=r"model.schedule 'from_betas'\. Valid "
                     r"choices: cosine, linear\.$"):
    tiny(schedule="from_betas")
  with pytest.raises(names.UnknownNameError, match=r"Did you mean 'min_snr'\?"):
    tiny(loss="min_snr_mse")


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_min_snr_gamma_is_set_from_the_config(gamma):
  loss_fn = tiny("ddpm_toy2d", loss="min_snr", min_snr_gamma=gamma).loss_fn
  rng = np.random.default_rng(0)
  x0, eps, x0_hat, eps_hat = rng.normal(size=(4, 4, 3))  # each [batch 4, 3]
  alpha = np.array([0.99, 0.9, 0.5, 0.1])[:, None]
  sigma = np.sqrt(1 - alpha**2)
  snr = (alpha**2 / sigma**2)[:, 0]
  # Hang et al. 2023: min(SNR, gamma) |x0 error|^2 = min(1, gamma / SNR) |eps error|^2.
  want = np.minimum(1.0, gamma / snr) * np.mean((eps_hat - eps) ** 2, axis=1)
  got = loss_fn(x0_hat=x0_hat, eps_hat=eps_hat, x0=x0, eps=eps, alpha=alpha, sigma=sigma)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_example_shape_is_the_specs_unless_the_config_sets_it():
  spec = DataSpec(features={"point": Feature((3,), "float32")})
  config = config_lib.resolve(load_config("ddpm_toy2d", "tiny"))
  assert diffusion.from_config(config, spec).example_shape == (3,)
  config.model.image_shape = (5,)
  assert diffusion.from_config(config, spec).example_shape == (5,)
  config.model.update(image_shape=(), data_key="image")
  with pytest.raises(KeyError, match=r"no entry 'image' \(model.data_key = 'image'\)"):
    diffusion.from_config(config, spec)
  with pytest.raises(ValueError, match=r"model.image_shape is \(\) and no data spec"):
    diffusion.from_config(config)
