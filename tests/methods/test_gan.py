"""The GAN method: each player's update computed by hand, n_critic, conditioning, configs, plots."""

import dataclasses
import importlib.util
import math
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from gen_jax import names
from gen_jax.data import toy2d
from gen_jax.losses import adversarial
from gen_jax.methods import gan
from gen_jax.sampling import latent
from gen_jax.train import config as config_lib
from gen_jax.train import step as step_lib
from gen_jax.train.loop import train_and_evaluate
from gen_jax.viz import gan_plots

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("gan_ring8", "gan_grid25")
LR = 0.05


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny_method(**model) -> gan.GAN:
  config = load_config("gan_ring8", "tiny")
  config.model.update(model)
  return gan.from_config(config_lib.resolve(config))


def toy_batch(size: int = 8) -> dict[str, jax.Array]:
  angles = jnp.arange(size) * (2 * math.pi / 8)
  return {"point": jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1),
          "mode": jnp.arange(size, dtype=jnp.int32) % 8}


def sgd_step(loss_fn, params, *args):
  grads = jax.grad(lambda p: loss_fn(p, *args)[0])(params)
  return jax.tree.map(lambda p, g: p - LR * g, params, grads)


def hand_step(method: gan.GAN, state, batch, *, disc_updates: bool = True,
              gen_updates: bool = True):
  """The step's updates written out: the keys as `make_train_step` derives them, plain SGD."""
  step_rng = jax.random.fold_in(state.rng, state.step)
  disc, gen = state.params["disc"], state.params["gen"]

  def disc_loss(d, rng):
    return method.disc_loss({"disc": d, "gen": gen}, d, batch, rng, {})

  if disc_updates:
    for repeat in range(method.n_critic):
      rng = jax.random.fold_in(jax.random.fold_in(step_rng, 0), repeat)
      disc = sgd_step(disc_loss, disc, rng)

  def gen_loss(g, rng):
    return method.gen_loss({"disc": disc, "gen": g}, g, batch, rng, {})

  if gen_updates:
    gen = sgd_step(gen_loss, gen, jax.random.fold_in(jax.random.fold_in(step_rng, 1), 0))
  return disc, gen


def assert_trees_close(actual, expected, **kwargs):
  kwargs.setdefault("rtol", 1e-5)
  kwargs.setdefault("atol", 1e-6)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), **kwargs)


def assert_trees_differ(a, b):
  assert any(not np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def run_step(method, optimizers, batch):
  state = step_lib.init_state(method, optimizers, jax.random.PRNGKey(0), batch, ema_decay=0.0)
  new_state, metrics = step_lib.make_train_step(method, optimizers)(state, batch)
  return state, new_state, metrics


@pytest.mark.parametrize("penalty", ["", "r1_penalty", "gradient_penalty"])
def test_step_matches_hand_computed_player_updates(penalty):
  method = tiny_method(penalty=penalty, penalty_weight=1.0)
  batch = toy_batch()
  sgd = {"disc": optax.sgd(LR), "gen": optax.sgd(LR)}
  state, new_state, metrics = run_step(method, sgd, batch)
  disc, gen = hand_step(method, state, batch)
  assert_trees_close(new_state.params["disc"], disc)
  # The generator's update differentiated through the discriminator after its update.
  assert_trees_close(new_state.params["gen"], gen)
  assert_trees_differ(new_state.params["gen"], state.params["gen"])
  expected = {"disc/loss", "disc/grad_norm", "disc/adversarial", "disc/real_logit",
              "disc/fake_logit", "gen/loss", "gen/grad_norm"} | (
                  {f"disc/{penalty}"} if penalty else set())
  assert set(metrics) == expected
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_generator_update_leaves_discriminator_unchanged_and_vice_versa():
  method = tiny_method()
  batch = toy_batch()
  frozen = optax.set_to_zero()
  # Only the generator learns: the discriminator's parameters come out bitwise unchanged, and
  # the generator's update is the one computed against the initial discriminator.
  state, new_state, _ = run_step(method, {"disc": frozen, "gen": optax.sgd(LR)}, batch)
  _, gen = hand_step(method, state, batch, disc_updates=False)
  for a, b in zip(jax.tree.leaves(new_state.params["disc"]), jax.tree.leaves(state.params["disc"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert_trees_close(new_state.params["gen"], gen)
  # Only the discriminator learns: the generator is untouched.
  state, new_state, _ = run_step(method, {"disc": optax.sgd(LR), "gen": frozen}, batch)
  disc, _ = hand_step(method, state, batch, gen_updates=False)
  for a, b in zip(jax.tree.leaves(new_state.params["gen"]), jax.tree.leaves(state.params["gen"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert_trees_close(new_state.params["disc"], disc)


def test_n_critic_applies_that_many_discriminator_updates():
  method = tiny_method(n_critic=3)
  assert [(p.name, p.repeats) for p in method.players] == [("disc", 3), ("gen", 1)]
  batch = toy_batch()
  state, new_state, _ = run_step(method, {"disc": optax.sgd(LR), "gen": optax.sgd(LR)}, batch)
  disc, gen = hand_step(method, state, batch)
  assert_trees_close(new_state.params["disc"], disc)
  assert_trees_close(new_state.params["gen"], gen)
  # Two updates are not three.
  two = hand_step(dataclasses.replace(method, n_critic=2), state, batch, gen_updates=False)[0]
  with pytest.raises(AssertionError):
    assert_trees_close(new_state.params["disc"], two)


def test_disc_loss_is_the_named_loss_plus_weighted_penalty():
  method = tiny_method(d_loss="hinge", penalty="r1_penalty", penalty_weight=2.5)
  batch = toy_batch()
  variables = method.init(jax.random.PRNGKey(1), batch)
  params = variables["params"]
  rng = jax.random.PRNGKey(2)
  loss, (metrics, _) = method.disc_loss(params, params["disc"], batch, rng, {})
  z = jax.random.normal(jax.random.split(rng)[0], (8, method.latent_dim))
  fake = method.generate(params["gen"], z)
  critic = lambda x: method.critic(params["disc"], x)
  adv = jnp.mean(adversarial.hinge_d(real_logits=critic(batch["point"]),
                                     fake_logits=critic(fake)))
  grads = jax.vmap(jax.grad(lambda x: critic(x[None])[0]))(batch["point"])
  r1 = jnp.mean(jnp.sum(grads ** 2, -1))
  np.testing.assert_allclose(metrics["adversarial"], adv, rtol=1e-6)
  np.testing.assert_allclose(metrics["r1_penalty"], r1, rtol=1e-5)
  np.testing.assert_allclose(loss, adv + 2.5 * r1, rtol=1e-5)


@pytest.mark.parametrize("target", [1.0, 2.5])
def test_gradient_penalty_target_is_set_from_the_config(target):
  method = tiny_method(penalty="gradient_penalty", penalty_weight=1.0,
                       gradient_penalty_target=target)
  batch = toy_batch()
  params = method.init(jax.random.PRNGKey(1), batch)["params"]
  rng = jax.random.PRNGKey(2)
  _, (metrics, _) = method.disc_loss(params, params["disc"], batch, rng, {})
  # The method's keys, written out: the latents from the first half of rng, one interpolation
  # key per example from the second; WGAN-GP at `target` (Gulrajani et al. 2017).
  z_rng, penalty_rng = jax.random.split(rng)
  fake = method.generate(params["gen"], jax.random.normal(z_rng, (8, method.latent_dim)))
  rngs = jax.random.split(jax.random.fold_in(penalty_rng, 0), 8)
  critic = lambda x: method.critic(params["disc"], x)
  want = np.mean([adversarial.gradient_penalty(
      critic_fn=critic, real=batch["point"][i:i + 1], fake=fake[i:i + 1], rng=rngs[i],
      target=target)[0] for i in range(8)])
  np.testing.assert_allclose(metrics["gradient_penalty"], want, rtol=1e-5)


def test_class_conditional_players_see_each_examples_label():
  method = tiny_method(label_key="mode", num_classes=8, penalty="r1_penalty", penalty_weight=1.0)
  assert method.conditioning == gan.ClassConditional(num_classes=8, key="mode")
  batch = toy_batch()
  params = method.init(jax.random.PRNGKey(3), batch)["params"]
  _, (metrics, _) = method.disc_loss(params, params["disc"], batch, jax.random.PRNGKey(4), {})
  # R1 differentiates each example's critic under that example's own label.
  grads = [jax.grad(lambda x, i=i: method.critic(params["disc"], x[None],
                                                 batch["mode"][i:i + 1])[0])(batch["point"][i])
           for i in range(8)]
  np.testing.assert_allclose(metrics["r1_penalty"], np.mean(np.sum(np.square(grads), -1)),
                             rtol=1e-5)
  # Changing only the labels changes the generator's output.
  z = jnp.zeros((2, method.latent_dim))
  a = method.generate(params["gen"], z, jnp.array([0, 0]))
  b = method.generate(params["gen"], z, jnp.array([0, 5]))
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.allclose(a[1], b[1])
  assert method.sample({"params": params}, jax.random.PRNGKey(5), 16).shape == (16, 2)


def test_unknown_names_are_refused_with_the_choices():
  # The suggestion is what the config says ("hinge"), not the function behind it ("hinge_d").
  with pytest.raises(names.UnknownNameError, match=r"Unknown model.d_loss 'hing'\. Did you mean "
                     r"'hinge'\? Valid choices: hinge, minimax, non_saturating, wasserstein\.$"):
    tiny_method(d_loss="hing")
  with pytest.raises(names.UnknownNameError, match=r"model.g_loss 'hnge'\. Did you mean 'hinge'"):
    tiny_method(g_loss="hnge")
  with pytest.raises(names.UnknownNameError, match="r1_penalty"):
    tiny_method(penalty="r2_penalty")
  # A loss is not a penalty: refused while building, with the penalties listed and nothing else.
  with pytest.raises(names.UnknownNameError, match=r"Unknown model.penalty 'hinge_d'\. Valid "
                     r"choices: gradient_penalty, r1_penalty\.$"):
    tiny_method(penalty="hinge_d")
  with pytest.raises(ValueError, match="num_classes"):
    tiny_method(label_key="mode")


@pytest.mark.parametrize("name", CONFIGS)
def test_collapse_setting_differs_by_one_value(name):
  good = config_lib.to_dict(config_lib.resolve(load_config(name, "")))
  bad = config_lib.to_dict(config_lib.resolve(load_config(name, "collapse")))
  diff = {(section, key) for section in good if isinstance(good[section], dict)
          for key in good[section] if good[section][key] != bad[section][key]}
  assert diff == {("model", "penalty")}


@pytest.mark.parametrize("name,arg", [(name, arg) for name in CONFIGS
                                      for arg in ("tiny", "collapse,tiny")]
                         + [("gan_ring8", "conditional,tiny")])
def test_tiny_config_trains_and_writes_samples_and_gan_lab_frames(tmp_path, name, arg):
  config = load_config(name, arg)
  config.train.sample_every = 3  # samples and a GAN-Lab frame at steps 3 and 6
  result = train_and_evaluate(config, tmp_path)
  assert int(result.state.step) == 6 and result.traces == 1
  assert set(result.eval_metrics) == {"d_loss", "g_loss", "real_logit", "fake_logit"}
  assert all(math.isfinite(v) for v in result.eval_metrics.values())
  assert [p.name for p in result.samples] == [
      "samples_0000006.png", "frame_0000006.png", "training.gif"]
  with Image.open(result.samples[0]) as image:
    assert image.format == "PNG" and image.size[0] > 100
  frames = sorted(p.name for p in (tmp_path / "samples" / "frames").iterdir())
  assert frames == ["frame_0000003.png", "frame_0000006.png"]
  with Image.open(result.samples[2]) as gif:
    assert gif.format == "GIF" and gif.n_frames == 2


@pytest.mark.parametrize("conditional", [False, True])
def test_frame_writes_a_png_and_frames_make_a_gif(tmp_path, conditional):
  method = tiny_method(**(dict(label_key="mode", num_classes=8) if conditional else {}))
  batch = toy_batch()
  variables = method.init(jax.random.PRNGKey(0), batch)
  frames = [gan_plots.frame(method, variables, batch["point"], rng=jax.random.PRNGKey(i),
                            path=tmp_path / f"frame_{i}.png", title=f"step {i}",
                            extent=(-1.5, 1.5, -1.5, 1.5))
            for i in range(3)]
  assert frames[0].dtype == np.uint8 and frames[0].ndim == 3 and frames[0].shape[2] == 3
  with Image.open(tmp_path / "frame_0.png") as image:
    assert image.format == "PNG" and image.size == (frames[0].shape[1], frames[0].shape[0])
  gif = gan_plots.save_gif([tmp_path / f"frame_{i}.png" for i in range(3)], tmp_path / "a.gif")
  with Image.open(gif) as image:
    assert image.format == "GIF" and image.n_frames == 3


@pytest.mark.parametrize("conditional,latent_dim", [(False, 3), (True, 3), (False, 1)])
def test_warped_grid_and_discriminator_map_are_the_networks_on_their_grids(conditional,
                                                                            latent_dim):
  method = tiny_method(latent_dim=latent_dim,
                       **(dict(label_key="mode", num_classes=8) if conditional else {}))
  variables = method.init(jax.random.PRNGKey(0), toy_batch())
  params = variables["params"]
  label = 3  # a conditional model's pictures are of this class, not the default 0
  labels = (lambda n: jnp.full((n,), label, jnp.int32)) if conditional else (lambda n: None)
  # Horizontal line i is the latent line z = (s_k, t_i, 0, ...), vertical line i is
  # z = (t_i, s_k, 0, ...), with t = linspace(-2, 2, 5) and s = linspace(-2, 2, 7); a 1-D
  # latent keeps the first coordinate only.
  t, s = np.linspace(-2, 2, 5), np.linspace(-2, 2, 7)
  grid = np.zeros((2, 5, 7, 2), np.float32)
  grid[0, ..., 0], grid[0, ..., 1] = s[None, :], t[:, None]
  grid[1, ..., 0], grid[1, ..., 1] = t[:, None], s[None, :]
  z = np.zeros((70, latent_dim), np.float32)
  z[:, :min(2, latent_dim)] = grid.reshape(70, 2)[:, :min(2, latent_dim)]
  want = method.generate(params["gen"], jnp.asarray(z), labels(70))
  lines = gan_plots.warped_grid(method, variables, lines=5, points_per_line=7, span=2.0,
                                label=label)
  np.testing.assert_allclose(lines, np.asarray(want).reshape(10, 7, 2), rtol=1e-6, atol=1e-6)
  # heat[row, col] = sigmoid(D(x_col, y_row)): x on [-1, 2], y on [-3, 1], 5 points each.
  xs, ys = np.linspace(-1.0, 2.0, 5), np.linspace(-3.0, 1.0, 5)
  x = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), -1).reshape(25, 2)
  want = jax.nn.sigmoid(method.critic(params["disc"], jnp.asarray(x, jnp.float32), labels(25)))
  heat = gan_plots.discriminator_map(method, variables, (-1.0, 2.0, -3.0, 1.0), resolution=5,
                                     label=label)
  np.testing.assert_allclose(heat, np.asarray(want).reshape(5, 5), rtol=1e-6, atol=1e-7)


def test_gan_lab_arrays_come_from_the_method_and_the_loop_hook_from_viz(tmp_path):
  method = tiny_method()
  variables = method.init(jax.random.PRNGKey(0), toy_batch())
  rng = jax.random.PRNGKey(6)
  frame = method.gan_lab(variables, rng, extent=(-1.0, 1.0, -2.0, 2.0), num_fake=7,
                         resolution=9, lines=5, points_per_line=7)
  np.testing.assert_array_equal(frame.fake, method.sample(variables, rng, 7))
  np.testing.assert_array_equal(frame.heat, method.discriminator_map(
      variables, (-1.0, 1.0, -2.0, 2.0), resolution=9))
  np.testing.assert_array_equal(frame.lines, method.warped_grid(variables, lines=5,
                                                                points_per_line=7))
  assert frame.extent == (-1.0, 1.0, -2.0, 2.0) and not hasattr(method, "plot")
  # The loop's hook: frames for a 2-D GAN on a mixture, nothing for other data or methods.
  info = types.SimpleNamespace(mixture=toy2d.distribution("ring8"))
  assert gan_plots.make_plot_fn(method, types.SimpleNamespace(mixture=None)) is None
  assert gan_plots.make_plot_fn(object(), info) is None
  plot_fn = gan_plots.make_plot_fn(method, info)
  written = plot_fn(variables, rng, step=3, directory=tmp_path)
  assert written == [tmp_path / "frames" / "frame_0000003.png", tmp_path / "training.gif"]
  written = plot_fn(variables, rng, step=4, directory=tmp_path)
  with Image.open(written[1]) as gif:
    assert gif.format == "GIF" and gif.n_frames == 2


# ----------------------------------------------------------------------------------------------
# Image GANs: DCGAN players, class rows, latent interpolation.
# ----------------------------------------------------------------------------------------------


def image_method(name: str, **model) -> gan.GAN:
  config = load_config(name, "tiny")
  config.model.update(model)
  return gan.from_config(config_lib.resolve(config))


def digit_batch(size: int = 4) -> dict[str, jax.Array]:
  images = jnp.linspace(-1.0, 1.0, size * 64).reshape(size, 8, 8, 1)
  return {"image": images, "label": jnp.arange(size, dtype=jnp.int32) % 10}


def test_slerp_of_orthogonal_equal_norm_vectors_is_the_arc_between_them():
  # Exact oracle: for orthogonal z0, z1 of norm r the great circle through them is
  # z(t) = cos(t pi / 2) z0 + sin(t pi / 2) z1, of norm r all along; the straight line's
  # midpoint is (z0 + z1) / 2, of norm r / sqrt(2).
  r, steps = 3.0, 5
  z0 = jnp.array([[r, 0.0, 0.0, 0.0], [0.0, 0.0, r, 0.0]])
  z1 = jnp.array([[0.0, r, 0.0, 0.0], [0.0, 0.0, 0.0, -r]])
  t = np.linspace(0.0, 1.0, steps)[None, :, None]
  arc = np.cos(t * np.pi / 2) * np.asarray(z0)[:, None] + np.sin(t * np.pi / 2) * np.asarray(
      z1)[:, None]
  spherical = np.asarray(latent.interpolate(z0, z1, steps, latent.spherical_path))
  np.testing.assert_allclose(spherical, arc, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(spherical, axis=-1), r, rtol=1e-6)
  linear = np.asarray(latent.interpolate(z0, z1, steps, latent.linear_path))
  for path in (spherical, linear):
    np.testing.assert_allclose(path[:, 0], z0, atol=1e-6)
    np.testing.assert_allclose(path[:, -1], z1, atol=1e-6)
  np.testing.assert_allclose(linear[:, 2], (z0 + z1) / 2, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(linear[:, 2], axis=-1), r / np.sqrt(2), rtol=1e-6)


def test_dcgan_samples_and_interpolation_grids():
  method = image_method("dcgan_digits")
  assert method.path_fn is latent.spherical_path
  variables = method.init(jax.random.PRNGKey(0), digit_batch())
  rng = jax.random.PRNGKey(1)
  out = jax.jit(lambda v, r: method.sample(v, r, 10))(variables, rng)
  assert set(out) == {"samples", "interpolation"}
  # 10 samples; isqrt(10) = 3 paths of 3 steps, one per row of the loop's 3 x 3 grid.
  assert out["samples"].shape == (10, 8, 8, 1) and out["interpolation"].shape == (9, 8, 8, 1)
  assert np.all(np.abs(np.asarray(out["samples"])) <= 1.0)
  z = method.latent_fn(jax.random.split(rng)[0], (10, method.latent_dim))
  gen = jax.jit(lambda z: method.generate(variables["params"]["gen"], z))
  np.testing.assert_allclose(out["samples"], gen(z), atol=1e-4)  # separate jits
  # The paths' endpoints are the generated images of the two latents.
  z0, z1 = jax.random.normal(jax.random.PRNGKey(2), (2, 2, method.latent_dim))
  path = jax.jit(lambda a, b: method.interpolate_images(variables, a, b, 4, latent.linear_path))(
      z0, z1).reshape(2, 4, 8, 8)
  np.testing.assert_allclose(path[:, 0], gen(z0).reshape(2, 8, 8), atol=1e-5)
  np.testing.assert_allclose(path[:, -1], gen(z1).reshape(2, 8, 8), atol=1e-5)
  assert not np.allclose(path[:, 1], path[:, 2])


def test_class_conditional_dcgan_samples_one_class_per_row():
  method = image_method("cgan_digits")
  assert method.conditioning == gan.ClassConditional(num_classes=10, key="label")
  np.testing.assert_array_equal(method.conditioning.rows(23, 5), (np.arange(23) // 5) % 10)
  variables = method.init(jax.random.PRNGKey(0), digit_batch())
  rng = jax.random.PRNGKey(1)
  out = jax.jit(lambda v, r: method.sample(v, r, 16))(variables, rng)
  z = method.latent_fn(jax.random.split(rng)[0], (16, method.latent_dim))
  rows = jnp.repeat(jnp.arange(4), 4)  # a 4 x 4 grid: row r shows class r
  gen = jax.jit(lambda z, labels: method.generate(variables["params"]["gen"], z, labels))
  np.testing.assert_allclose(out["samples"], gen(z, rows), atol=1e-4)  # separate jits
  # The label alone changes the image: the same two latents, example 1 relabelled. Example 0
  # (latent and label unchanged) keeps its image; example 1 gets another one.
  same, relabelled = gen(z[:2], jnp.array([0, 0])), gen(z[:2], jnp.array([0, 1]))
  np.testing.assert_array_equal(relabelled[0], same[0])
  assert not np.allclose(relabelled[1], same[1], atol=1e-3)


def test_dcgan_config_errors_name_the_key():
  with pytest.raises(names.UnknownNameError,
                     match=r"model.upsample 'bilinear'\. Valid choices: resize, transpose\.$"):
    image_method("dcgan_digits", upsample="bilinear")
  with pytest.raises(ValueError, match="image_shape"):
    image_method("dcgan_digits", image_shape=())
  with pytest.raises(names.UnknownNameError, match=r"Did you mean 'spherical'\?"):
    image_method("dcgan_digits", interpolation="spherica")
