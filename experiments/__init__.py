"""The experiments: one config file per experiment in `configs/`, and the entry points `main.py`
(train), `sample.py` (generate from a trained workdir) and `stylise.py`.

In a checkout they run as scripts:
`python experiments/main.py --config experiments/configs/vae_digits.py --workdir runs/vae_digits`.
An installed gen_jax (`pip install` of the repository or of a wheel) ships this folder as the
package `gen_jax.experiments` (setup.py maps it, so each file exists once), with console scripts
that run the same files as `__main__`: `gen-jax-train` (main.py), `gen-jax-sample` (sample.py)
and `gen-jax-stylise` (stylise.py). Their `--config` also takes a shipped config by name:
`gen-jax-train --config vae_digits:tiny --workdir runs/x`. In Python, `load_config("NAME[:ARG]")`
returns a shipped config's `get_config(ARG)`.
"""

import difflib
import os
import runpy
import sys
from pathlib import Path

import ml_collections

from gen_jax.train import config as config_lib

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_names() -> list[str]:
  """The shipped experiment configs, by name (the file's stem)."""
  return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def config_path(name: str) -> Path:
  """The file of the shipped config `name` (e.g. "vae_digits").

  Raises:
    ConfigError: no shipped config has that name; the message lists them.
  """
  known = config_names()
  if name not in known:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise config_lib.ConfigError(
        f"No experiment config is named {name!r}.{hint} The configs are: {', '.join(known)}; "
        f"or pass the path of a config file (.py).")
  return CONFIG_DIR / f"{name}.py"


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`get_config(ARG)` of the shipped config NAME, `spec` = "NAME[:ARG]" ("vae_digits:tiny")."""
  name, colon, arg = spec.partition(":")
  return config_lib.load_file(f"{config_path(name)}{colon}{arg}")


def config_flag_value(value: str) -> str:
  """A `--config` value with a shipped config's name ("vae_digits:tiny") replaced by its path;
  a path (anything naming a .py file or holding a path separator) is returned unchanged."""
  name, colon, arg = value.partition(":")
  if name.endswith(".py") or os.sep in name or "/" in name:
    return value
  return f"{config_path(name)}{colon}{arg}"


def with_config_paths(argv: list[str]) -> list[str]:
  """`argv` with the value of each `--config` flag (not `--config.KEY` overrides) resolved."""
  out, expect_value = [], False
  for arg in argv:
    if expect_value:
      arg, expect_value = config_flag_value(arg), False
    elif arg in ("--config", "-config"):
      expect_value = True
    elif arg.startswith(("--config=", "-config=")):
      flag, _, value = arg.partition("=")
      arg = f"{flag}={config_flag_value(value)}"
    out.append(arg)
  return out


def _run(script: str) -> None:
  """Runs `script`.py of this package as `python experiments/<script>.py` would."""
  runpy.run_module(f"{__name__}.{script}", run_name="__main__", alter_sys=True)


def train() -> None:
  """Console script `gen-jax-train`: main.py, whose --config also takes a shipped config's name."""
  try:
    sys.argv = with_config_paths(sys.argv)
  except config_lib.ConfigError as error:
    sys.exit(f"Error: {error}")
  _run("main")


def sample() -> None:
  """Console script `gen-jax-sample`: sample.py."""
  _run("sample")


def stylise() -> None:
  """Console script `gen-jax-stylise`: stylise.py."""
  _run("stylise")
