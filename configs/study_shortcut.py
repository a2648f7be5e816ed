"""The known-truth shortcut study: a chest-drain tube drawn with the finding 90% of the time and
without it 5%, so it predicts the label; every model is also trained as a control on the same
images without any tube, and the report compares where their heat lies on the test images with a
lesion and a tube (``cam_jax.scoring.shortcut``).

  cam_jax study --config=configs/study_shortcut.py --workdir=runs/study_shortcut

The phantom is 64 px with the lesion at its drawn contrast (1.0: at the embedded study's 2.5 the
lesion outweighs the tube), 400 test images; the CNNs train 5 epochs (in 3, vgg_tiny had not yet
taken the shortcut: 22.6% vs a control's 17.5%, p = 0.29), the ViT 8. Arguments: ``:tiny``
(seconds, the tests), ``:large`` (an accelerator).
"""

import ml_collections

from cam_jax import presets

MODELS = {'': 'vgg_tiny_1,resnet_tiny_1,vit_tiny_1', 'tiny': 'vgg_tiny_1',
          'large': 'vgg16_bn,resnet50,vit_b16'}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  arg = presets.check_arg(arg)
  data = presets.study_phantom_data(arg)
  data.update(tube_rate_pos=0.9, tube_rate_neg=0.05, lesion_contrast=1.0)
  if not arg:
    data.num_test = 400
  c = presets.study_config(arg, data)
  c.models, c.seeds, c.shortcut = MODELS[arg], 1, 'tube'
  if not arg:
    c.train.epochs = 5
    c.train_overrides.vit.epochs = 8
  c.score.metrics = 'localisation'
  c.score.fill_check = ''
  c.sanity.mode = ''
  return c
