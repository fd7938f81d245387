"""Losses as pure functions of arrays: reconstruction (Lp, GDL), adversarial (BCE) and energy-based
(EBGAN margin losses, pulling-away term) losses, the Gaussian KL of chapter 5, and the Ladder
Network's denoising and masked supervised costs (chapter 6, EBGAN-LN)."""

from uncertainty_jax.losses.adversarial import (
    binary_cross_entropy_with_logits,
    combined_generator_loss,
    discriminator_bce_loss,
    generator_bce_loss,
)
from uncertainty_jax.losses.energy import (
    autoencoder_energy,
    ebgan_discriminator_loss,
    ebgan_generator_loss,
    pulling_away_term,
)
from uncertainty_jax.losses.ladder import (
    denoising_cost,
    denoising_cost_per_sample,
    ladder_energy,
    masked_cross_entropy,
)
from uncertainty_jax.losses.reconstruction import gradient_difference_loss, lp_loss
from uncertainty_jax.losses.vae import gaussian_kl, squared_error

__all__ = [
    'autoencoder_energy',
    'binary_cross_entropy_with_logits',
    'combined_generator_loss',
    'denoising_cost',
    'denoising_cost_per_sample',
    'discriminator_bce_loss',
    'ebgan_discriminator_loss',
    'ebgan_generator_loss',
    'gaussian_kl',
    'generator_bce_loss',
    'gradient_difference_loss',
    'ladder_energy',
    'lp_loss',
    'masked_cross_entropy',
    'pulling_away_term',
    'squared_error',
]
