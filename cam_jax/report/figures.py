"""Figures: overlays of heat maps on images with lesion contours, sanity-check curves,
deletion / insertion curves and metrics against depth."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cam_jax.analysis import statistics
from cam_jax.report import tables


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


def sanity_curves(sanity, path: str) -> None:
  """Mean SSIM and Spearman of original vs randomised maps per randomisation step, one line per
  model and mode (step 0: the model against itself; constant maps have Spearman 0, so that
  mean is below 1 when some maps are flagged; see ``scoring.sanity``)."""
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), squeeze=False)
  for ax, column in zip(axes[0], ('ssim', 'spearman')):
    for (model, mode), group in sanity.groupby(['model', 'mode'], sort=False):
      means = group.groupby('step', sort=True)[column].mean()
      ax.plot(means.index, means.to_numpy(), marker='o', markersize=3, label=f'{model} ({mode})')
    ax.axhline(0, color='grey', linewidth=0.6)
    ax.set_xlabel('blocks randomised (from the logits down)')
    ax.set_ylabel(f'mean {column}')
    ax.set_ylim(-0.5, 1.05)
  axes[0, 1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def metrics_by_depth(values, seeds, metrics: list[str], path: str) -> None:
  """One panel per metric: per family, the value at each depth with its hierarchical 95% CI
  (``analysis.depth.hierarchical_bootstrap`` rows) joined by a line, and each seed's own value
  as a small dot beside it (``seeds``: rows family, depth, seed, metric, value)."""
  fig, axes = plt.subplots(1, len(metrics), figsize=(3.1 * len(metrics), 3.1), squeeze=False)
  for ax, metric in zip(axes[0], metrics):
    for family, rows in values[values['metric'] == metric].groupby('family', sort=True):
      rows = rows.sort_values('depth')
      line = ax.errorbar(rows['depth'], rows['value'],
                         yerr=[rows['value'] - rows['low'], rows['high'] - rows['value']],
                         marker='o', capsize=3, label=family)[0]
      dots = seeds[(seeds['metric'] == metric) & (seeds['family'] == family)]
      ax.plot(dots['depth'] + 0.3, dots['value'], '.', color=line.get_color(), alpha=0.6,
              markersize=4)
    ax.set_title(tables.title(metric), fontsize=8)
    ax.set_xlabel('depth (weight layers)', fontsize=7)
    ax.set_ylabel('mean over images (seed mean)', fontsize=7)
    ax.tick_params(labelsize=7)
  axes[0, 0].legend(fontsize=7, title='family (dots: seeds)', title_fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def curve_steps(records) -> int:
  """Points of the deletion curve in ``records`` (columns deletion@0, deletion@1, ...), 0 when
  there are none or no image has them."""
  n = 0
  while f'deletion@{n}' in records and records[f'deletion@{n}'].notna().any():
    n += 1
  return n


def deletion_insertion_curves(records, path: str, *, n_resamples: int = 1000,
                              seed: int = 0) -> None:
  """Mean deletion and insertion curves (RISE, Petsiuk et al. 2018) per model, with
  percentile-bootstrap 95% bands over the images that have them (``records`` columns
  ``deletion@i``, ``insertion@i``: fraction i / n_steps of the pixels removed or inserted)."""
  n = curve_steps(records)
  fractions = np.arange(n) / (n - 1)
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), squeeze=False)
  for ax, curve in zip(axes[0], ('deletion', 'insertion')):
    for model, group in records.groupby('model', sort=False):
      points = group[[f'{curve}@{i}' for i in range(n)]].dropna().to_numpy()
      if not len(points):
        continue
      cis = np.array([statistics.bootstrap_ci(points[:, i], n_resamples=n_resamples, seed=seed)
                      for i in range(n)])
      line, = ax.plot(fractions, cis[:, 0], marker='o', markersize=3,
                      label=f'{model} (n = {len(points)})')
      ax.fill_between(fractions, cis[:, 1], cis[:, 2], color=line.get_color(), alpha=0.2)
    verb = 'removed' if curve == 'deletion' else 'inserted'
    ax.set_xlabel(f'fraction of pixels {verb}')
    ax.set_ylabel('probability of the explained finding')
    ax.set_title(curve, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
