"""uncertainty_jax: the systems of Mathieu, *Unsupervised Learning Under Uncertainty* (2017), in JAX.

Subpackages:
  layers      pure ops and small Flax modules (image pyramids, cropped convolutions).
  models      one module per system, and a name registry.
  losses      losses as functions of arrays.
  metrics     image-quality metrics (PSNR, SSIM, sharpness difference).
  data        embedded datasets, TensorFlow Datasets loaders, global-batch sharding.
  training    pair state, optimizers, sharding, train-step builders, the loop, checkpoints.
  evaluation  evaluators, sample grids and animations.
"""

__version__ = "0.1.0"
