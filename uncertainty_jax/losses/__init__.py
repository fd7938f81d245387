"""Losses as pure functions of arrays: reconstruction (Lp, GDL) and adversarial (BCE) losses."""

from uncertainty_jax.losses.adversarial import (
    binary_cross_entropy_with_logits,
    combined_generator_loss,
    discriminator_bce_loss,
    generator_bce_loss,
)
from uncertainty_jax.losses.reconstruction import gradient_difference_loss, lp_loss

__all__ = [
    'binary_cross_entropy_with_logits',
    'combined_generator_loss',
    'discriminator_bce_loss',
    'generator_bce_loss',
    'gradient_difference_loss',
    'lp_loss',
]
