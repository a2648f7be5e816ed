"""Prepares a data set's splits: ``cam_jax prepare --config=configs/study_phantom.py`` (any
config with a ``data`` field) or ``cam_jax prepare --config=configs/data/siim.py
--config.manual_dir=DIR`` (a data config itself); into ``config.data_dir``, by default the
shared data directory ``cam_jax.data.cache.data_dir()``. Prints the counts per split and label,
masks per split, duplicates and quarantined records by reason (listed in ``quarantine.csv``)."""

from ml_collections import config_flags

from cam_jax import data
from cam_jax.cli import common

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A config with a `data` field, or a '
                                          'data config (configs/data/*.py).', lock_config=True)


def main(argv):
  del argv
  config = _CONFIG.value
  data_config = config.data if 'data' in config else config
  data_dir = data.cache.data_dir(config.get('data_dir', ''))
  summary = data.prepare(data_config, data_dir)
  if 'fresh' in summary:
    done = 'prepared' if summary['fresh'] else 'already prepared, nothing to do'
    common.log(f'{data_config.name}: {done}: {summary["path"]}')
  for split, c in summary['splits'].items():
    common.log(f'{split}: {c["records"]} records, {c["positive"]} positive, {c["negative"]} '
               f'negative, {c["with_mask"]} with a mask')
  if 'duplicates' in summary:
    d = summary['duplicates']
    common.log(f'duplicates: {d["images"]} images in {d["groups"]} groups of identical pixels '
               '(each group in one split)')
    common.log(f'quarantined: {summary["quarantined"]} records (quarantine.csv in '
               f'{summary["path"]})')
    for reason, count in summary['quarantine_reasons'].items():
      common.log(f'  {count:6d}  {reason}')
