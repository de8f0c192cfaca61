"""Autoregressive convolutional networks over images in raster order: PixelCNN and Gated PixelCNN.

Both map images `x [batch, h, w, c]` to `[batch, h, w, out_features]` float32 such that the
output at pixel (i, j) depends only on the input pixels strictly before (i, j) in raster order
(rows top to bottom, each row left to right): the rows above, and the pixels to the left in row
i. All c input channels of a position count as that position (a caller that models colour
channels one after another interleaves them into columns first), so the output at (i, j) can
parameterise p(x_ij | x_<ij) and the product over pixels is a normalised likelihood.

Masks. A k x k convolution centred on (i, j) reads the taps (i + a, j + b), |a|, |b| <= k // 2.
The causal mask keeps the taps above the centre row, and those left of the centre in its row:

    type A (3x3)   type B (3x3)
      1 1 1          1 1 1
      1 0 0          1 1 0
      0 0 0          0 0 0

Type A also masks the centre: the first layer reads the input, and pixel (i, j) must not see
itself. Type B keeps it: later layers read features that at (i, j) already describe only pixels
before (i, j). The kernel parameter is multiplied by the constant 0/1 mask in every call, so a
masked tap has an exactly zero gradient and stays zero whatever the optimiser does.

The blind spot (van den Oord et al. 2016b, Sec. 2.2, Fig. 1). In a stack of masked convolutions
the taps of a type B 3x3 kernel go up one row and at most one column right: (-1, +1) is the
only tap that moves right, and it also moves up. A path through the stack therefore gains at
most one column to the right per row it climbs, and the pixels above-right of that 45-degree
cone are never read, however deep the stack: with a 7x7 type A first layer the output at (i, j)
is blind to (i - p, j + q), p >= 1, whenever q > p + 2 (with an n x n first layer, whenever
q > p + n // 2 - 1), which for (4, 1) in an 8x8 image includes (3, 5) and (2, 6).

Gated PixelCNN removes it by splitting the receptive field into two stacks (van den Oord et al.
2016b, Sec. 2.2, Fig. 2), implemented here by shifted convolutions rather than masks:

* the vertical stack reads the rows above and the current row, all columns of the kernel
  (a `(k // 2 + 1) x k` kernel padded only above): after l layers it covers a rectangle of
  rows i - R..i and columns j - R..j + R, R = first_kernel_size // 2 + l * (kernel_size // 2),
  which grows to the right as fast as to the left: no blind spot. It reads x_ij itself and the
  pixels right of it in row i, so it never reaches the output directly.
* the horizontal stack reads the pixels left of (i, j) in row i (a `1 x (k // 2 + 1)` kernel
  padded only on the left; the first layer shifts its input one column right, which masks the
  centre as type A does), plus, through a 1x1 convolution, the vertical stack's
  pre-activations shifted down one row, so that (i, j) receives the vertical stack of (i - 1, j):
  rows strictly above. The output head reads only the horizontal stack.

Each layer is gated (eq. 2 and 4): y = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h), where
V h is a learned per-class vector (an embedding of the label) added to both halves of both
stacks' pre-activations when the network is class-conditional. Shifted kernels do not spend
multiplies on masked taps: a gated layer costs a 2 x 3 and a 1 x 2 convolution (kernel size 3)
and two 1x1 convolutions. With 3 x 3 and 1 x 3 masked kernels instead, a forward and backward
pass of the default network ran about 20% slower on XLA:CPU (2 cores, batch [128, 8, 8, 1]), and
with the taps gathered into one matrix product per convolution (im2col) about 5% slower.

References:
  van den Oord, Kalchbrenner and Kavukcuoglu, "Pixel Recurrent Neural Networks", 2016a
    (PixelCNN: masks A and B, Sec. 3.4 and 3.5; residual connections, Fig. 5).
  van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves and Kavukcuoglu, "Conditional Image
    Generation with PixelCNN Decoders", 2016b (the blind spot; vertical and horizontal stacks,
    Fig. 2; gated activation units, eq. 2; class conditioning, eq. 4).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import SettingError
from gen_jax.types import Array

Dtype = Any


def causal_mask(kernel_size: int, include_centre: bool) -> np.ndarray:
  """The `[kernel_size, kernel_size]` float32 0/1 mask of a masked convolution (van den Oord et
  al. 2016a, Sec. 3.4): ones above the centre row and left of the centre in its row; the centre
  is one for type B (`include_centre`) and zero for type A."""
  centre = kernel_size // 2
  mask = np.zeros((kernel_size, kernel_size), np.float32)
  mask[:centre] = 1.0
  mask[centre, :centre] = 1.0
  mask[centre, centre] = float(include_centre)
  return mask


def _check_kernel(name: str, size: int, minimum: int) -> None:
  if size % 2 == 0 or size < minimum:
    raise SettingError(f"{name}={size}: must be odd and at least {minimum}, so that the kernel is "
                     f"centred on the predicted pixel; use {max(minimum, size + 1)}.")


def _check_inputs(module: str, x: Array, num_classes: int, labels: Array | None) -> None:
  if x.ndim != 4:
    raise ValueError(f"{module} takes images x [batch, h, w, c], got shape {x.shape} (rank "
                     f"{x.ndim}); add the channel axis (x[..., None]) or the batch axis.")
  if num_classes > 0:
    if labels is None or labels.shape != (x.shape[0],):
      raise ValueError(f"this {module} is class-conditional (num_classes={num_classes}): pass "
                       f"int labels of shape [batch] = ({x.shape[0]},), got "
                       f"{None if labels is None else labels.shape}.")
  elif labels is not None:
    raise ValueError(f"labels were given to an unconditional {module}; set num_classes > 0.")


def _pointwise(x: Array, dense: nn.Dense) -> Array:
  """A 1x1 convolution: `dense` applied to `x` `[..., c]` as one `[rows, c]` matrix (the faster
  form on XLA's CPU backend, see `gen_jax.nn.transformer._dense`)."""
  return dense(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], dense.features)


def _gate(a: Array) -> Array:
  """tanh(first half) * sigmoid(second half) over the channels (eq. 2 of van den Oord et al.
  2016b): `[..., 2f]` -> `[..., f]`."""
  f, g = jnp.split(a, 2, axis=-1)
  return jnp.tanh(f) * nn.sigmoid(g)


def _shift_down(x: Array) -> Array:
  """`x [batch, h, w, c]` moved down one row, zeros in row 0: row i holds row i - 1."""
  return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def _shift_right(x: Array) -> Array:
  """`x [batch, h, w, c]` moved right one column, zeros in column 0."""
  return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


def _head(h: Array, features: int, out_features: int, dtype: Dtype, param_dtype: Dtype) -> Array:
  """ReLU, 1x1 conv to `features`, ReLU, 1x1 conv to `out_features`, zero-initialised so that a
  new network predicts the same distribution everywhere (whatever zero logits or parameters
  mean to the caller). Returns float32."""
  h = nn.relu(_pointwise(nn.relu(h), nn.Dense(features, dtype=dtype, param_dtype=param_dtype,
                                               name="head_hidden")))
  out = _pointwise(h, nn.Dense(out_features, dtype=dtype, param_dtype=param_dtype,
                               kernel_init=nn.initializers.zeros, name="head_out"))
  return out.astype(jnp.float32)


class PixelCNN(nn.Module):
  """The masked-convolution PixelCNN of van den Oord et al. 2016a (Sec. 3.5), with its blind spot.

  A `first_kernel_size` type A masked convolution to `features` channels, then `num_layers`
  residual blocks h <- h + conv_B(relu(h)) with `kernel_size` type B masked convolutions, then
  the head relu -> 1x1 (features) -> relu -> 1x1 (out_features, zero-initialised). The output at
  (i, j) reads only pixels before (i, j) in raster order, but not all of them (module docstring).

  Attributes:
    out_features: outputs per position (the caller reshapes them into per-pixel distribution
      parameters).
    features: channels of the hidden layers.
    num_layers: type B residual blocks after the first layer.
    kernel_size: odd; of the type B convolutions.
    first_kernel_size: odd, at least 3; of the type A convolution.
    num_classes: > 0 makes the network class-conditional: `labels` are required and a learned
      embedding of them is added as a per-channel bias after every masked convolution. Label
      `num_classes` (a conditioning's null label, for classifier-free guidance) has its own row.
    dropout_rate: dropout on each residual branch (during training).
    dtype: computation dtype; parameters are `param_dtype`; the output is float32.
  """

  out_features: int
  features: int = 64
  num_layers: int = 6
  kernel_size: int = 3
  first_kernel_size: int = 7
  num_classes: int = 0
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """x `[batch, h, w, c]` float, labels `[batch]` int (when num_classes > 0) ->
    `[batch, h, w, out_features]` float32. Dropout, when not `deterministic`, takes the
    "dropout" rng."""
    _check_kernel("kernel_size", self.kernel_size, 1)
    _check_kernel("first_kernel_size", self.first_kernel_size, 3)
    _check_inputs("PixelCNN", x, self.num_classes, labels)

    def masked_conv(h, size, include_centre, name):
      mask = causal_mask(size, include_centre)[:, :, None, None]
      mask = np.broadcast_to(mask, (size, size, h.shape[-1], self.features))
      return nn.Conv(self.features, (size, size), padding="SAME", mask=mask, dtype=self.dtype,
                     param_dtype=self.param_dtype, name=name)(h)

    def label_bias(name):
      if self.num_classes == 0:
        return 0.0
      embed = nn.Embed(self.num_classes + 1, self.features, dtype=self.dtype,
                       param_dtype=self.param_dtype, name=name)
      return embed(labels)[:, None, None, :]

    h = masked_conv(x.astype(self.dtype), self.first_kernel_size, False, "conv_a")
    h = h + label_bias("label_embed_a")
    for layer in range(self.num_layers):
      branch = masked_conv(nn.relu(h), self.kernel_size, True, f"conv_b_{layer}")
      branch = nn.Dropout(self.dropout_rate)(branch, deterministic=deterministic)
      h = h + branch + label_bias(f"label_embed_b_{layer}")
    return _head(h, self.features, self.out_features, self.dtype, self.param_dtype)


class GatedPixelCNN(nn.Module):
  """The gated PixelCNN of van den Oord et al. 2016b (Fig. 2, eq. 2 and 4), without blind spot.

  Layer 0 reads the image: the vertical stack with a `(r0 + 1) x first_kernel_size` kernel
  (r0 = first_kernel_size // 2; rows i - r0..i), the horizontal stack with a `1 x r0` kernel over
  the image shifted one column right (columns j - r0..j - 1), each to 2 * features
  pre-activations that are gated to `features` channels. Each of the `num_layers` gated layers
  after it, with r = kernel_size // 2:

      v_pre = conv_{(r+1) x k}(v) [+ embed_v(label)]           # [batch, h, w, 2 features]
      v     = gate(v_pre)
      h_pre = conv_{1 x (r+1)}(h) + 1x1(shift_down(v_pre)) [+ embed_h(label)]
      h     = h + 1x1(gate(h_pre))                              # residual (Fig. 2)

  (layer 0 has the same vertical-to-horizontal link, and no residual). The head reads h:
  relu -> 1x1 (features) -> relu -> 1x1 (out_features, zero-initialised). After layer l the
  output at (i, j) reads exactly the rows i - 1 - R..i - 1 over columns j - R..j + R, and columns
  j - R..j - 1 of row i, with R = r0 + l * r (module docstring): every pixel before (i, j) of an
  h x w image once R >= max(h, w) - 1.

  Attributes:
    out_features: outputs per position (the caller reshapes them into per-pixel distribution
      parameters).
    features: channels of each stack.
    num_layers: gated layers after the first.
    kernel_size: odd; of the gated layers.
    first_kernel_size: odd, at least 3; of the first layer.
    num_classes: > 0 makes the network class-conditional: `labels` are required and a learned
      per-layer embedding of them is added inside every gate of both stacks (the V h of eq. 4).
      Label `num_classes` (a conditioning's null label) has its own row.
    dropout_rate: dropout on the gated horizontal output before its residual 1x1 convolution
      (during training), where PixelCNN++'s gated residual blocks drop (Salimans et al. 2017).
    dtype: computation dtype; parameters are `param_dtype`; the output is float32.
  """

  out_features: int
  features: int = 64
  num_layers: int = 6
  kernel_size: int = 3
  first_kernel_size: int = 7
  num_classes: int = 0
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """x `[batch, h, w, c]` float, labels `[batch]` int (when num_classes > 0) ->
    `[batch, h, w, out_features]` float32. Dropout, when not `deterministic`, takes the
    "dropout" rng."""
    _check_kernel("kernel_size", self.kernel_size, 1)
    _check_kernel("first_kernel_size", self.first_kernel_size, 3)
    _check_inputs("GatedPixelCNN", x, self.num_classes, labels)
    width = 2 * self.features
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def vertical_conv(v, size, name):
      # Rows i - r..i (padded above only), columns j - r..j + r.
      r = size // 2
      return nn.Conv(width, (r + 1, size), padding=((r, 0), (r, r)), name=name, **kw)(v)

    def horizontal_conv(h, taps, name):
      # Columns j - taps + 1..j of row i (padded on the left only).
      return nn.Conv(width, (1, taps), padding=((0, 0), (taps - 1, 0)), name=name, **kw)(h)

    def label_biases(name):
      if self.num_classes == 0:
        return 0.0, 0.0
      embed = nn.Embed(self.num_classes + 1, 2 * width, name=name, **kw)(labels)[:, None, None, :]
      return jnp.split(embed, 2, axis=-1)

    def link(v_pre, name):
      # Row i of the horizontal stack receives row i - 1 of the vertical one: rows above only.
      return _pointwise(_shift_down(v_pre), nn.Dense(width, name=name, **kw))

    x = x.astype(self.dtype)
    r0 = self.first_kernel_size // 2
    bias_v, bias_h = label_biases("label_embed_0")
    v_pre = vertical_conv(x, self.first_kernel_size, "vertical_0") + bias_v
    # The one-column shift and a kernel of r0 taps ending at the (shifted) centre read columns
    # j - r0..j - 1 of the image: the type A mask.
    h_pre = horizontal_conv(_shift_right(x), r0, "horizontal_0")
    h = _gate(h_pre + link(v_pre, "link_0") + bias_h)
    for layer in range(1, self.num_layers + 1):
      bias_v, bias_h = label_biases(f"label_embed_{layer}")
      v_pre = vertical_conv(_gate(v_pre), self.kernel_size, f"vertical_{layer}") + bias_v
      h_pre = horizontal_conv(h, self.kernel_size // 2 + 1, f"horizontal_{layer}")
      gated = _gate(h_pre + link(v_pre, f"link_{layer}") + bias_h)
      gated = nn.Dropout(self.dropout_rate)(gated, deterministic=deterministic)
      h = h + _pointwise(gated, nn.Dense(self.features, name=f"residual_{layer}", **kw))
    return _head(h, self.features, self.out_features, self.dtype, self.param_dtype)
