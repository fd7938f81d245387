"""Convolutions that compute the same function faster on XLA:CPU.

An unpadded ('VALID') stride-1 convolution can be computed several ways with identical results (up to
float summation order), and on XLA:CPU their speeds differ by up to 40x:

- `'valid'`: XLA's own unpadded convolution. Large ones run 2-2.5x slower than padded ones.
- `'pad_crop'`: a convolution with one pixel of zero padding, centre-cropped. For an odd kernel the
  VALID output is the centre crop of any symmetrically padded output; one pixel reaches XLA's fast
  padded kernels while computing fewer discarded border outputs than full 'SAME' padding.
- `'im2col'`: the patches of every output pixel gathered into a matrix, then one matrix product.
  Fastest for small feature maps, where XLA rewrites the input gradient of a convolution whose
  output is smaller than its kernel into a convolution running ~40x slower than the product.
  Its gradients are matrix products too, and the patches' gradient a sum of shifted copies.

Padded ('SAME') convolutions, `same_conv2d`, keep XLA's forward and input gradient; for some shapes
XLA's kernel gradient runs at half its forward rate, and one matrix product of the gathered patches
computes it faster (a custom VJP).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from uncertainty_jax.layers.init import torch_uniform

METHODS = ("auto", "valid", "same_crop", "pad_crop", "im2col")
_DIMS = ("NHWC", "HWIO", "NHWC")


def _padded_crop(x: jnp.ndarray, kernel: jnp.ndarray, pad: int) -> jnp.ndarray:
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), [(pad, pad), (pad, pad)],
                                   dimension_numbers=_DIMS)
  if pad == 0:
    return y
  return y[:, pad:-pad, pad:-pad, :]


def _same_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMS)


def _patches(x: jnp.ndarray, k: int) -> jnp.ndarray:
  """`[B, H, W, C] -> [B, H - k + 1, W - k + 1, k * k * C]`, in the order of a reshaped HWIO kernel."""
  ho, wo = x.shape[1] - k + 1, x.shape[2] - k + 1
  return jnp.concatenate([x[:, i:i + ho, j:j + wo, :] for i in range(k) for j in range(k)], axis=-1)


def _im2col_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  k = kernel.shape[0]
  return jnp.dot(_patches(x, k), kernel.reshape(-1, kernel.shape[-1]))


@jax.custom_vjp
def _same_im2col_grad(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  return _same_conv(x, kernel)


def _sig_fwd(x, kernel):
  return _same_im2col_grad(x, kernel), (x, kernel)


def _sig_bwd(residuals, dy):
  x, kernel = residuals
  r = (kernel.shape[0] - 1) // 2
  _, x_vjp = jax.vjp(lambda v: _same_conv(v, kernel), x)
  (dx,) = x_vjp(dy)
  cols = _patches(jnp.pad(x, [(0, 0), (r, r), (r, r), (0, 0)]), kernel.shape[0])
  d_kernel = jnp.einsum("bhwp,bhwo->po", cols, dy).reshape(kernel.shape)
  return dx, d_kernel


_same_im2col_grad.defvjp(_sig_fwd, _sig_bwd)

SAME_METHODS = ("auto", "xla", "im2col_grad")


def _on_cpu() -> bool:
  """The choices below were measured on XLA:CPU; accelerators get XLA's own convolutions."""
  return jax.default_backend() == "cpu"


def _auto_same_method(x_shape, kernel_shape) -> str:
  if not _on_cpu():
    return "xla"
  # XLA:CPU's kernel gradient ran at about half its forward rate for 256 -> 512 channels on 32x32
  # maps (batch 8); the patch matrix product was 1.8x faster there, and slower at 64 -> 128.
  large = x_shape[1] * x_shape[2] >= 1024 and kernel_shape[0] > 1 and kernel_shape[-2] >= 256
  if large and kernel_shape[-1] > kernel_shape[-2]:
    return "im2col_grad"
  return "xla"


def _check_conv_args(kernel: jnp.ndarray, method: str, methods: tuple[str, ...]) -> int:
  """Validates a method name and a square odd kernel; returns the kernel size."""
  if method not in methods:
    raise ValueError(f"method: unknown method {method!r}; valid: {list(methods)}")
  k = kernel.shape[0]
  if kernel.shape[1] != k or k % 2 != 1:
    raise ValueError(f"kernel: spatial shape {kernel.shape[:2]} is not square with an odd size")
  return k


def same_conv2d(x: jnp.ndarray, kernel: jnp.ndarray, method: str = "auto") -> jnp.ndarray:
  """A zero-padded ('SAME') stride-1 2-D convolution with an odd kernel.

  Args:
    x: `[B, H, W, C]`.
    kernel: `[k, k, C, O]`, k odd.
    method: one of `SAME_METHODS`: 'xla' differentiates XLA's convolution, 'im2col_grad' computes
      the kernel gradient as one matrix product of gathered patches; 'auto' picks per shape.

  Returns:
    `[B, H, W, O]`.
  """
  _check_conv_args(kernel, method, SAME_METHODS)
  if method == "auto":
    method = _auto_same_method(x.shape, kernel.shape)
  if method == "xla":
    return _same_conv(x, kernel)
  return _same_im2col_grad(x, kernel)


def same_conv_general_dilated(method: str, lhs, rhs, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                              precision=None, **unused):
  """`lax.conv_general_dilated`'s signature for `nn.Conv(padding='SAME')`, via `same_conv2d`.

  Pass `functools.partial(same_conv_general_dilated, method)` as `nn.Conv.conv_general_dilated`;
  the module's parameters are unchanged.
  """
  del lhs_dilation, rhs_dilation, dimension_numbers, precision, unused
  k = rhs.shape[0]
  same = ((k - 1) // 2,) * 2
  if tuple(window_strides) != (1, 1) or feature_group_count != 1:
    raise ValueError(f"same_conv_general_dilated: strides {window_strides} and feature groups "
                     f"{feature_group_count} are not supported; only 1")
  if padding != "SAME" and tuple(map(tuple, padding)) != (same, same):
    raise ValueError(f"same_conv_general_dilated: padding {padding!r} is not supported; only SAME")
  return same_conv2d(lhs, rhs, method)


def valid_conv2d(x: jnp.ndarray, kernel: jnp.ndarray, method: str = "auto") -> jnp.ndarray:
  """An unpadded stride-1 2-D convolution (cross-correlation, as `lax.conv_general_dilated`).

  Args:
    x: `[B, H, W, C]`.
    kernel: `[k, k, C, O]` with k odd and at most H, W.
    method: one of `METHODS`; all compute the same function, 'auto' picks the fastest measured.

  Returns:
    `[B, H - k + 1, W - k + 1, O]`.
  """
  k = _check_conv_args(kernel, method, METHODS)
  if method == "valid":
    return _padded_crop(x, kernel, 0)
  if method == "same_crop":
    return _padded_crop(x, kernel, (k - 1) // 2)
  if method == "pad_crop":
    return _padded_crop(x, kernel, min(1, (k - 1) // 2))
  if method == "auto" and not _on_cpu():
    return _padded_crop(x, kernel, 0)
  # 'auto' and 'im2col': on the chapter-4 discriminators (batch 8, 2-core Zen 4) the gathered
  # patches made the whole train step fastest, against every other method and per-size mixtures.
  return _im2col_conv(x, kernel)


def _conv_general_dilated(method: str, lhs, rhs, window_strides, padding, lhs_dilation=None,
                          rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                          precision=None, **unused):
  """`lax.conv_general_dilated`'s signature for `nn.Conv`, restricted to what ValidConv asks."""
  del lhs_dilation, rhs_dilation, dimension_numbers, precision, unused
  if tuple(window_strides) != (1, 1) or feature_group_count != 1:
    raise ValueError(f"ValidConv: strides {window_strides} and feature groups "
                     f"{feature_group_count} are not supported; only 1")
  if padding != "VALID" and tuple(map(tuple, padding)) != ((0, 0), (0, 0)):
    raise ValueError(f"ValidConv: padding {padding!r} is not supported; only 'VALID'")
  return valid_conv2d(lhs, rhs, method)


class ValidConv(nn.Module):
  """An unpadded ('VALID') stride-1 convolution computed by `valid_conv2d`.

  Parameters have the shapes and names of `nn.Conv` (under a submodule 'conv'), so the module is a
  drop-in replacement for `nn.Conv(features, (k, k), padding='VALID')`.

  Attributes:
    features: output channels.
    kernel_size: odd square kernel size.
    method: how `valid_conv2d` computes it; every method gives the same function.
  """

  features: int
  kernel_size: int
  dtype: Any = jnp.float32
  method: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, H - k + 1, W - k + 1, features]`."""
    k = self.kernel_size
    if k % 2 != 1:
      raise ValueError(f"ValidConv: kernel_size must be odd, got {k}")
    if x.shape[-3] < k or x.shape[-2] < k:
      raise ValueError(f"ValidConv: input {x.shape[-3]}x{x.shape[-2]} is smaller than kernel {k}")
    if self.method not in METHODS:
      raise ValueError(f"method: unknown method {self.method!r}; valid: {list(METHODS)}")
    return nn.Conv(self.features, (k, k), padding="VALID", dtype=self.dtype,
                   kernel_init=torch_uniform, name="conv",
                   conv_general_dilated=functools.partial(_conv_general_dilated, self.method))(x)


def _transpose_phase_taps(k: int, s: int) -> tuple[Any, int, int]:
  """For a 'SAME' transposed convolution of kernel `k` and stride `s` along one axis: output
  `s * m + p` is the sum over input offsets `d` of `x[m + d] * kernel[taps[d - lo, p]]`, the tap
  `k` meaning none (a zero weight). Returns `(taps [hi - lo + 1, s], lo, hi)`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  # lax.conv_transpose's 'SAME' padding of the stride-dilated input, on the low side.
  pad_low = k - 1 if s > k - 1 else -(-(k + s - 2) // 2)
  offsets = {(p, t): (p + t - pad_low) // s for p in range(s) for t in range(k)
             if (p + t - pad_low) % s == 0}
  lo, hi = min(offsets.values()), max(offsets.values())
  taps = np.full((hi - lo + 1, s), k)
  for (p, t), d in offsets.items():
    taps[d - lo, p] = t
  return taps, lo, hi


def subpixel_conv_transpose(x: jnp.ndarray, kernel: jnp.ndarray, stride: int) -> jnp.ndarray:
  """`lax.conv_transpose(x, kernel, (stride, stride), 'SAME')` (NHWC, HWIO), computed as one
  stride-1 convolution to `stride**2` phases of the output, interleaved (the sub-pixel form).

  XLA:CPU computes the gradients of a fractionally strided convolution through the dilated input,
  most of whose entries are zeros; the sub-pixel form convolves the input itself, and its forward
  pass and gradients run several times faster for the decoders here. The result is the same
  function (up to float summation order).

  Args:
    x: `[B, H, W, C_in]`.
    kernel: `[k, k, C_in, C_out]`, as `nn.ConvTranspose` stores it (not flipped).
    stride: the stride `s` of both spatial axes.

  Returns:
    `[B, s * H, s * W, C_out]`.
  """
  k, k2, c_in, c_out = kernel.shape
  if k != k2:
    raise ValueError(f"subpixel_conv_transpose: kernel {kernel.shape} is not square")
  if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
    raise ValueError(f"subpixel_conv_transpose: stride {stride!r} is not a positive integer")
  taps, lo, hi = _transpose_phase_taps(k, stride)
  width = hi - lo + 1
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  # [width, width, s, s, C_in, C_out]: the weight of offset (dh, dw) for output phase (p, q).
  sub = padded[taps[:, None, :, None], taps[None, :, None, :]]
  sub = sub.transpose(0, 1, 4, 2, 3, 5).reshape(width, width, c_in, stride * stride * c_out)
  y = jax.lax.conv_general_dilated(x, sub, (1, 1), [(-lo, hi), (-lo, hi)],
                                   dimension_numbers=_DIMS)
  b, h, w, _ = y.shape
  y = y.reshape(b, h, w, stride, stride, c_out).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, h * stride, w * stride, c_out)


def _kernel_op(module: nn.Module, x: jnp.ndarray, op) -> jnp.ndarray:
  """`op(x, kernel)` plus a bias, with `nn.Conv`'s parameters ('kernel' `[k, k, C, features]`,
  'bias' `[features]`), for a module with `features`, `kernel_size`, `use_bias`, `kernel_init`."""
  k = module.kernel_size
  kernel = module.param("kernel", module.kernel_init, (k, k, x.shape[-1], module.features))
  y = op(x, kernel)
  if module.use_bias:
    y = y + module.param("bias", nn.initializers.zeros, (module.features,))
  return y


class SubpixelConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, (k, k), strides=(s, s), padding='SAME')` computed by
  `subpixel_conv_transpose`: the same parameters ('kernel' `[k, k, C_in, features]`, 'bias') and
  the same function.

  Attributes:
    features: output channels.
    kernel_size: square kernel size `k`.
    stride: the stride `s` of both axes (the output is `s` times larger).
    use_bias: add a bias.
    kernel_init: initializer of the kernel.
  """

  features: int
  kernel_size: int
  stride: int
  use_bias: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, s * H, s * W, features]`."""
    return _kernel_op(self, x, lambda v, kernel: subpixel_conv_transpose(v, kernel, self.stride))


CONV_TRANSPOSE_METHODS = ("subpixel", "flax")


def conv_transpose(features: int, kernel_size: int, stride: int, method: str, *, use_bias: bool,
                   kernel_init: Any, name: str | None = None) -> nn.Module:
  """`nn.ConvTranspose(features, (k, k), strides=(s, s), padding='SAME')` as a module computed
  by `method`: 'subpixel' (`SubpixelConvTranspose`) or 'flax' (`nn.ConvTranspose`), the same
  function and parameters, so a seed initialises the same weights under either."""
  if method not in CONV_TRANSPOSE_METHODS:
    raise ValueError(f"deconv: unknown method {method!r}; valid: {list(CONV_TRANSPOSE_METHODS)}")
  if method == "flax":
    return nn.ConvTranspose(features, (kernel_size, kernel_size), strides=(stride, stride),
                            padding="SAME", use_bias=use_bias, kernel_init=kernel_init, name=name)
  return SubpixelConvTranspose(features, kernel_size, stride, use_bias=use_bias,
                               kernel_init=kernel_init, name=name)


UPSAMPLE_METHODS = ("auto", "xla", "phases", "matmul")


def _upsample_phase_taps(k: int, a: int) -> tuple[int, int, Any]:
  """Nearest x2 upsampling then a 'SAME' convolution of odd size `k`, along one axis: output
  `2 m + a` is the sum over input offsets `d` in `[lo, hi]` of `x[m + d]` times the sum of the
  taps that `taps[d - lo]` selects. Returns `(lo, hi, taps [hi - lo + 1, k] of 0/1)`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  r = (k - 1) // 2
  offsets = [(a + t) // 2 for t in range(-r, r + 1)]
  lo, hi = min(offsets), max(offsets)
  taps = np.zeros((hi - lo + 1, k), np.float32)
  for t, d in enumerate(offsets):
    taps[d - lo, t] = 1.0
  return lo, hi, taps


def _upsample_phase_kernels(kernel: jnp.ndarray) -> dict:
  """`{(a, b): (padding, phase kernel)}`: the kernel each output phase applies to the input."""
  k = kernel.shape[0]
  out = {}
  for a in (0, 1):
    for b in (0, 1):
      lo_a, hi_a, taps_a = _upsample_phase_taps(k, a)
      lo_b, hi_b, taps_b = _upsample_phase_taps(k, b)
      phase = jnp.einsum("uk,vl,klio->uvio", taps_a, taps_b, kernel)
      out[a, b] = ([(-lo_a, hi_a), (-lo_b, hi_b)], phase)
  return out


def _interleave_phases(phases: dict) -> jnp.ndarray:
  """`{(a, b): [B, H, W, C]}` -> `[B, 2H, 2W, C]`, `out[:, 2i + a, 2j + b] = phases[a, b][:, i, j]`."""
  rows = [jnp.stack([phases[a, 0], phases[a, 1]], axis=3) for a in (0, 1)]  # [B, H, W, 2, C]
  y = jnp.stack(rows, axis=2)  # [B, H, 2, W, 2, C]
  b, h, _, w, _, c = y.shape
  return y.reshape(b, 2 * h, 2 * w, c)


def _upsample_conv_matmul(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """All four phases from one matrix product: the `n x n` patches of `x` padded by the farthest
  reach of either phase, against the phase kernels side by side; each phase reads its own window."""
  phases = _upsample_phase_kernels(kernel)
  # The farthest any phase reaches beyond the input, on either side (rows and columns alike).
  pad = max(max(phases[0, 0][0][0]), max(phases[1, 1][0][0]))
  n = phases[0, 0][1].shape[0]
  b, h, w, _ = x.shape
  c_out = kernel.shape[-1]
  xp = jnp.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  ho, wo = h + 2 * pad - n + 1, w + 2 * pad - n + 1
  cols = jnp.concatenate([xp[:, i:i + ho, j:j + wo, :] for i in range(n) for j in range(n)], -1)
  weights = jnp.concatenate([phases[a, c][1].reshape(-1, c_out) for a in (0, 1) for c in (0, 1)],
                            axis=-1)
  y = jnp.dot(cols, weights).reshape(b, ho, wo, 4, c_out)
  out = {}
  for a in (0, 1):
    for c in (0, 1):
      (low_h, _), (low_w, _) = phases[a, c][0]
      # Patch i of the padded grid starts at input row i - pad; phase (a, c) at row m starts at
      # m - low_h: patch m + pad - low_h.
      oh, ow = pad - low_h, pad - low_w
      out[a, c] = y[:, oh:oh + h, ow:ow + w, 2 * a + c]
  return _interleave_phases(out)


def upsample_conv2d(x: jnp.ndarray, kernel: jnp.ndarray, method: str = "auto") -> jnp.ndarray:
  """Nearest-neighbour x2 upsampling followed by a zero-padded ('SAME') stride-1 convolution.

  The pair is one linear map of the low-resolution input: output pixel `(2i + a, 2j + b)` sees,
  through the upsampling, only `(k + 1) / 2` input rows and columns around `(i, j)`, and its weights
  are sums of the kernel's taps. 'phases' computes each of the four output phases as a small
  'VALID' convolution of the input itself (a 3x3 kernel becomes four 2x2 ones: 16 taps per input
  pixel against 36 on the upsampled map, 2.25x fewer multiply-adds); 'matmul' gathers the input's
  patches once and computes all four phases in one matrix product (each on a grid one pixel larger
  than the input, whose border it discards);
  'xla' upsamples and convolves as written. All give the same function, up to float summation
  order; the parameters are the one `[k, k, C, O]` kernel either way.

  Args:
    x: `[B, H, W, C]`.
    kernel: `[k, k, C, O]`, k odd.
    method: one of `UPSAMPLE_METHODS`; 'auto' picks by backend and size ('xla' on accelerators).

  Returns:
    `[B, 2H, 2W, O]`.
  """
  _check_conv_args(kernel, method, UPSAMPLE_METHODS)
  if method == "auto":
    if not _on_cpu():
      method = "xla"
    else:
      # 2-core Zen 4, batch 64, 3x3 kernels, forward and both gradients, inputs 8x8 to 32x32 with
      # 1 to 128 output channels: one matrix product was fastest from 16x16 inputs with 32 or more
      # output channels (1.3-1.5x the four convolutions), the four convolutions elsewhere; both
      # 2-4x faster than upsampling first.
      large = x.shape[1] * x.shape[2] >= 256 and kernel.shape[-1] >= 32
      method = "matmul" if large else "phases"
  if method == "xla":
    return _same_conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), kernel)
  if method == "matmul":
    return _upsample_conv_matmul(x, kernel)
  return _interleave_phases({
      phase: jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=_DIMS)
      for phase, (padding, k) in _upsample_phase_kernels(kernel).items()})


class UpsampleConv(nn.Module):
  """`nn.Conv(features, (k, k), padding='SAME')` applied to the input upsampled x2 by nearest
  neighbour, computed by `upsample_conv2d`: the same parameters ('kernel' `[k, k, C, features]`,
  'bias') and the same function.

  Attributes:
    features: output channels.
    kernel_size: odd square kernel size `k`.
    method: how `upsample_conv2d` computes it.
    use_bias: add a bias.
    kernel_init: initializer of the kernel.
  """

  features: int
  kernel_size: int = 3
  method: str = "auto"
  use_bias: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, 2H, 2W, features]`."""
    if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or (
        self.kernel_size < 1 or self.kernel_size % 2 != 1):
      raise ValueError(f"UpsampleConv: kernel_size {self.kernel_size!r} is not a positive odd "
                       f"integer")
    return _kernel_op(self, x, lambda v, kernel: upsample_conv2d(v, kernel, self.method))
