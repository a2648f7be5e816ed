"""Per-image flags of degenerate heat maps: an int32 bit set per image, named in records.

Set by the CAM postprocess (``cams.postprocess``: constant or non-finite raw maps) and by the
localisation metrics (``metrics.localisation``: no pixel of heat); every table that reads
records names them with ``flag_names``.
"""

FLAG_NO_HEAT = 1  # no pixel with heat >= 0.1 (EHR-AUC is 0)
FLAG_CONSTANT = 2  # heat map constant (max == min): pointing game is a miss
FLAG_NONFINITE = 4  # set by the CAM postprocess when the raw map had NaN/inf
FLAG_NAMES = {FLAG_NO_HEAT: 'no_heat', FLAG_CONSTANT: 'constant', FLAG_NONFINITE: 'nonfinite'}


def flag_names(bits: int) -> str:
  """Names of the known flags set in ``bits``, joined by '|' ('' for 0)."""
  return '|'.join(name for bit, name in sorted(FLAG_NAMES.items()) if int(bits) & bit)
