"""The phantom data set as a TFDS builder: written to array_record, read with ``tfds.data_source``.

Only ``Tensor`` features are used, so neither writing nor reading needs TensorFlow. A builder
config is derived from the generator's settings, so two settings never share a directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import tensorflow_datasets as tfds

from cam_jax.core.errors import BadInput
from cam_jax.data import cache, phantom

SPLITS = ('train', 'validation', 'test')
_CHUNK = 256


@dataclasses.dataclass
class PhantomBuilderConfig(tfds.core.BuilderConfig):
  spec: phantom.PhantomSpec = dataclasses.field(default_factory=phantom.PhantomSpec)
  sizes: tuple[tuple[str, int], ...] = (('train', 2000), ('validation', 400), ('test', 400))
  seed: int = 0


def builder_config(spec: phantom.PhantomSpec, sizes: dict[str, int], seed: int):
  """A config whose name is a digest of every setting that changes the data."""
  settings = {'spec': dataclasses.asdict(spec), 'sizes': sizes, 'seed': seed}
  digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
  return PhantomBuilderConfig(name=f'{spec.image_size}px_{digest}', spec=spec,
                              sizes=tuple((s, int(sizes[s])) for s in SPLITS), seed=seed,
                              description=json.dumps(settings, sort_keys=True))


def record_features(size: int, **extra) -> tfds.features.FeaturesDict:
  """A record's ``Tensor`` features (no TensorFlow needed): ``image`` uint8 (size, size, 1),
  ``mask`` bool (size, size), ``label``, ``id``, and scalar ``extra`` fields by dtype."""
  scalar = lambda dtype: tfds.features.Tensor(shape=(), dtype=dtype)
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8),
      'mask': tfds.features.Tensor(shape=(size, size), dtype=np.bool_),
      'label': scalar(np.int64), 'id': scalar(np.str_),
      **{k: scalar(v) for k, v in extra.items()}})


def record_id(split: str, index: int) -> str:
  """The ``id`` (and key) of the record of phantom image ``index`` in ``split``."""
  return f'phantom-{split}-{int(index):07d}'


def record_index(key: str) -> int:
  """The phantom image index of a record ``id`` that ``record_id`` wrote."""
  parts = str(key).split('-')
  if len(parts) != 3 or parts[0] != 'phantom' or parts[1] not in SPLITS or not parts[2].isdigit():
    raise BadInput(f'record id {key!r} is not a phantom record id (phantom-<split>-<index>)')
  return int(parts[2])


class Phantom(tfds.core.GeneratorBasedBuilder):
  """Procedural chest X-rays with exact pneumothorax masks (see ``cam_jax.data.phantom``)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Synthetic frontal chest radiographs with pneumothorax masks.',
        features=record_features(self.builder_config.spec.image_size, tube=np.bool_,
                                 marker=np.bool_))

  def _split_generators(self, dl_manager):
    del dl_manager
    start, gens = 0, {}
    for split, count in self.builder_config.sizes:
      gens[split] = self._generate_examples(split, start, count)
      start += count
    return gens

  def _generate_examples(self, split: str, start: int, count: int):
    cfg = self.builder_config
    for lo in range(start, start + count, _CHUNK):
      batch = phantom.generate(cfg.spec, cfg.seed, lo, min(_CHUNK, start + count - lo))
      pixels = np.round(batch['image'] * 255).astype(np.uint8)[..., None]
      for i, index in enumerate(batch['index']):
        key = record_id(split, index)
        yield key, {'image': pixels[i], 'mask': batch['mask'][i], 'label': batch['label'][i],
                    'id': key, 'tube': batch['tube'][i], 'marker': batch['marker'][i]}


def load(spec: phantom.PhantomSpec, sizes: dict[str, int], seed: int, data_dir: str) -> Phantom:
  """The prepared builder (generated on first use, then read from ``data_dir``); safe when
  several processes ask for the same one at once (``cache.preparing``)."""

  def prepare(found):
    tfds.disable_progress_bar()
    found.download_and_prepare()

  return cache.prepared(lambda: Phantom(config=builder_config(spec, sizes, seed), data_dir=data_dir,
                                        file_format='array_record'), prepare)[0]
