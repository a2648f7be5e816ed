"""Synthetic chest-radiograph phantoms with exact pneumothorax masks (pure numpy).

A frontal (PA) chest X-ray is built additively in an "attenuation" domain on normalised
coordinates x, y in [-1, 1] (y points down; image left = patient right): a soft-tissue trunk,
spine, heart, clavicles, posterior ribs, abdomen below two diaphragm domes, and two air-filled
lungs (tapered ellipses cut by the domes) carrying vessel-like lines that radiate from the hilum
(zero crossings of noise band-passed in log-polar coordinates). A pneumothorax is a crescent
along the apical or lateral pleura of one lung in which the vessels are removed and extra air is
added, bounded on its inner side by a thin bright visceral pleural line. The lesion is the last
spatial step and changes exactly the pixels of its mask; only pixelwise noise, exposure and
gamma follow. Confounders (a chest-drain tube entering the pneumothorax-side lung from the
lateral wall, a corner marker) are drawn with label-dependent probabilities; ``tube_masks``
gives the tube's pixels. Image ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from cam_jax.core.errors import BadInput

# (name, low, high, count): uniform per-image draws, made for every image whatever its label.
# Per-lung entries (count 2) are indexed 0 = image-left lung. ptx_depth is the depth of the air
# band as a fraction of the lung's radius; lengths are in normalised units (image width = 2).
_UNIFORM = (
    ('mid', -0.04, 0.04, 1), ('body_w', 0.88, 0.97, 1), ('body_h', 1.15, 1.3, 1),
    ('body_y', 0.12, 0.25, 1), ('tissue', 0.45, 0.55, 1), ('spine_amp', 0.05, 0.09, 1),
    ('lung_cx', 0.42, 0.48, 2), ('lung_cy', -0.1, 0.0, 2), ('lung_a', 0.28, 0.33, 2),
    ('lung_b', 0.58, 0.7, 2), ('lung_taper', 0.15, 0.35, 2), ('dome_lvl', 0.8, 0.95, 2),
    ('dome_h', 0.2, 0.35, 2), ('lung_air', 0.26, 0.32, 1), ('abd_amp', 0.06, 0.12, 1),
    ('vessel_amp', 0.10, 0.16, 1), ('vessel_sig', 0.5, 0.9, 1),
    ('rib_y0', -0.86, -0.76, 1), ('rib_sp', 0.115, 0.135, 1), ('rib_curv', 0.9, 1.5, 1),
    ('rib_xp', 0.25, 0.4, 1), ('rib_w', 0.025, 0.035, 1), ('rib_amp', 0.06, 0.1, 1),
    ('rib_dz', -0.03, 0.03, 1), ('clav_y', -0.8, -0.7, 1),
    ('heart_x', 0.1, 0.18, 1), ('heart_y', 0.3, 0.42, 1), ('heart_a', 0.27, 0.33, 1),
    ('heart_b', 0.22, 0.28, 1), ('heart_amp', 0.12, 0.2, 1),
    ('ptx_theta', -0.35, 0.35, 1), ('ptx_arc', 0.5, 1.0, 1), ('ptx_depth', 0.16, 0.55, 1),
    ('ptx_air', 0.04, 0.07, 1), ('pleura_amp', 0.12, 0.2, 1),
    ('tube_y', -0.4, -0.15, 1), ('tube_end', 0.28, 0.42, 1), ('tube_curv', 0.9, 1.6, 1),
    ('marker_x', 0.04, 0.12, 1), ('marker_y', 0.04, 0.12, 1), ('marker_size', 0.07, 0.11, 1),
    ('gain', 0.85, 1.2, 1), ('bias', -0.05, 0.05, 1), ('gamma', 0.8, 1.25, 1),
)
_LO = np.concatenate([np.full(n, lo) for _, lo, _, n in _UNIFORM])
_HI = np.concatenate([np.full(n, hi) for _, _, hi, n in _UNIFORM])
_SPLIT = np.cumsum([n for *_, n in _UNIFORM])[:-1]
# 0/1 draws: lesion lung (0 = image left), site (0 apical, 1 lateral), marker corner
# (0 = top left), marker kind (0 = L, 1 = square).
_BINARY = ('ptx_side', 'ptx_site', 'marker_corner', 'marker_kind')
_RATES = ('positive_rate', 'tube_rate_pos', 'tube_rate_neg', 'marker_rate_pos', 'marker_rate_neg')


@dataclasses.dataclass(frozen=True)
class PhantomSpec:
  """Image size, label prevalence, confounder rates given the label, pixel noise, and the
  lesion's contrast (a factor on the pneumothorax's extra air and pleural line; 1 as drawn)."""

  image_size: int = 128
  positive_rate: float = 0.5
  tube_rate_pos: float = 0.0
  tube_rate_neg: float = 0.0
  marker_rate_pos: float = 0.0
  marker_rate_neg: float = 0.0
  noise: float = 0.02
  lesion_contrast: float = 1.0

  def __post_init__(self):
    if not isinstance(self.image_size, (int, np.integer)) or not 32 <= self.image_size <= 1024:
      raise BadInput(f'image_size must be an int in [32, 1024], got {self.image_size!r}')
    for name in _RATES:
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise BadInput(f'{name} must be in [0, 1], got {getattr(self, name)!r}')
    if not self.noise >= 0.0:
      raise BadInput(f'noise must be >= 0, got {self.noise!r}')
    if not 0.0 < self.lesion_contrast <= 10.0:
      raise BadInput(f'lesion_contrast must be in (0, 10], got {self.lesion_contrast!r}')


def sample_params(spec: PhantomSpec, seed: int, indices: np.ndarray) -> dict[str, np.ndarray]:
  """Per-image parameters; image ``i`` uses only ``np.random.default_rng([seed, i])``.

  Scalars are float32 (N,) (per-lung ones (N, 2)); 'label' int64, 'tube'/'marker' bool, the
  ``_BINARY`` choices int64, and white-noise fields 'texture_noise', 'pixel_noise' (N, H, W).
  """
  idx = np.asarray(indices, dtype=np.int64).reshape(-1)
  n, s = len(idx), spec.image_size
  u, vals = np.empty((n, 3)), np.empty((n, len(_LO)))
  bits, fields = np.empty((n, len(_BINARY)), np.int64), np.empty((n, 2, s, s), np.float32)
  for k, i in enumerate(idx):
    rng = np.random.default_rng([seed, int(i)])
    u[k], vals[k] = rng.random(3), rng.uniform(_LO, _HI)
    bits[k] = rng.integers(0, 2, len(_BINARY))
    fields[k] = rng.standard_normal((2, s, s), np.float32)
  label = (u[:, 0] < spec.positive_rate).astype(np.int64)
  params = {name: (v[:, 0] if v.shape[1] == 1 else v).astype(np.float32)
            for (name, *_), v in zip(_UNIFORM, np.split(vals, _SPLIT, axis=1))}
  params.update(zip(_BINARY, bits.T))
  params.update(
      label=label,
      tube=u[:, 1] < np.where(label == 1, spec.tube_rate_pos, spec.tube_rate_neg),
      marker=u[:, 2] < np.where(label == 1, spec.marker_rate_pos, spec.marker_rate_neg),
      texture_noise=fields[:, 0], pixel_noise=fields[:, 1])
  return params


def _grid(s: int):
  """(pixel size, x (1,1,s), y (1,s,1), half-width of thin lines: the pleural line and the
  tube): pixel-centre coordinates on [-1, 1] of an ``s`` x ``s`` image."""
  px = 2.0 / s
  c = ((np.arange(s) + 0.5) * px - 1).astype(np.float32)
  return px, c[None, None, :], c[None, :, None], max(1.2 * px, 0.012)


def _column(p: dict[str, np.ndarray], k: str, i: int | None = None) -> np.ndarray:
  """Parameter ``k`` (lung ``i`` of a per-lung one) as float32 (N, 1, 1)."""
  return (p[k] if i is None else p[k][:, i]).astype(np.float32)[:, None, None]


def _tube_profile(p: dict[str, np.ndarray], x, y, hw: float) -> np.ndarray:
  """(N,H,W) float32 in [0, 1]: the chest-drain tube's cross-section profile, whatever
  ``p['tube']`` says; a parabola from the lateral wall of the pneumothorax-side lung, ending
  ``tube_end`` from the midline, ``hw`` half wide; 0 off the tube."""
  bx = x - _column(p, 'mid')
  dx = np.where(p['ptx_side'] == 1, 1.0, -1.0).astype(np.float32)[:, None, None] * bx
  dx -= _column(p, 'tube_end')
  tc = _column(p, 'tube_curv')
  dist = np.abs(y - _column(p, 'tube_y') - tc * dx * dx) / np.sqrt(1 + (2 * tc * dx) ** 2)
  return (dx > 0) * np.clip(1 - (dist / hw) ** 2, 0, None)


def render(spec: PhantomSpec, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(images float32 (N,H,W) in [0,1], masks bool (N,H,W)); a deterministic function of params."""
  p = {k: np.asarray(v) for k, v in params.items()}
  s = spec.image_size
  if p['texture_noise'].shape[1:] != (s, s):
    raise BadInput(f'params are for size {p["texture_noise"].shape[1:]}, spec has {s}')
  px, x, y, hw = _grid(s)
  soft = max(0.02, px)  # edge softness

  f = functools.partial(_column, p)

  # Trunk (superellipse, thicker centre), spine, heart.
  bx = x - f('mid')
  ax = np.abs(bx)
  r = np.sqrt(np.sqrt((bx / f('body_w')) ** 4 + ((y - f('body_y')) / f('body_h')) ** 4))
  body = np.clip((1 - r) / 0.05, 0, 1)
  att = 0.03 + body * (f('tissue') * (0.7 + 0.3 * np.sqrt(np.clip(1 - r * r, 0, None)))
                       + f('spine_amp') * np.exp(-(bx / 0.07) ** 2))
  hr = ((bx - f('heart_x')) / f('heart_a')) ** 2 + ((y - f('heart_y')) / f('heart_b')) ** 2
  att += f('heart_amp') * np.clip((1 - hr) / 0.3, 0, 1)

  # Lungs, diaphragm/abdomen, and the pneumothorax geometry in the lesion lung.
  lung, abd, lesion = np.zeros_like(att), np.zeros_like(att), np.zeros_like(att)
  region, mask, hub = np.zeros(att.shape, bool), np.zeros(att.shape, bool), []
  for i, sgn in enumerate((-1.0, 1.0)):
    a, b = f('lung_a', i), f('lung_b', i)
    X, Y = (sgn * bx - f('lung_cx', i)) / a, (y - f('lung_cy', i)) / b  # X > 0 is lateral
    taper = np.where(X > 0, f('lung_taper', i), 0.3 * f('lung_taper', i))  # narrow apex
    Xt = X / np.maximum(1 + taper * Y, 0.05)
    rho = np.sqrt(Xt * Xt + Y * Y)
    grad = np.hypot(*np.gradient(rho, axis=(1, 2))) / px + 1e-6
    wall = (1 - rho) / grad  # ~distance to the chest wall
    dome = (f('dome_lvl', i) - f('dome_h', i) * (1 - (X + 0.1) ** 2) - Y) * b  # above diaphragm
    L = np.clip(wall / soft, 0, 1) * np.clip(dome / soft, 0, 1)
    lung = np.maximum(lung, L)
    abd = np.maximum(abd, np.clip(-dome / soft, 0, 1) * (sgn * bx > 0))
    hub.append((sgn * (f('lung_cx', i) - 0.6 * a), f('lung_cy', i) + 0.1 * b))  # hilum
    j = np.flatnonzero((p['ptx_side'] == i) & (p['label'] == 1))
    th0 = np.where(p['ptx_site'][j] == 0, -np.pi / 2, -0.3).astype(np.float32)[:, None, None]
    arc = (np.arctan2(Y[j], Xt[j]) - th0 - f('ptx_theta')[j]) / f('ptx_arc')[j]
    edge = 1 - f('ptx_depth')[j] * np.clip(1 - arc * arc, 0, None)  # rho of the visceral pleura
    inside, rj = (L[j] > 0) & (edge < 1), rho[j]
    band = inside & (rj > edge)
    line = np.where(inside & (rj <= edge), np.clip(1 - (edge - rj) / (hw * grad[j]), 0, None), 0)
    region[j], mask[j] = band, band | (line > 0)
    lesion[j] = f('pleura_amp')[j] * line - f('ptx_air')[j] * L[j] * band
  att += body * f('abd_amp') * abd - f('lung_air') * lung

  # Posterior ribs (periodic arcs, faint below the diaphragm) and clavicles.
  z = y - f('rib_curv') * (ax - f('rib_xp')) ** 2 - f('rib_dz') * np.sign(bx) - f('rib_y0')
  k = np.round(z / f('rib_sp'))
  rib = np.clip(1 - ((z - k * f('rib_sp')) / f('rib_w')) ** 2, 0, None) * ((k >= 0) & (k < 10))
  clav = np.clip(1 - ((y - f('clav_y') - 0.35 * (ax - 0.45) ** 2) / 0.03) ** 2, 0, None)
  att += body * (f('rib_amp') * rib * np.clip(ax / 0.05 - 1, 0, 1) * (1 - 0.7 * abd)
                 + 0.1 * clav * ((ax > 0.08) & (ax < 0.8)))

  # Vessels: zero crossings of noise band-passed in angle about the hilum (log-polar), so the
  # lines radiate from it; two scales, brighter and thicker centrally, a hilar shadow at the core.
  left = bx < 0
  hx, hy = np.where(left, hub[0][0], hub[1][0]), np.where(left, hub[0][1], hub[1][1])
  rx, ry = np.where(left, -1.0, 1.0).astype(np.float32) * (bx - hx), y - hy
  rr = np.sqrt(rx * rx + ry * ry) + 1e-3
  iu = (np.floor(np.arctan2(ry, rx) * (s / (2 * np.pi))).astype(np.int64) + left * (s // 2)) % s
  iv = np.floor(np.log(rr) * (s / 4)).astype(np.int64) % s
  fu, fv = np.fft.fftfreq(s)[:, None] * s, np.fft.rfftfreq(s)[None, :] * s
  white = np.fft.rfft2(p['texture_noise'])
  hil = lung * (0.3 + 0.7 * np.exp(-(rr / 0.3) ** 2))
  lines = 0
  for f0, w in ((10.0, 1.0), (22.0, 0.6)):
    filt = np.exp(-((np.abs(fu) - f0) / (0.35 * f0)) ** 2) * np.exp(-(fv / 6) ** 2)
    nb = np.fft.irfft2(white * filt.astype(np.float32), s=(s, s)).astype(np.float32)
    nb = nb[np.arange(len(nb))[:, None, None], iu, iv] / nb.std(axis=(1, 2), keepdims=True)
    lines = lines + w * np.exp(-(nb / (f('vessel_sig') * (0.5 + hil))) ** 2)
  core = np.exp(-(rr / 0.12) ** 2)
  vessels = f('vessel_amp') * (hil * lines * (1 - core) + 1.5 * lung * core)
  att += vessels

  # Confounders: chest-drain tube (pneumothorax-side lung, from the lateral wall), corner marker.
  att += 0.3 * f('tube') * _tube_profile(p, x, y, hw)
  ex = 1 - np.where(p['marker_corner'] == 1, 1.0, -1.0).astype(np.float32)[:, None, None] * x
  ex, ey, ms = ex - f('marker_x'), y + 1 - f('marker_y'), f('marker_size')
  box = (ex > 0) & (ex < ms) & (ey > 0) & (ey < 1.3 * ms)
  att += 0.6 * f('marker') * (box & ((ex < 0.35 * ms) | (ey > 0.95 * ms) | (f('marker_kind') == 1)))

  # The pneumothorax last (it changes exactly `mask`), then pixelwise noise and exposure.
  att += spec.lesion_contrast * lesion - region * vessels
  att += spec.noise * p['pixel_noise']
  img = np.clip(f('gain') * (att - 0.4) + 0.4 + f('bias'), 0, 1) ** f('gamma')
  return img.astype(np.float32), mask


def _chunk(spec: PhantomSpec) -> int:
  """Images rendered at once: ~8 MB per working array."""
  return max(1, 2 ** 21 // spec.image_size ** 2)


def tube_masks(spec: PhantomSpec, seed: int, indices: np.ndarray) -> np.ndarray:
  """bool (N,H,W): the pixels the chest-drain tube of images ``indices`` (of ``seed``) touches,
  as ``render`` draws it (its profile > 0); all False for an image without a tube."""
  idx, n = np.asarray(indices, dtype=np.int64).reshape(-1), _chunk(spec)
  _, x, y, hw = _grid(spec.image_size)
  masks = np.zeros((len(idx), spec.image_size, spec.image_size), bool)
  for lo in range(0, len(idx), n):
    p = sample_params(spec, seed, idx[lo:lo + n])
    masks[lo:lo + n] = (_tube_profile(p, x, y, hw) > 0) & p['tube'][:, None, None]
  return masks


def generate(spec: PhantomSpec, seed: int, start: int, count: int) -> dict[str, np.ndarray]:
  """Images ``start .. start+count-1`` (count >= 1): image, mask, label, tube, marker, index."""
  if count < 1 or start < 0:
    raise BadInput(f'need start >= 0 and count >= 1, got start={start}, count={count}')
  parts = []
  for lo in range(start, start + count, _chunk(spec)):
    idx = np.arange(lo, min(lo + _chunk(spec), start + count), dtype=np.int64)
    p = sample_params(spec, seed, idx)
    image, mask = render(spec, p)
    parts.append({'image': image, 'mask': mask, 'label': p['label'], 'tube': p['tube'],
                  'marker': p['marker'], 'index': idx})
  return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
