"""Pure ops and small Flax modules shared by the models."""

from uncertainty_jax.layers.conv import SubpixelConvTranspose
from uncertainty_jax.layers.conv import UpsampleConv
from uncertainty_jax.layers.conv import CONV_TRANSPOSE_METHODS
from uncertainty_jax.layers.conv import ValidConv
from uncertainty_jax.layers.conv import conv_transpose
from uncertainty_jax.layers.conv import same_conv2d
from uncertainty_jax.layers.conv import subpixel_conv_transpose
from uncertainty_jax.layers.conv import upsample_conv2d
from uncertainty_jax.layers.conv import valid_conv2d
from uncertainty_jax.layers.init import torch_uniform
from uncertainty_jax.layers.phase_pooling import PoolSpec
from uncertainty_jax.layers.phase_pooling import phase_pool
from uncertainty_jax.layers.phase_pooling import phase_unpool
from uncertainty_jax.layers.pyramid import downsample
from uncertainty_jax.layers.pyramid import image_pyramid
from uncertainty_jax.layers.pyramid import upsample2x

__all__ = ["CONV_TRANSPOSE_METHODS", "PoolSpec", "SubpixelConvTranspose", "UpsampleConv",
           "ValidConv", "conv_transpose", "downsample", "image_pyramid", "phase_pool",
           "phase_unpool", "same_conv2d", "subpixel_conv_transpose",
           "torch_uniform", "upsample2x", "upsample_conv2d", "valid_conv2d"]
