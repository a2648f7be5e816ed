"""Per-image heat-map-vs-lesion-mask localisation metrics, in pure jnp.

Every function takes one heat map ``heat`` (float (H, W), expected in [0, 1],
already ReLU'd and min-max normalised) and one ``mask`` (bool (H, W)) and
returns jnp scalars.  Degenerate inputs are handled with ``jnp.where``, so all
functions are jit-able and ``jax.vmap``-able and never return NaN for finite
inputs.
"""

import jax
import jax.numpy as jnp

FLAG_NO_HEAT = 1  # no pixel with heat >= 0.1 (EHR-AUC is 0)
FLAG_CONSTANT = 2  # heat map constant (max == min): pointing game is a miss
FLAG_NONFINITE = 4  # set by the CAM postprocess when the raw map had NaN/inf
FLAG_NAMES = {FLAG_NO_HEAT: 'no_heat', FLAG_CONSTANT: 'constant', FLAG_NONFINITE: 'nonfinite'}

EHR_MIN_HEAT = 0.1
_N_QUANTILES = 11  # q = 0, 0.1, ..., 1.0


def flag_names(bits: int) -> str:
    """Names of the known flags set in ``bits``, joined by '|' ('' for 0)."""
    return '|'.join(name for bit, name in sorted(FLAG_NAMES.items()) if int(bits) & bit)


def _sort_nonnegative(values):
    """Ascending sort of float32 values >= 0 (and +inf) via their int32 bit patterns.

    For non-negative IEEE floats the bit pattern orders exactly like the value, and
    XLA's CPU sort is several times faster on integers than on floats.
    """
    bits = jnp.sort(jax.lax.bitcast_convert_type(values.astype(jnp.float32), jnp.int32))
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def _subset_quantiles(values, subset, n_steps):
    """Linear-interpolation quantiles at q = k/(n_steps-1) of ``values[subset]``.

    ``values[subset]`` must be >= 0 (heat maps are).  Matches
    ``np.quantile(values[subset], q)`` (method 'linear'); the position
    q*(n-1) is computed exactly in integers.  Returns zeros when the subset is
    empty.
    """
    n = jnp.sum(subset)
    last = jnp.maximum(n - 1, 0)
    ordered = _sort_nonnegative(jnp.where(subset, values, jnp.inf))
    ordered = jnp.where(jnp.isfinite(ordered), ordered, 0.0)
    scaled = jnp.arange(n_steps) * last
    lo = scaled // (n_steps - 1)
    frac = (scaled % (n_steps - 1)) / (n_steps - 1)
    hi = jnp.minimum(lo + 1, last)
    return ordered[lo] + frac * (ordered[hi] - ordered[lo])


def ehr_auc(heat, mask):
    """Effective Heat Ratio AUC (Qiu, Rivaz & Xiao, MLMI 2023; Wollek et al. 2023).

    Heat below 0.1 is zeroed; for q in 0, 0.1, ..., 1 the threshold is
    t(q) = min(quantile_q(heat >= 0.1), 0.99 * max heat) and the ratio is the
    heat inside the mask at pixels >= t over the number of pixels >= t.  The
    value is the trapezoid area of the ratio over q, in [0, 1].

    Returns ``(value, flags)``; a map with no pixel >= 0.1 scores 0 with
    ``FLAG_NO_HEAT``.
    """
    h = jnp.ravel(heat)
    m = jnp.ravel(jnp.asarray(mask, bool))
    effective = h >= EHR_MIN_HEAT
    h = jnp.where(effective, h, 0.0)
    thresholds = jnp.minimum(_subset_quantiles(h, effective, _N_QUANTILES), 0.99 * jnp.max(h))
    above = h[None, :] >= thresholds[:, None]
    inside_heat = jnp.sum(jnp.where(above & m[None, :], h[None, :], 0.0), axis=1)
    ratios = inside_heat / jnp.maximum(jnp.sum(above, axis=1), 1)
    area = (jnp.sum(ratios) - 0.5 * (ratios[0] + ratios[-1])) / (_N_QUANTILES - 1)
    has_heat = jnp.any(effective)
    flags = jnp.where(has_heat, 0, FLAG_NO_HEAT).astype(jnp.int32)
    return jnp.where(has_heat, area, 0.0), flags


def pointing_game(heat, mask):
    """Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop").

    1 when the maximum lies inside the mask, 0 outside; pixels tied exactly at
    the maximum score the fraction of them inside the mask.  A constant map is
    a miss (0) with ``FLAG_CONSTANT``.  Returns ``(value, flags)``.
    """
    mask = jnp.asarray(mask, bool)
    top = jnp.max(heat)
    tied = heat == top
    hit = jnp.sum(tied & mask) / jnp.maximum(jnp.sum(tied), 1)
    constant = top == jnp.min(heat)
    flags = jnp.where(constant, FLAG_CONSTANT, 0).astype(jnp.int32)
    return jnp.where(constant, 0.0, hit), flags


def iou_dice(heat, mask, threshold=0.5):
    """IoU (Jaccard) and Dice (Dice 1945) of ``heat >= threshold`` against the mask.

    Returns ``(iou, dice)``; both are 0 when map and mask are both empty.
    """
    mask = jnp.asarray(mask, bool)
    pred = heat >= threshold
    inter = jnp.sum(pred & mask)
    union = jnp.sum(pred | mask)
    total = jnp.sum(pred) + jnp.sum(mask)
    iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0)
    dice = jnp.where(total > 0, 2 * inter / jnp.maximum(total, 1), 0.0)
    return iou, dice


def localisation_metrics(heat, mask, threshold=0.5):
    """All metrics of one image as a dict (keys 'ehr_auc', 'pointing_game', 'iou',
    'dice', 'flags'), ready for ``jax.vmap`` over a batch."""
    ehr, ehr_flags = ehr_auc(heat, mask)
    hit, pg_flags = pointing_game(heat, mask)
    iou, dice = iou_dice(heat, mask, threshold)
    return {'ehr_auc': ehr, 'pointing_game': hit, 'iou': iou, 'dice': dice,
            'flags': ehr_flags | pg_flags}
