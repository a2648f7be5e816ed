"""The randomisation tests across the zoo (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018): every depth of every family, its heat maps against those of copies whose
parameter blocks are re-initialised from the logits down (cascading) and one block at a time
(independent), on 64 test images; localisation is scored too, faithfulness and the fill check
are not.

  cam_jax study --config=configs/study_sanity.py --workdir=runs/study_sanity

Arguments: ``:tiny`` (seconds, the tests), ``:large`` (the paper-scale zoo, an accelerator).
"""

import ml_collections

from cam_jax import presets


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  c = presets.study_config(arg, presets.study_phantom_data(arg))
  c.seeds = 1
  c.score.metrics = 'localisation'
  c.score.fill_check = ''
  c.sanity.mode = 'cascading,independent'
  c.sanity.n_images = 64 if arg != 'tiny' else 16
  return c
