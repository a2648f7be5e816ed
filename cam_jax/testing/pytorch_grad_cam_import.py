"""Imports pytorch-grad-cam (``pytorch_grad_cam``) where torchvision cannot be imported.

pytorch-grad-cam 1.5.x imports torchvision when it is imported, for two things this project
never calls:

* ``pytorch_grad_cam.utils.image``: ``from torchvision.transforms import Compose, Normalize,
  ToTensor`` (used only by its ``preprocess_image``);
* ``pytorch_grad_cam.utils.model_targets``: ``import torchvision`` (``torchvision.ops.box_iou``,
  used only by ``FasterRCNNBoxScoreTarget``).

PyPI's torchvision wheels are built against one torch release each and do not import beside the
torch this project pins, so the test command installs pytorch-grad-cam with ``--no-deps`` and no
torchvision. ``import_pytorch_grad_cam`` then puts a stand-in ``torchvision`` package (with
``transforms`` and ``ops`` submodules holding those four names) into ``sys.modules`` for the
duration of that one import only, and takes it out again, so nothing else in the process
sees a torchvision. Every stand-in name raises ``NotImplementedError`` when called. Where a real
torchvision imports, it is used and nothing is stood in.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types

_NAMES = ('torchvision', 'torchvision.transforms', 'torchvision.ops')


def _unavailable(name: str):
  def call(*args, **kwargs):
    raise NotImplementedError(
        f'{name} is part of the torchvision stand-in of '
        'cam_jax/cams/pytorch_grad_cam_import.py (torchvision '
        'is not installed); cam_jax never calls it')
  call.__name__ = call.__qualname__ = name.rsplit('.', 1)[-1]
  return call


def _module(name: str, attrs=()) -> types.ModuleType:
  module = types.ModuleType(name, f'Stand-in for {name} (cam_jax/cams/pytorch_grad_cam_import.py).')
  module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
  module.__path__ = []
  for attr in attrs:
    setattr(module, attr, _unavailable(f'{name}.{attr}'))
  return module


def standin_modules() -> dict[str, types.ModuleType]:
  """The stand-in ``torchvision``, ``torchvision.transforms`` and ``torchvision.ops``."""
  root = _module('torchvision')
  root.transforms = _module('torchvision.transforms', ('Compose', 'Normalize', 'ToTensor'))
  root.ops = _module('torchvision.ops', ('box_iou',))
  return {'torchvision': root, 'torchvision.transforms': root.transforms,
          'torchvision.ops': root.ops}


def _torchvision_imports() -> bool:
  try:
    importlib.import_module('torchvision')
    return True
  except Exception:  # pylint: disable=broad-except
    # ImportError when absent; a wheel built for another torch can fail with RuntimeError
    # ("operator torchvision::nms does not exist") after importing part of itself.
    for name in [n for n in sys.modules if n == 'torchvision' or n.startswith('torchvision.')]:
      del sys.modules[name]
    return False


def import_pytorch_grad_cam() -> types.ModuleType:
  """``pytorch_grad_cam``, imported beside a stand-in torchvision where the real one fails.

  Raises ImportError when pytorch-grad-cam itself, or one of its other imports (cv2, ttach,
  sklearn, scipy, tqdm, matplotlib, PIL), is missing.
  """
  if 'pytorch_grad_cam' in sys.modules or _torchvision_imports():
    return importlib.import_module('pytorch_grad_cam')
  stood_in = standin_modules()
  sys.modules.update(stood_in)
  try:
    return importlib.import_module('pytorch_grad_cam')
  except BaseException:
    for name in [n for n in sys.modules if n == 'pytorch_grad_cam' or
                 n.startswith('pytorch_grad_cam.')]:
      del sys.modules[name]
    raise
  finally:
    for name, module in stood_in.items():
      if sys.modules.get(name) is module:
        del sys.modules[name]
