"""cam_jax: train VGG / ResNet / ViT classifiers in JAX and score their Grad-CAM heat maps
against lesion masks on device (Qiu, Rivaz & Xiao, MLMI 2023).

``cam_jax.score``, ``cam_jax.random_baseline`` and ``cam_jax.ScoreResult`` come from
``cam_jax.scoring.driver``, imported on first use: ``import cam_jax`` alone loads neither grain,
orbax, pandas nor tqdm.
"""

import importlib

__all__ = ['ScoreResult', 'random_baseline', 'score']


def __getattr__(name: str):
  if name in __all__:
    return getattr(importlib.import_module('cam_jax.scoring.driver'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
