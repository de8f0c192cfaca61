"""What a run shows: the progress bar's metrics and status lines, and 2-D sample plots drawn on
fixed axes over the data (gen_jax.train.logging, and the loop that uses it)."""

import importlib.util
import io
import logging
import re
import types
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import auto as tqdm_auto
from tqdm import tqdm

from gen_jax.data import toy2d
from gen_jax.train import logging as logging_lib
from gen_jax.train import loop as loop_lib
from gen_jax.viz import grids

ROOT = Path(__file__).resolve().parents[2]

GAN_MEANS = {"disc/adversarial": 1.25, "disc/fake_logit": -0.5, "disc/grad_norm": 3.0,
             "disc/loss": 1.3862944, "disc/r1_penalty": 0.01, "disc/real_logit": 0.5,
             "gen/grad_norm": 2.0, "gen/loss": 0.6931472, "steps_per_sec": 812.5}


def png_limits(path) -> tuple[float, ...]:
  with Image.open(path) as image:
    return tuple(float(v) for v in image.text["Limits"].split())


def bluish_pixels(path) -> int:
  """Pixels of the reference points' colour (tab:blue, drawn at alpha 0.3: about (187, 214,
  240) on white); the samples are orange and the axes and text grey to black."""
  with Image.open(path) as image:
    rgb = np.asarray(image.convert("RGB"), np.int32)
  return int(np.sum(rgb[..., 2] - rgb[..., 0] > 30))


def test_progress_postfix_shows_every_players_loss():
  assert logging_lib.progress_postfix(GAN_MEANS) == {"disc/loss": "1.386", "gen/loss": "0.6931"}
  assert logging_lib.progress_postfix({"model/bits_per_token": 7.9, "model/grad_norm": 1.0,
                                       "model/loss": 5.5}) == {"model/loss": "5.5"}


def test_the_loops_bar_is_tqdm_auto():
  # tqdm.auto: a widget in notebooks (Colab), the text bar elsewhere.
  assert loop_lib.tqdm is tqdm_auto.tqdm


def test_status_is_the_bar_description_while_it_lasts():
  out = io.StringIO()
  with tqdm(total=4, file=out, mininterval=0) as bar:
    with logging_lib.status(bar, "Compiling the train step..."):
      assert bar.desc == "Compiling the train step..."
      assert "Compiling the train step..." in out.getvalue()  # drawn at once
    assert bar.desc == ""
    bar.update(4)


def test_status_without_a_bar_is_an_info_line(caplog):
  caplog.set_level(logging.INFO, logger="gen_jax")
  with tqdm(total=4, disable=True) as bar:
    with logging_lib.status(bar, "Evaluating on test..."):
      pass
  assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
      ("gen_jax.train.logging", logging.INFO, "Evaluating on test...")]


def test_scatter_axes_are_fixed_by_the_first_samples(tmp_path):
  writer = logging_lib.MetricWriter(tmp_path)
  rng = np.random.default_rng(0)
  first = 0.1 * rng.normal(size=(300, 2)).astype(np.float32)
  # Non-finite samples (a diverged model) fix nothing; the first finite ones do.
  writer.write_samples(1, np.full((300, 2), np.nan, np.float32))
  [a] = writer.write_samples(2, first)
  [b] = writer.write_samples(3, 10.0 * rng.normal(size=(300, 2)).astype(np.float32))
  writer.close()
  assert png_limits(a) == png_limits(b) == grids.scatter_limits(first)
  assert bluish_pixels(a) == bluish_pixels(b) == 0  # no reference, nothing blue


def test_scatter_axes_and_points_come_from_the_reference(tmp_path):
  reference = toy2d.sample("ring8", np.random.default_rng(1), 500)[0]
  writer = logging_lib.MetricWriter(tmp_path, reference_points=reference)
  rng = np.random.default_rng(0)
  [a] = writer.write_samples(1, 0.01 * rng.normal(size=(300, 2)).astype(np.float32))
  [b] = writer.write_samples(2, 5.0 * rng.normal(size=(300, 2)).astype(np.float32))
  writer.close()
  assert png_limits(a) == png_limits(b) == grids.scatter_limits(reference)
  # The data are drawn: blue points on the ring's 8 modes (a's samples, at the centre, hide
  # none), where a plot without a reference has no blue pixel at all.
  assert bluish_pixels(a) > 100


def test_reference_points_are_exact_draws_or_the_batchs_points():
  ring = toy2d.distribution("ring8")
  info = types.SimpleNamespace(mixture=ring)
  points = logging_lib.reference_points(info, {}, num=300)
  np.testing.assert_array_equal(points, ring.sample(np.random.default_rng(0), 300)[0])
  batch = {"mode": np.zeros(4, np.int32), "point": np.arange(8, dtype=np.float32).reshape(4, 2)}
  no_mixture = types.SimpleNamespace(mixture=None)
  np.testing.assert_array_equal(logging_lib.reference_points(no_mixture, batch), batch["point"])
  images = {"image": np.zeros((4, 8, 8, 1), np.float32), "label": np.zeros(4, np.int32)}
  assert logging_lib.reference_points(no_mixture, images) is None


def test_a_run_names_its_phases_and_shows_each_players_loss(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location("gan_ring8",
                                                ROOT / "experiments/configs/gan_ring8.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  config.train.update(num_steps=2, log_every=1, checkpoint_every=2, progress_bar=True)
  result = loop_lib.train_and_evaluate(config, tmp_path)
  err = capsys.readouterr().err
  # The bar's descriptions, in order, while each phase lasts.
  phases = [m.group(0) for m in re.finditer(r"Compiling the train step\.\.\.|Evaluating on "
                                            r"test\.\.\.|Sampling 64 examples\.\.\.", err)]
  assert list(dict.fromkeys(phases)) == ["Compiling the train step...", "Evaluating on test...",
                                         "Sampling 64 examples..."]
  # The last drawing of the bar shows both players' losses of the last logged step.
  last = [row for row in (tmp_path / "metrics.jsonl").read_text().splitlines()
          if '"train"' in row][-1]
  losses = {k: float(v) for k, v in re.findall(r'"((?:disc|gen)/loss)": ([-0-9.e]+)', last)}
  assert set(losses) == {"disc/loss", "gen/loss"}
  assert (f"disc/loss={losses['disc/loss']:.4g}, gen/loss={losses['gen/loss']:.4g}"
          in err.split("\r")[-1])
  # The samples are drawn over the ring's exact points, on the ring's window.
  ring = logging_lib.reference_points(types.SimpleNamespace(mixture=toy2d.distribution("ring8")),
                                      {})
  assert result.samples[0].name == "samples_0000002.png"
  assert png_limits(result.samples[0]) == grids.scatter_limits(ring)
  assert bluish_pixels(result.samples[0]) > 100


def test_byte_tokens_are_written_as_text_and_other_ids_as_npy(tmp_path):
  writer = logging_lib.MetricWriter(tmp_path)
  paths = writer.write_samples(3, {"text": np.array([[104, 105]]), "codes": np.array([[7, 300]])})
  assert [p.name for p in paths] == ["text_0000003.txt", "codes_0000003.npy"]
  assert paths[0].read_text(encoding="utf-8") == "hi"
  np.testing.assert_array_equal(np.load(paths[1]), [[7, 300]])  # not clipped to a byte
