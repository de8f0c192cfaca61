"""Data for gen_jax: `load(name, split, batch_size, seed, ...)` returns a resumable iterator.

```python
from gen_jax import data
it = data.load("digits", "train", batch_size=128, seed=0, preprocess=("scale_to_unit",))
batch = next(it)            # {"image": [128, 8, 8, 1] float32, "label": [128] int32}
state = it.get_state()      # JSON-serialisable; it.set_state(state) resumes exactly
```

`BUNDLED` datasets are built offline on first use: digits, toy2d/<distribution>,
python_source[/tiny], sample_images[/128|/64|/256] (scikit-learn's two sample photographs,
content and style images for style transfer) and
scene[/primitives_32|/primitives_64|/sphere_32] (posed images of a ray-traced 3-D scene, for
NeRF; `gen_jax.data.scene`). Others (mnist, cifar10, ...) load when prepared
with `tfds build NAME --file_format=array_record`. `gen_jax.data.toy2d` (the exact toy
distributions) imports neither tfds nor the pipeline: the pipeline's names are imported on
first access.
"""

import importlib

BUNDLED = ("digits", "toy2d", "python_source", "sample_images", "scene")

_PIPELINE_NAMES = ("load", "info", "DataIterator", "DatasetInfo", "DatasetNotPreparedError",
                   "DatasetDamagedError")

__all__ = ["BUNDLED", *_PIPELINE_NAMES]


def __getattr__(name: str):
  # Importing tfds and grain costs about a second; only the pipeline needs them.
  if name in _PIPELINE_NAMES:
    return getattr(importlib.import_module("gen_jax.data.pipeline"), name)
  raise AttributeError(f"module 'gen_jax.data' has no attribute {name!r}")
