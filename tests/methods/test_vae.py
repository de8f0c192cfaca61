"""The VAE method against a linear-Gaussian model whose marginal likelihood is exact.

The model: z ~ N(0, I_d), x = W z + b + s * noise, so p(x) = N(x; b, W W^T + s^2 I) and the
posterior p(z|x) = N(S W^T (x - b) / s^2, S) with S = (I + W^T W / s^2)^-1, diagonal when W's
columns are orthogonal: then a linear encoder with a diagonal Gaussian posterior can be exact.
"""

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import stats

from gen_jax import names, pixels
from gen_jax.methods import vae as vae_lib
from gen_jax.methods.base import DataSpec, Feature
from gen_jax.nn import vae_nets
from gen_jax.sampling import latent
from gen_jax.train import config as config_lib
from gen_jax.train import step as step_lib
from gen_jax.train.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]
D, LATENT, STD = 4, 2, 0.5
W = (np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))[0][:, :LATENT]
     * np.array([2.0, 1.0]))  # [D, d], orthogonal columns
B = np.array([0.5, -0.3, 0.2, 0.1])
# What the loop hands the VAE about digits: 8x8 grey images of 17 levels, 10 labels.
DIGITS = DataSpec(features={"image": Feature((8, 8, 1), "uint8"), "label": Feature((), "int32")},
                  num_levels=17, num_classes=10, name="digits")


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def linear_vae(objective=vae_lib.ELBO(), **kwargs) -> vae_lib.VAE:
  return vae_lib.VAE(
      encoder=vae_nets.MLPEncoder(features=(), out_features=2 * LATENT),
      decoder=vae_nets.MLPDecoder(features=(), image_shape=(D, 1, 1), params_per_pixel=1),
      posterior=vae_lib.GaussianPosterior(), likelihood=pixels.Gaussian(STD),
      objective=objective, latent_dim=LATENT, **kwargs)


def exact_posterior(w=W, b=B):
  """(A, c, S): the posterior mean is A^T x + c, its covariance diag(S)."""
  cov = np.linalg.inv(np.eye(LATENT) + w.T @ w / STD**2)
  assert np.allclose(cov, np.diag(np.diag(cov)))
  a = w @ cov / STD**2  # [D, d]
  return a, -b @ a, np.diag(cov)


def params_of(enc_kernel, enc_bias, w=W, b=B):
  as32 = lambda v: jnp.asarray(v, jnp.float32)
  return {"encoder": {"out": {"kernel": as32(enc_kernel), "bias": as32(enc_bias)}},
          "decoder": {"out": {"kernel": as32(w.T), "bias": as32(b)}}}


def exact_params(w=W, b=B):
  a, c, s = exact_posterior(w, b)
  return params_of(np.concatenate([a, np.zeros((D, LATENT))], 1),
                   np.concatenate([c, np.log(s)]), w, b)


def log_marginal(x, w=W, b=B):
  """log p(x) [n] of x [n, D]: N(x; b, W W^T + s^2 I)."""
  return stats.multivariate_normal(b, w @ w.T + STD**2 * np.eye(D)).logpdf(x)


def exact_elbo(x, enc_kernel, enc_bias, w=W, b=B):
  """E_q[log p(x|z)] - KL(q || p) in closed form for the linear-Gaussian model: [n]."""
  out = x @ enc_kernel + enc_bias
  m, log_v = out[:, :LATENT], out[:, LATENT:]
  v = np.exp(log_v)
  residual = x - m @ w.T - b
  expected_ll = (-0.5 * D * np.log(2 * np.pi * STD**2)
                 - (np.sum(residual**2, 1) + v @ np.sum(w**2, 0)) / (2 * STD**2))
  kl = 0.5 * np.sum(m**2 + v - log_v - 1, 1)
  return expected_ll - kl


def jit_bounds(method):
  return jax.jit(method.bounds, static_argnums=(3, 4))


def draw_data(n, seed):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, LATENT)) @ W.T + B + STD * rng.normal(size=(n, D))


def images(x):
  return jnp.asarray(x, jnp.float32).reshape(-1, D, 1, 1)


def test_exact_posterior_makes_every_importance_weight_the_marginal_likelihood():
  x = draw_data(16, seed=1)
  method = linear_vae()
  b = jit_bounds(method)(exact_params(), images(x), jax.random.PRNGKey(0), 1000, 250)
  np.testing.assert_allclose(-b["iwae"], log_marginal(x), rtol=1e-5, atol=1e-4)
  # The ELBO is tight too: its Monte Carlo estimate is within sampling noise of log p(x).
  np.testing.assert_allclose(-b["elbo"], log_marginal(x), atol=0.2)


def test_elbo_below_and_iwae_increasing_towards_the_marginal_likelihood():
  x = draw_data(256, seed=2)
  a, c, s = exact_posterior()
  # A poor encoder: means shrunk to 60%, variances 2 times too small.
  kernel = np.concatenate([0.6 * a, np.zeros((D, LATENT))], 1)
  bias = np.concatenate([0.6 * c, np.log(s / 2)])
  params = params_of(kernel, bias)
  method = linear_vae()
  log_p = log_marginal(x)
  elbo = exact_elbo(x, kernel, bias)
  assert np.all(elbo < log_p)
  estimates = {k: jit_bounds(method)(params, images(x), jax.random.PRNGKey(k), k, min(k, 100))
               for k in (1, 10, 100, 1000)}
  # The method's ELBO estimate (1000 draws) agrees with the closed form.
  np.testing.assert_allclose(-estimates[1000]["elbo"], elbo, atol=0.5)
  assert abs(np.mean(-estimates[1000]["elbo"]) - np.mean(elbo)) < 0.03
  means = [float(np.mean(-estimates[k]["iwae"])) for k in (1, 10, 100, 1000)]
  assert means == sorted(means) and means[-1] - means[0] > 1.0, means
  assert means[-1] < np.mean(log_p) + 0.02
  assert np.mean(log_p) - means[-1] < 0.25 * (np.mean(log_p) - np.mean(elbo))


def test_reparameterised_gradient_matches_finite_differences_of_the_expected_loss():
  x = draw_data(8, seed=3)
  a, c, s = exact_posterior()
  kernel = np.concatenate([0.5 * a, 0.1 * np.ones((D, LATENT))], 1)
  bias = np.concatenate([c + 0.3, np.log(s) - 0.5])
  w = W * 0.8
  params = params_of(kernel, bias, w=w)
  method = linear_vae()
  batch = {"image": images(x)}
  state = {"updates": jnp.zeros([], jnp.int32)}
  grad_fn = jax.grad(lambda p, rng: method.loss({}, p, batch, rng, state)[0])
  n = 4000
  grads = jax.jit(jax.vmap(grad_fn, (None, 0)))(params, jax.random.split(jax.random.PRNGKey(0), n))

  def expected_loss(kernel, bias, w):
    return -np.mean(exact_elbo(x, kernel, bias, w=w))

  h = 1e-5
  checks = [("encoder", "bias", (i,)) for i in range(2 * LATENT)] + [
      ("encoder", "kernel", (1, 0)), ("encoder", "kernel", (2, 3)),
      ("decoder", "kernel", (0, 1)), ("decoder", "kernel", (1, 3))]
  for net, name, index in checks:
    values = {"kernel": kernel.copy(), "bias": bias.copy(), "w": w.copy()}
    key = name if net == "encoder" else "w"
    index = index if net == "encoder" else index[::-1]  # the decoder's kernel is W^T
    plus, minus = ({k: v.copy() for k, v in values.items()} for _ in range(2))
    plus[key][index] += h
    minus[key][index] -= h
    fd = (expected_loss(**plus) - expected_loss(**minus)) / (2 * h)
    draws = np.asarray(grads[net]["out"][name])[(slice(None), *(
        index if net == "encoder" else index[::-1]))]
    stderr = draws.std() / math.sqrt(n)
    assert abs(draws.mean() - fd) < 4 * stderr + 1e-3, (net, name, index, draws.mean(), fd)


def test_training_on_linear_gaussian_data_reaches_the_marginal_likelihood():
  x = draw_data(512, seed=4)
  method = linear_vae()
  batch = {"image": images(x)}
  optimizer = optax.adam(2e-2)
  state = step_lib.init_state(method, {"vae": optimizer}, jax.random.PRNGKey(0), batch,
                              ema_decay=0.0)
  step = jax.jit(step_lib.make_train_step(method, {"vae": optimizer}))

  def body(state, _):
    return step(state, batch)[0], None

  state, _ = jax.jit(lambda s: jax.lax.scan(body, s, None, length=1500))(state)
  params = state.params["vae"]
  w = np.asarray(params["decoder"]["out"]["kernel"], np.float64).T
  b = np.asarray(params["decoder"]["out"]["bias"], np.float64)
  true_ll, learned_ll = np.mean(log_marginal(x)), np.mean(log_marginal(x, w, b))
  bounds = jit_bounds(method)(params, batch["image"], jax.random.PRNGKey(1), 200, 100)
  elbo = -np.mean(bounds["elbo"])
  # The fitted model is at least as likely as the truth on its training data (maximum
  # likelihood), barely more, and the ELBO closes the gap to its own marginal likelihood.
  assert true_ll - 0.02 < learned_ll < true_ll + 0.05, (true_ll, learned_ll)
  assert learned_ll - 0.05 < elbo <= learned_ll + 0.02, (learned_ll, elbo)
  assert int(state.model_state["updates"]) == 1500


def test_kl_warmup_counts_updates_and_free_bits_floor_each_dimension():
  objective = vae_lib.ELBO(beta=2.0, kl_warmup_steps=4)
  np.testing.assert_allclose([objective.kl_weight(jnp.int32(u)) for u in range(6)],
                             [0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
  x = draw_data(32, seed=5)
  batch = {"image": images(x)}
  floor = 1.0
  method = linear_vae(vae_lib.ELBO(free_bits=floor))
  params = exact_params()
  loss, (metrics, state) = jax.jit(method.loss)({}, params, batch, jax.random.PRNGKey(0),
                                       {"updates": jnp.int32(7)})
  assert int(state["updates"]) == 8
  enc = method.encode(params, batch["image"])
  per_dim = np.mean(np.asarray(method.posterior.kl_per_dim(enc)), 0)
  assert per_dim.min() < floor < per_dim.max()  # one dimension floored, one not
  np.testing.assert_allclose(loss - metrics["nll"], np.sum(np.maximum(floor, per_dim)),
                             rtol=1e-5)


def test_plain_autoencoder_is_a_strategy_with_no_kl_and_no_bound():
  method = vae_lib.VAE(
      encoder=vae_nets.MLPEncoder(features=(), out_features=LATENT),
      decoder=vae_nets.MLPDecoder(features=(), image_shape=(D, 1, 1), params_per_pixel=1),
      posterior=vae_lib.DeterministicPosterior(), likelihood=pixels.Gaussian(STD),
      objective=vae_lib.ELBO(), latent_dim=LATENT)
  x = images(draw_data(8, seed=6))
  variables = method.init(jax.random.PRNGKey(0), {"image": x})
  params = variables["params"]["vae"]
  loss, (metrics, _) = jax.jit(method.loss)({}, params, {"image": x}, jax.random.PRNGKey(1),
                                   variables["model_state"])
  code = method.encode(params, x)
  want = np.mean(pixels.Gaussian(STD).nll(method.decode(params, code), x))
  np.testing.assert_allclose([loss, metrics["nll"], metrics["kl"]], [want, want, 0.0], rtol=1e-6)
  assert set(method.evaluate(variables, {"image": x}, jax.random.PRNGKey(2))) == {"recon_bpd"}
  assert method.sample(variables, jax.random.PRNGKey(3), 9)["samples"].shape == (9, D, 1, 1)
  with pytest.raises(ValueError, match="needs a posterior with a density"):
    dataclasses.replace(method, objective=vae_lib.IWAE(4))


def test_iwae_objective_is_minus_the_bound_of_its_samples():
  x = images(draw_data(16, seed=7))
  method = linear_vae(vae_lib.IWAE(train_samples=5))
  params = exact_params()
  loss, (metrics, _) = jax.jit(method.loss)({}, params, {"image": x}, jax.random.PRNGKey(0),
                                   {"updates": jnp.int32(0)})
  # Under the exact posterior every weight is p(x): the bound is log p(x), whatever the draws.
  np.testing.assert_allclose(loss, -np.mean(log_marginal(np.asarray(x).reshape(-1, D))),
                             rtol=1e-5)
  assert np.isfinite(metrics["iwae_bpd"])


def test_latent_paths():
  rng = np.random.default_rng(8)
  z0, z1 = rng.normal(size=(2, 3, 5))
  z1 = z1 / np.linalg.norm(z1, axis=-1, keepdims=True) * np.linalg.norm(z0, axis=-1,
                                                                        keepdims=True)
  for path_fn in (latent.linear_path, latent.spherical_path):
    path = np.asarray(latent.interpolate(jnp.asarray(z0), jnp.asarray(z1), 7, path_fn))
    assert path.shape == (3, 7, 5)
    np.testing.assert_allclose(path[:, 0], z0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path[:, -1], z1, rtol=1e-5, atol=1e-6)
  linear = np.asarray(latent.interpolate(jnp.asarray(z0), jnp.asarray(z1), 3,
                                         latent.linear_path))
  np.testing.assert_allclose(linear[:, 1], (z0 + z1) / 2, rtol=1e-5, atol=1e-6)
  spherical = np.asarray(latent.interpolate(jnp.asarray(z0), jnp.asarray(z1), 7))
  np.testing.assert_allclose(np.linalg.norm(spherical, axis=-1),
                             np.repeat(np.linalg.norm(z0, axis=-1, keepdims=True), 7, 1),
                             rtol=1e-4)
  same = latent.spherical_path(jnp.ones(4), jnp.ones(4), 0.3)
  np.testing.assert_allclose(same, np.ones(4), rtol=1e-6)


def test_unknown_strategy_names_are_refused_with_the_choices():
  config = load_config("vae_digits", "tiny")
  config.model.likelihood = "poisson"
  with pytest.raises(names.UnknownNameError, match="categorical.*discretized_logistic"):
    vae_lib.from_config(config_lib.resolve(config), DIGITS)


def test_shapes_and_levels_come_from_the_spec_and_the_disk_is_never_read(monkeypatch):
  from gen_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  def no_disk(*args, **kwargs):
    raise AssertionError("a method read the dataset's info")

  config = config_lib.resolve(load_config("vae_digits", "tiny"))
  config.data.name = "not_a_dataset"
  monkeypatch.setattr(pipeline, "info", no_disk)
  spec = DataSpec(features={"image": Feature((4, 6, 1), "uint8")}, num_levels=5)
  method = vae_lib.from_config(config, spec)
  assert method.likelihood == pixels.DiscretizedLogistic(5)  # the tiny config's likelihood
  assert method.decoder.image_shape == (4, 6, 1)
  variables = jax.jit(method.init)(jax.random.PRNGKey(0), {"image": jnp.zeros((2, 4, 6, 1))})
  assert method.sample(variables, jax.random.PRNGKey(1), 4)["samples"].shape == (4, 4, 6, 1)
  # The config's own values win over the spec's; without either, the error names the key.
  config.model.update(image_shape=(2, 2, 1), num_levels=9)
  method = vae_lib.from_config(config, spec)
  assert method.decoder.image_shape == (2, 2, 1) and method.likelihood.num_levels == 9
  config.model.image_shape = ()
  with pytest.raises(ValueError, match="model.image_shape"):
    vae_lib.from_config(config)
  with pytest.raises(KeyError, match="no entry 'image'"):
    vae_lib.from_config(config, DataSpec(features={"point": Feature((2,), "float32")}))


def _check_run(result, expected_metrics):
  assert result.traces == 1
  assert set(result.eval_metrics) == expected_metrics
  assert all(math.isfinite(v) for v in result.eval_metrics.values())
  step = int(result.state.step)
  assert sorted(p.name for p in result.samples) == [f"interpolation_{step:07d}.png",
                                                    f"samples_{step:07d}.png"]
  for path in result.samples:
    with Image.open(path) as image:
      assert image.format == "PNG"


BOUNDS = {"elbo_bpd", "iwae_bpd", "recon_bpd", "kl_bpd"}


@pytest.mark.parametrize("name,arg,expected", [("vae_digits", "tiny", BOUNDS),
                                               ("vae_digits", "iwae,tiny", BOUNDS),
                                               ("ae_digits", "tiny", {"recon_bpd"})])
def test_tiny_config_trains_evaluates_and_writes_samples(tmp_path, name, arg, expected):
  result = train_and_evaluate(load_config(name, arg), tmp_path)
  _check_run(result, expected)
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert any(r["split"] == "train" and math.isfinite(r["vae/loss"]) for r in rows)


def test_tiny_mnist_config_runs_on_mock_data(tmp_path):
  version_dir = tmp_path / "data" / "mnist" / "3.0.1"
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(json.dumps({"fileFormat": "array_record"}))
  rng = np.random.default_rng(0)
  examples = [{"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
               "label": np.int64(i % 10)} for i in range(40)]
  config = load_config("vae_mnist", "tiny")
  config.data.data_dir = str(tmp_path / "data")
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=lambda *args, **kwargs: examples):
    result = train_and_evaluate(config, tmp_path / "run")
  _check_run(result, BOUNDS)
