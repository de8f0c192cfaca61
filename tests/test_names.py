"""gen_jax.names: strategies resolved by kind, named as a config spells them, configured from it."""

import dataclasses
import functools
import types

import ml_collections
import pytest

from gen_jax import names
from gen_jax.methods import diffusion, gan, vae

# A module of strategies of several kinds, as a losses or methods module holds them.
SOURCE = '''
import dataclasses
from math import sqrt  # imported, not defined here: never a member


def hinge_d(*, real, fake):
  return real - fake


def hinge_g(*, fake):
  return -fake


def minimax_d(*, real, fake):
  return real + fake


def gradient_penalty(*, grads, target=1.0):
  return (grads - target) ** 2


def r1_penalty(*, grads):
  return grads ** 2


def _private_d(*, real, fake):
  return 0.0


def min_snr_mse(*, err, snr, gamma=5.0):
  return min(1.0, gamma / snr) * err


class Sampler:
  pass


@dataclasses.dataclass(frozen=True)
class DDIM(Sampler):
  eta: float = 0.0


@dataclasses.dataclass(frozen=True)
class DDPM(Sampler):
  posterior_variance: bool = True


@dataclasses.dataclass(frozen=True)
class LogisticMixture:
  num_levels: int
  num_mixtures: int = 5
'''


@pytest.fixture(name="module")
def _module():
  module = types.ModuleType("strategies")
  exec(SOURCE, module.__dict__)  # pylint: disable=exec-used
  return module


def test_snake_case_of_class_names():
  assert [names.snake_case(n) for n in ("LogisticMixture", "DDIM", "ELBO", "MLPDenoiser",
                                        "GaussianPosterior", "Categorical")] == [
      "logistic_mixture", "ddim", "elbo", "mlp_denoiser", "gaussian_posterior", "categorical"]


def test_members_are_named_as_the_config_spells_them(module):
  d_loss = names.Kind("model.d_loss", module, suffix="_d")
  assert d_loss.choices() == ["hinge", "minimax"]  # not _private_d, not the imported sqrt
  assert d_loss.get("hinge") is module.hinge_d
  penalty = names.Kind("model.penalty", module, suffix="_penalty", keep_suffix=True)
  assert penalty.choices() == ["gradient_penalty", "r1_penalty"]
  sampler = names.Kind("model.sampler", module, where=names.subclass_of(module.Sampler))
  assert sampler.choices() == ["ddim", "ddpm"]  # the base class itself is no member
  assert sampler.get("ddim") is module.DDIM


@pytest.mark.parametrize("kind_args,typed,suggestion,listed", [
    # The suggestion is what the user types, never the attribute behind it.
    (dict(key="model.d_loss", suffix="_d"), "hing", "'hinge'", "hinge, minimax."),
    (dict(key="model.d_loss", suffix="_d"), "hinge_d", "'hinge'", "hinge, minimax."),
    (dict(key="model.g_loss", suffix="_g"), "hnge", "'hinge'", "hinge."),
    # A name of another kind is refused, with this kind's members only.
    (dict(key="model.penalty", suffix="_penalty", keep_suffix=True), "hinge_d", None,
     "gradient_penalty, r1_penalty."),
    (dict(key="model.penalty", suffix="_penalty", keep_suffix=True), "r2_penalty",
     "'r1_penalty'", "gradient_penalty, r1_penalty."),
])
def test_unknown_names_are_refused_with_what_to_type(module, kind_args, typed, suggestion,
                                                     listed):
  kind = names.Kind(module=module, **kind_args)
  with pytest.raises(names.UnknownNameError) as error:
    kind.get(typed)
  message = str(error.value)
  assert message.startswith(f"Unknown {kind_args['key']} {typed!r}.")
  assert message.endswith(f"Valid choices: {listed}")
  if suggestion is None:
    assert "Did you mean" not in message
  else:
    assert f"Did you mean {suggestion}?" in message


def test_sampler_classes_suggest_their_config_names(module):
  sampler = names.Kind("model.sampler", module, where=names.subclass_of(module.Sampler))
  with pytest.raises(names.UnknownNameError, match=r"Did you mean 'ddim'\? Valid choices: "
                     r"ddim, ddpm\.$"):
    sampler.get("ddimm")


def test_build_takes_settings_from_context_then_the_strategys_key_then_the_shared_key(module):
  loss = names.Kind("model.loss", module, suffix="_mse")
  # At its default (or not configured), a function is itself: nothing is bound.
  assert loss.build("min_snr", {}) is module.min_snr_mse
  assert loss.build("min_snr", {"min_snr_gamma": 5.0}) is module.min_snr_mse
  for config, context, gamma in [({"min_snr_gamma": 2.0}, {}, 2.0),
                                 ({"gamma": 3.0}, {}, 3.0),
                                 ({"gamma": 3.0, "min_snr_gamma": 2.0}, {}, 2.0),
                                 ({"min_snr_gamma": 2.0}, {"gamma": 4.0}, 4.0)]:
    fn = loss.build("min_snr", ml_collections.ConfigDict(config), **context)
    assert isinstance(fn, functools.partial) and fn.keywords == {"gamma": gamma}
    assert fn(err=1.0, snr=8.0) == min(1.0, gamma / 8.0)
  # A function's inputs without defaults are never taken from the config.
  assert loss.build("min_snr", {"err": 1.0, "snr": 2.0}) is module.min_snr_mse
  # A class is instantiated with every field it finds; the others keep their defaults.
  likelihood = names.Kind("model.likelihood", module)
  assert likelihood.build("logistic_mixture", {"num_levels": 17}) == module.LogisticMixture(17)
  assert likelihood.build("logistic_mixture", {"num_levels": 17, "num_mixtures": 3}
                          ) == module.LogisticMixture(17, 3)
  with pytest.raises(ValueError, match=r"model.likelihood = 'logistic_mixture' needs its "
                     r"'num_levels': set model.logistic_mixture_num_levels \(or "
                     r"model.num_levels\)"):
    likelihood.build("logistic_mixture", {})


# The methods' kinds.


def _model_config(module, **overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({**module.default_model_config(), **overrides})


def _kinds(module) -> dict[str, names.Kind]:
  return {k: v for k, v in vars(module).items() if isinstance(v, names.Kind)}


@pytest.mark.parametrize("module", [gan, vae, diffusion], ids=lambda m: m.__name__)
def test_every_strategy_a_method_names_is_listed_and_builds_from_the_defaults(module):
  kinds = _kinds(module)
  assert kinds
  m = _model_config(module, num_levels=17)
  for kind in kinds.values():
    assert kind.choices(), kind.key
    for name in kind.choices():
      assert kind.build(name, m) is not None, (kind.key, name)


def test_the_methods_suggest_what_the_user_types():
  with pytest.raises(names.UnknownNameError, match=r"Did you mean 'hinge'\?"):
    gan.D_LOSSES.get("hing")
  with pytest.raises(names.UnknownNameError, match=r"Did you mean 'ddim'\?"):
    diffusion.SAMPLERS.get("ddimm")
  with pytest.raises(names.UnknownNameError,
                     match=r"model.penalty 'hinge_d'\. Valid choices: gradient_penalty, "
                     r"r1_penalty\.$"):
    gan.PENALTIES.get("hinge_d")
  with pytest.raises(names.UnknownNameError, match=r"Did you mean 'logistic_mixture'\?"):
    vae.LIKELIHOODS.get("logistic_mixtur")
  assert diffusion.SCHEDULES.choices() == ["cosine", "linear"]
  assert vae.OBJECTIVES.choices() == ["elbo", "iwae"]


def test_dataclass_settings_of_the_methods_reach_their_strategies():
  m = _model_config(vae, num_levels=17, num_mixtures=3, gaussian_std=0.25, beta=2.0,
                    free_bits=0.5, kl_warmup_steps=7, train_samples=3)
  assert vae.LIKELIHOODS.build("logistic_mixture", m) == vae.pixels.LogisticMixture(17, 3)
  assert vae.LIKELIHOODS.build("gaussian", m) == vae.pixels.Gaussian(0.25)
  assert vae.OBJECTIVES.build("elbo", m) == vae.ELBO(beta=2.0, free_bits=0.5,
                                                     kl_warmup_steps=7)
  assert vae.OBJECTIVES.build("iwae", m) == vae.IWAE(train_samples=3)
  d = _model_config(diffusion, eta=0.5, posterior_variance=False)
  assert diffusion.SAMPLERS.build("ddim", d) == diffusion.DDIM(eta=0.5)
  assert diffusion.SAMPLERS.build("ddpm", d) == diffusion.DDPM(posterior_variance=False)
  assert dataclasses.is_dataclass(diffusion.DDIM)
