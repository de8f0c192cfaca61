"""The packages the distribution holds; metadata, dependencies and console scripts are in
setup.cfg.

experiments/ ships as the package `gen_jax.experiments`, its configs as `gen_jax.experiments
.configs`, so that an install from the repository (or a wheel) has the experiment configs and
entry points too, from the one copy of each file that the checkout runs as scripts. setup.cfg
cannot map a folder outside `gen_jax/` into the package next to `packages = find:`.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["gen_jax", "gen_jax.*"])
    + ["gen_jax.experiments", "gen_jax.experiments.configs"],
    package_dir={"gen_jax.experiments": "experiments"},
)
