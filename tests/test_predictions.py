"""The parameterisations of a denoiser (gen_jax.predictions): exact conversions, and the one
module that the losses and the samplers both take them from."""

import ast
import inspect

import numpy as np

from gen_jax import predictions as pr
from gen_jax.losses import denoising
from gen_jax.sampling import diffusion as sampling

PREDICTIONS = ("eps", "x0", "v")


def _noisy(rng, shape=(64, 3)):
  """x0, eps, alpha, sigma (float64, alpha^2 + sigma^2 = 1) and x_t."""
  x0, eps = rng.normal(size=shape), rng.normal(size=shape)
  alpha = rng.uniform(0.05, 0.999, size=(shape[0],) + (1,) * (len(shape) - 1))
  sigma = np.sqrt(1 - alpha**2)
  return x0, eps, alpha, sigma, alpha * x0 + sigma * eps


def test_conversions_round_trip_exactly():
  """In float64 (the conversions are plain arithmetic), every conversion inverts the others."""
  x0, eps, alpha, sigma, x_t = _noisy(np.random.default_rng(0))
  kw = dict(alpha=alpha, sigma=sigma)
  v = pr.v_from_x0_eps(x0=x0, eps=eps, **kw)
  np.testing.assert_allclose(v, alpha * eps - sigma * x0, rtol=0, atol=0)
  checks = {
      "x0_from_eps": (pr.x0_from_eps(x_t=x_t, eps=eps, **kw), x0),
      "eps_from_x0": (pr.eps_from_x0(x_t=x_t, x0=x0, **kw), eps),
      "x0_from_v": (pr.x0_from_v(x_t=x_t, v=v, **kw), x0),
      "eps_from_v": (pr.eps_from_v(x_t=x_t, v=v, **kw), eps),
      "v_from_x0": (pr.v_from_x0(x_t=x_t, x0=x0, **kw), v),
  }
  for name, (got, want) in checks.items():
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=name)
  targets = {"eps": eps, "x0": x0, "v": v}
  for name in PREDICTIONS:
    fn = getattr(pr, f"{name}_prediction")
    x0_hat, eps_hat = fn(prediction=targets[name], x_t=x_t, **kw)
    np.testing.assert_allclose(x0_hat, x0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(eps_hat, eps, atol=1e-12, err_msg=name)


def _imports(module) -> set[str]:
  """The modules that `module`'s source imports (as `import a.b` or `from a.b import c`: a.b,
  and a.b.c for the latter)."""
  out = set()
  for node in ast.walk(ast.parse(inspect.getsource(module))):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      out.add(node.module)
      out.update(f"{node.module}.{alias.name}" for alias in node.names)
  return out


def test_samplers_and_losses_share_the_conversions_and_samplers_import_no_loss():
  assert not any(name.startswith("gen_jax.losses") for name in _imports(sampling))
  assert "gen_jax.predictions" in _imports(sampling)
  assert "gen_jax.predictions" in _imports(denoising)
  # Each conversion and parameterisation is defined once, here.
  for name in ("x0_from_eps", "eps_from_x0", "v_from_x0_eps", "v_from_x0", "x0_from_v",
               "eps_from_v", "eps_prediction", "x0_prediction", "v_prediction"):
    assert not hasattr(denoising, name), name
    assert getattr(pr, name).__module__ == "gen_jax.predictions"
