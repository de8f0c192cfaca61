"""gen_jax: a functional JAX/Flax research codebase for generative models."""

from gen_jax import host_memory as _host_memory

__version__ = "0.1.0"

# glibc's malloc keeps freed blocks for reuse: gen_jax/host_memory.py (GEN_JAX_KEEP_FREED_MEMORY=0
# leaves its defaults).
_host_memory.keep_freed_memory()
