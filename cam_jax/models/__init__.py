"""Model zoo: VGG, ResNet and ViT in Flax NNX, created by name."""

from cam_jax.models.registry import (
                                     COMPUTE_DTYPES,
                                     FAMILIES,
                                     cam_layers,
                                     check_name,
                                     compute_dtype,
                                     create,
                                     default_cam_layer,
                                     depth,
                                     family,
                                     names,
                                     parameter_blocks,
                                     resolve_layer,
)
from cam_jax.models.taps import Taps

__all__ = ['COMPUTE_DTYPES', 'FAMILIES', 'cam_layers', 'check_name', 'compute_dtype', 'create',
           'default_cam_layer', 'depth', 'family', 'names', 'parameter_blocks', 'resolve_layer',
           'Taps']
