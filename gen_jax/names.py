"""Resolving what a config names: strategies by naming convention, never through registries.

A *kind* of strategy (`Kind`) is a family of public functions or classes of one module, among
which a config key chooses by name:

  Kind("model.d_loss", adversarial, suffix="_d")       "hinge"     -> adversarial.hinge_d
  Kind("model.penalty", adversarial, suffix="_penalty", keep_suffix=True)
                                                       "r1_penalty" -> adversarial.r1_penalty
  Kind("model.likelihood", pixels, where=subclass_of(pixels.PixelDistribution))
                                                       "logistic_mixture" -> pixels.LogisticMixture

A class is named in snake case (`LogisticMixture` is "logistic_mixture", `DDIM` is "ddim"). A new
strategy is a new function or class in its module: nothing else changes. A name is looked up
among its own kind only, and an unknown one is refused with the kind's choices and the closest
one, spelled as the config spells them (`d_loss = "hing"`: "Did you mean 'hinge'?").

Settings: `Kind.build(name, config, **context)` also configures the strategy. Each parameter p
of strategy s (a class's constructor arguments; a function's parameters that have defaults) is
taken from the first of

  context[p]               what the method supplies, e.g. data shapes;
  config[f"{s}_{p}"]       a setting of this strategy, e.g. `model.min_snr_gamma` for the gamma
                           of the `min_snr` loss, `model.gaussian_std` for the `gaussian`
                           likelihood's std;
  config[p]                a setting shared by name, e.g. `model.num_levels`, `model.beta`;

and otherwise keeps its default (a class parameter without one is an error that names the keys
to set). A function is returned with the settings that differ from its defaults bound
(`functools.partial`), or itself when there are none; a class is instantiated.

Besides kinds: `submodule` resolves a module of a package (a method), `attribute` any public
attribute of a module (an optax optimizer); `public_functions` lists a module's own functions.
"""

import dataclasses
import difflib
import functools
import importlib
import inspect
import pkgutil
import re
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping


class UnknownNameError(ValueError):
  """A config named something that does not exist; the message lists what does."""


def _choices_message(what: str, name: str, choices: Iterable[str]) -> str:
  choices = sorted(choices)
  close = difflib.get_close_matches(str(name), choices, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return f"Unknown {what} {name!r}.{hint} Valid choices: {', '.join(choices)}."


def snake_case(name: str) -> str:
  """`LogisticMixture` -> "logistic_mixture", `DDIM` -> "ddim", `MLPDenoiser` -> "mlp_denoiser"."""
  return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def subclass_of(base: type) -> Callable[[Any], bool]:
  """A `Kind.where` that admits the concrete (not abstract) proper subclasses of `base`."""
  return lambda value: (inspect.isclass(value) and issubclass(value, base) and value is not base
                        and not inspect.isabstract(value))


def _defined_in(module: ModuleType) -> dict[str, Any]:
  """The public functions and classes that `module` itself defines (not those it imports)."""
  return {name: value for name, value in vars(module).items()
          if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
          and getattr(value, "__module__", None) == module.__name__}


@dataclasses.dataclass(frozen=True)
class Kind:
  """A family of strategies that one config key chooses among.

  Attributes:
    key: the config key that names a member, e.g. "model.d_loss"; messages quote it, and its
      section ("model.") prefixes the settings' keys in them.
    module: the module (or its import name) whose public functions and classes are the members.
    suffix: members are the names (classes in snake case) that end in it; the config names a
      member without it (`_d`: "hinge" is `hinge_d`), or with it when `keep_suffix`.
    keep_suffix: the config spells the whole name ("gradient_penalty").
    where: an extra test a member must pass, e.g. `subclass_of(Sampler)`.
  """

  key: str
  module: ModuleType | str
  suffix: str = ""
  keep_suffix: bool = False
  where: Callable[[Any], bool] | None = None

  def members(self) -> dict[str, Any]:
    """{name as a config spells it: function or class}."""
    module = (importlib.import_module(self.module) if isinstance(self.module, str)
              else self.module)
    out = {}
    for attr, value in _defined_in(module).items():
      name = snake_case(attr) if inspect.isclass(value) else attr
      if not name.endswith(self.suffix) or name == self.suffix:
        continue
      if self.where is not None and not self.where(value):
        continue
      out[name if self.keep_suffix or not self.suffix else name[:-len(self.suffix)]] = value
    return out

  def choices(self) -> list[str]:
    return sorted(self.members())

  def get(self, name: str) -> Any:
    """The member named `name`, unconfigured."""
    members = self.members()
    if not isinstance(name, str) or name not in members:
      raise UnknownNameError(_choices_message(self.key, name, members))
    return members[name]

  def build(self, name: str, config: Mapping[str, Any] | None = None, **context: Any) -> Any:
    """The member named `name`, configured from `context` and `config` (see the module doc)."""
    member = self.get(name)
    config = {} if config is None else config
    section = self.key.rpartition(".")[0]
    section = f"{section}." if section else ""
    is_class = inspect.isclass(member)
    bound = {}
    for p in inspect.signature(member).parameters.values():
      if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        continue
      if not is_class and p.default is p.empty:
        continue  # a function's inputs, given by its caller
      for source, key in ((context, p.name), (config, f"{name}_{p.name}"), (config, p.name)):
        if key in source:
          value = source[key]
          if is_class or value != p.default:
            bound[p.name] = value
          break
      else:
        if is_class and p.default is p.empty:
          raise ValueError(f"{self.key} = {name!r} needs its {p.name!r}: set "
                           f"{section}{name}_{p.name} (or {section}{p.name}).")
    if is_class:
      return member(**bound)
    return functools.partial(member, **bound) if bound else member


def public_functions(module: ModuleType) -> list[str]:
  """Names of the functions defined in `module` itself that do not start with an underscore."""
  return [name for name, value in _defined_in(module).items() if inspect.isfunction(value)]


def submodule(package: str, name: str, *, what: str, exclude: Iterable[str] = ()) -> ModuleType:
  """Imports `f"{package}.{name}"`, or lists the package's modules in the error."""
  pkg = importlib.import_module(package)
  choices = [m.name for m in pkgutil.iter_modules(pkg.__path__)
             if not m.name.startswith("_") and m.name not in set(exclude)]
  if name not in choices:
    raise UnknownNameError(_choices_message(what, name, choices))
  return importlib.import_module(f"{package}.{name}")


def attribute(module: ModuleType, name: str, *, what: str,
              predicate: Callable[[Any], bool] = callable) -> Any:
  """`getattr(module, name)` for any public attribute satisfying `predicate` (e.g. optax's)."""
  choices = [n for n in dir(module) if not n.startswith("_") and predicate(getattr(module, n))]
  if name not in choices:
    raise UnknownNameError(_choices_message(what, name, choices))
  return getattr(module, name)
