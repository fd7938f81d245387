"""One module per system of the thesis."""

from uncertainty_jax.models.video_pred import ARCHITECTURES as VIDEO_PRED_ARCHITECTURES
from uncertainty_jax.models.video_pred import MultiScaleDiscriminator
from uncertainty_jax.models.video_pred import MultiScaleGenerator
from uncertainty_jax.models.video_pred import architecture as video_pred_architecture

__all__ = ["MultiScaleDiscriminator", "MultiScaleGenerator", "VIDEO_PRED_ARCHITECTURES",
           "video_pred_architecture"]
