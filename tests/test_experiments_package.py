"""experiments/ installed as `gen_jax.experiments`: the wheel ships every config and entry point,
and `gen-jax-train` runs experiments/main.py with a shipped config named on the command line."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gen_jax import experiments
from gen_jax.train import config as config_lib

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(p.name for p in (ROOT / "experiments/configs").glob("*.py"))


def test_the_package_is_the_checkouts_experiments_folder():
  assert Path(experiments.__file__).resolve() == ROOT / "experiments/__init__.py"
  assert [f"{name}.py" for name in experiments.config_names()] == CONFIG_FILES


def test_config_flag_resolves_names_and_leaves_paths():
  path = ROOT / "experiments/configs/vae_digits.py"
  assert experiments.config_flag_value("vae_digits:iwae,tiny") == f"{path}:iwae,tiny"
  assert experiments.config_flag_value("vae_digits") == str(path)
  for given in ("experiments/configs/vae_digits.py:tiny", "mine.py", "./vae_digits:tiny"):
    assert experiments.config_flag_value(given) == given
  argv = ["gen-jax-train", "--config", "gan_ring8:tiny", "--config.train.num_steps=2",
          "--workdir=w"]
  assert experiments.with_config_paths(argv) == [
      "gen-jax-train", "--config", f"{ROOT}/experiments/configs/gan_ring8.py:tiny",
      "--config.train.num_steps=2", "--workdir=w"]
  assert experiments.with_config_paths(["x", "--config=ddpm_toy2d"]) == [
      "x", f"--config={ROOT}/experiments/configs/ddpm_toy2d.py"]


def test_an_unknown_config_name_is_refused_with_the_closest_one():
  match = r"No experiment config is named 'vae_digit'\. Did you mean 'vae_digits'\?"
  with pytest.raises(config_lib.ConfigError, match=match):
    experiments.load_config("vae_digit:tiny")


def test_load_config_is_the_files_get_config():
  config = experiments.load_config("vae_digits:iwae,tiny")
  expected = config_lib.load_file(f"{ROOT}/experiments/configs/vae_digits.py:iwae,tiny")
  assert config.to_dict() == expected.to_dict()
  assert config.model.objective == "iwae" and config.train.num_steps == 4


def test_wheel_ships_the_configs_and_the_console_scripts(tmp_path):
  # Built without build isolation (no download), with this environment's setuptools; venvs of
  # Python >= 3.12 have none unless installed.
  pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools")
  # Built from a copy of the files the build reads, so the checkout gets no build/ folder.
  src = tmp_path / "src"
  src.mkdir()
  for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  ignore = shutil.ignore_patterns("__pycache__", "benchmarks", "colab")
  shutil.copytree(ROOT / "gen_jax", src / "gen_jax", ignore=ignore)
  shutil.copytree(ROOT / "experiments", src / "experiments", ignore=ignore)
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
  [wheel] = (tmp_path / "dist").glob("gen_jax-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = archive.read(entry_points).decode()
  for script in ("__init__.py", "main.py", "sample.py", "stylise.py"):
    assert f"gen_jax/experiments/{script}" in names
  assert {n.rpartition("/")[2] for n in names if n.startswith("gen_jax/experiments/configs/")
          } == set(CONFIG_FILES)
  assert "gen_jax/train/loop.py" in names and not any(n.startswith("experiments/") for n in names)
  for line in ("gen-jax-train = gen_jax.experiments:train",
               "gen-jax-sample = gen_jax.experiments:sample",
               "gen-jax-stylise = gen_jax.experiments:stylise"):
    assert line in scripts


def test_gen_jax_train_trains_a_config_given_by_name(tmp_path):
  workdir = tmp_path / "run"
  code = ("import sys; from gen_jax.experiments import train; "
          f"sys.argv = ['gen-jax-train', '--config', 'vae_digits:tiny', "
          f"'--config.train.num_steps=2', '--workdir', {str(workdir)!r}]; train()")
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ),
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"Done at step 2. Outputs in {workdir}/:" in proc.stdout
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [row["step"] for row in rows if row["split"] == "train"] == [2]

  proc = subprocess.run([sys.executable, "-c", code.replace("vae_digits:tiny", "vea_digits")],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1
  assert proc.stderr.startswith("Error: No experiment config is named 'vea_digits'. Did you mean "
                                "'vae_digits'?")
