"""Resolving strategies named in a config: modules by naming convention, functions by getattr.

There are no registries: a new loss is a new public function in its module, a new method a new
module in `gen_jax.methods`. Unknown names are refused with the valid choices listed.
"""

import difflib
import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any, Callable, Iterable


class UnknownNameError(ValueError):
  """A config named something that does not exist; the message lists what does."""


def _choices_message(what: str, name: str, choices: Iterable[str]) -> str:
  choices = sorted(choices)
  close = difflib.get_close_matches(name, choices, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return f"Unknown {what} {name!r}.{hint} Valid choices: {', '.join(choices)}."


def public_functions(module: ModuleType) -> list[str]:
  """Names of the functions defined in `module` itself that do not start with an underscore."""
  return [name for name, value in vars(module).items()
          if not name.startswith("_") and inspect.isfunction(value)
          and value.__module__ == module.__name__]


def function(module: ModuleType, name: str, *, what: str) -> Callable[..., Any]:
  """`getattr(module, name)` for a public function of `module`, or a clear error."""
  choices = public_functions(module)
  if name not in choices:
    raise UnknownNameError(_choices_message(what, name, choices))
  return getattr(module, name)


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
