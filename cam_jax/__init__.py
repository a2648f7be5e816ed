"""cam_jax: train VGG / ResNet / ViT classifiers in JAX and score their Grad-CAM heat maps
against lesion masks on device (Qiu, Rivaz & Xiao, MLMI 2023)."""

from cam_jax.scoring.driver import ScoreResult, random_baseline, score

__all__ = ['ScoreResult', 'random_baseline', 'score']
