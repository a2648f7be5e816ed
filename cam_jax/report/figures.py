"""Figures: an overlay grid of images, lesion contours and each model's heat map."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def overlay_grid(images: np.ndarray, masks: np.ndarray, heatmaps: dict[str, np.ndarray],
                 ids: list[str], path: str) -> None:
  """Rows: images; columns: the image with its mask contour, then one heat-map overlay per model.

  ``images`` (N, H, W) in [0, 1], ``masks`` (N, H, W) bool, ``heatmaps[name]`` (N, H, W) in [0, 1].
  """
  n, cols = len(images), 1 + len(heatmaps)
  fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
  for i in range(n):
    panels = [('image + mask', None)] + [(name, h[i]) for name, h in heatmaps.items()]
    for j, (title, heat) in enumerate(panels):
      ax = axes[i, j]
      ax.imshow(images[i], cmap='gray', vmin=0, vmax=1)
      if heat is not None:
        ax.imshow(heat, cmap='jet', alpha=0.45, vmin=0, vmax=1)
      ax.contour(masks[i].astype(float), levels=[0.5], colors='white', linewidths=0.8)
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(title, fontsize=8)
    axes[i, 0].set_ylabel(ids[i], fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
