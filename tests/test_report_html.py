"""report.html, the self-contained twin of report.md: read back with the standard library's HTML
parser (not the Markdown package that wrote it) and rendered by headless Chromium."""

import base64
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cam_jax import report
from cam_jax.core.errors import BadInput
from cam_jax.report import html
from cam_jax.study import cells
from configs import study_phantom

SOLID = (23, 171, 97)  # the overlays figure of the tiny report: one colour, 160 x 100 pixels
SOLID_SIZE = (160, 100)
OVERLAY = 'overlays_best.png'
HEADER = (0xdd, 0xe6, 0xf3)  # th's background in html.STYLE


class _Page(HTMLParser):
  """Every start tag with its attributes, and the text of each table's header cells."""

  def __init__(self, text):
    super().__init__()
    self.tags, self.headers, self._in_th = [], [], False
    self.feed(text)

  def handle_starttag(self, tag, attrs):
    self.tags.append((tag, dict(attrs)))
    if tag == 'table':
      self.headers.append([])
    self._in_th = tag == 'th'
    if self._in_th:
      self.headers[-1].append('')

  def handle_endtag(self, tag):
    self._in_th = self._in_th and tag != 'th'

  def handle_data(self, data):
    if self._in_th:
      self.headers[-1][-1] += data

  def all(self, tag):
    return [a for t, a in self.tags if t == tag]


def _md_tables(text):
  """The header cells of each pipe table in Markdown ``text`` (the line above a |---| row)."""
  lines = text.splitlines()
  return [[c.strip() for c in lines[i - 1].strip().strip('|').split('|')]
          for i, line in enumerate(lines) if re.fullmatch(r'\|(\s*:?-+:?\s*\|)+', line.strip())]


ARCHS = (('vgg_tiny_1', 7), ('vgg_tiny_2', 11))  # one family, two depths, two seeds each


def _config():
  config = study_phantom.get_config('tiny')
  config.models = ','.join(a for a, _ in ARCHS)
  config.score.n_resamples = 50
  return config


def _records():
  """Per-image records of 4 trained models (2 depths x 2 seeds) and the baseline, 12 images
  each, half with a lesion."""
  rng = np.random.default_rng(0)
  rows = []
  runs = [(f'{a}_s{s}', a, 'vgg', d, s) for s in (0, 1) for a, d in ARCHS]
  for model, arch, family, depth, seed in runs + [(report.BASELINE, '', '', np.nan, np.nan)]:
    for i in range(12):
      lesion = i % 2
      rows.append(dict(model=model, architecture=arch, family=family, depth=depth, seed=seed,
                       method='gradcam', layer='x', id=str(i), label=lesion,
                       has_mask=bool(lesion), prob=rng.uniform(), flags='',
                       mask_fraction=0.1 if lesion else 0.0,
                       ehr_auc=rng.uniform() if lesion else np.nan,
                       pointing_game=float(rng.uniform() > .5) if lesion else np.nan))
  return pd.DataFrame(rows)


def _shown(text):
  """The image files Markdown ``text`` shows, in order."""
  return re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)


def _images(page_text):
  """The bytes each ``<img>`` of an HTML page embeds, in order."""
  return [base64.b64decode(a['src'].split(',', 1)[1]) for a in _Page(page_text).all('img')]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """The report ``write_report`` writes for ``_records()`` with a solid-colour overlays figure:
  (workdir, report.md's text)."""
  workdir = str(tmp_path_factory.mktemp('report'))
  Image.new('RGB', SOLID_SIZE, SOLID).save(os.path.join(workdir, OVERLAY))
  text = report.write_report(workdir, _records(), config=_config(), title='Tiny *study*',
                             notes=['A note.'], overlays={'best': OVERLAY})
  return workdir, text


def test_report_html_is_self_contained(tiny):
  workdir, text = tiny
  assert open(os.path.join(workdir, report.REPORT)).read() == text
  page = _Page(open(os.path.join(workdir, report.REPORT_HTML)).read())
  assert not page.all('script') and not page.all('link')
  refs = [a[k] for _, a in page.tags for k in ('src', 'href') if k in a]
  assert refs and all(r.startswith('data:') for r in refs), [r[:40] for r in refs]
  shown = _shown(text)
  assert OVERLAY in shown and report.DEPTH_PLOT in shown
  assert _images(open(os.path.join(workdir, report.REPORT_HTML)).read()) == [
      open(os.path.join(workdir, f), 'rb').read() for f in shown]
  assert all(a['src'].startswith('data:image/png;base64,') for a in page.all('img'))
  assert page.headers == _md_tables(text) and len(page.headers) >= 4
  assert page.all('ul') and page.all('code') and page.all('h2')
  assert '<title>Tiny study</title>' in open(os.path.join(workdir, report.REPORT_HTML)).read()


def test_markdown_features(tmp_path):
  Image.new('RGB', (3, 2), (255, 0, 0)).save(tmp_path / 'fig 1.png')
  text = ('# Head\n\nSome **bold**, *it*, `code` and [a link](https://example.org/x).\n\n'
          '- one\n- two\n\n| name | value |\n|---|---|\n| a_b | 0.25 [0.10, 0.40] |\n'
          '| c | -3 |\n\n![the figure](fig%201.png)\n')
  out = html.to_html(text, str(tmp_path), source='t.md')
  page = _Page(out)
  assert [t for t, _ in page.tags if t in ('h1', 'strong', 'em', 'code', 'a', 'ul', 'li')] == [
      'h1', 'strong', 'em', 'code', 'a', 'ul', 'li', 'li']
  assert page.all('a') == [{'href': 'https://example.org/x'}]  # a link, never loaded
  assert page.headers == [['name', 'value']]
  assert [a.get('class') for a in page.all('td')] == [None, 'num', None, 'num']
  (img,) = page.all('img')
  assert img['alt'] == 'the figure'
  assert base64.b64decode(img['src'].split(',', 1)[1]) == (tmp_path / 'fig 1.png').read_bytes()
  assert '<title>Head</title>' in out


def test_missing_or_remote_image_is_bad_input(tmp_path):
  with pytest.raises(BadInput, match=r'report\.md: image .*gone\.png not found'):
    html.to_html('![x](gone.png)\n', str(tmp_path), source='report.md')
  with pytest.raises(BadInput, match=r"image 'https://example\.org/a\.png' is not a local file"):
    html.to_html('![x](https://example.org/a.png)\n', str(tmp_path), source='report.md')


def test_launch_report_writes_both_and_prints_their_paths(tmp_path):
  """A workdir laid out as finished cells (the records, an empty agreement table, an overlay)."""
  workdir = tmp_path / 'study'
  config = _config()
  cells_dir = workdir / cells.CELLS
  records = _records()
  for name in cells.plan(config):
    (cells_dir / name).mkdir(parents=True)
    cells.mark_done(str(workdir), name, 1.0)
  for model, rows in records.groupby('model'):
    name = cells.BASELINE if model == report.BASELINE else model
    rows.to_csv(cells_dir / name / 'records.csv', index=False)
  pd.DataFrame(columns=['kind', 'method', 'a', 'b', 'id', 'ssim']).to_csv(
      cells_dir / cells.PAIRS / 'agreement.csv', index=False)
  Image.new('RGB', SOLID_SIZE, SOLID).save(cells_dir / cells.PAIRS / OVERLAY)
  (workdir / 'config.json').write_text(config.to_json())
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, '-m', 'launch.report', f'--workdir={workdir}',
                         '--n_resamples=50'], cwd=root, capture_output=True, text=True,
                        timeout=300, env={**os.environ, 'XLA_FLAGS': ''})
  assert proc.returncode == 0, proc.stderr[-2000:]
  printed = [line.split('] ', 1)[1] for line in proc.stdout.splitlines()]
  assert printed[-2:] == [f'report: {workdir / report.REPORT}',
                          f'report: {workdir / report.REPORT_HTML}']
  text = (workdir / report.REPORT).read_text()
  assert f'cells/pairs/{OVERLAY}' in _shown(text) and report.DEPTH_PLOT in _shown(text)
  assert _Page((workdir / report.REPORT_HTML).read_text()).headers == _md_tables(text)
  assert _images((workdir / report.REPORT_HTML).read_text()) == [
      (workdir / f).read_bytes() for f in _shown(text)]


def _chromium():
  found = shutil.which('chromium') or shutil.which('chromium-browser')
  if not found:
    pytest.skip('chromium not installed: neither chromium nor chromium-browser is on PATH '
                '(apt-get install chromium)')
  return found


def _headless(tmp_path, *args):
  """Headless Chromium (as root it needs --no-sandbox) on a fresh profile, offline."""
  return subprocess.run(
      [_chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
       '--force-device-scale-factor=1', '--window-size=1280,2400',
       f'--user-data-dir={tmp_path / "profile"}', *args],
      capture_output=True, text=True, timeout=120, check=True)


def test_chromium_renders_the_report(tiny, tmp_path):
  workdir, text = tiny
  url = 'file://' + os.path.join(workdir, report.REPORT_HTML)
  shot = tmp_path / 'shot.png'
  _headless(tmp_path, f'--screenshot={shot}', url)
  pixels = np.asarray(Image.open(shot).convert('RGB'))
  assert pixels.shape == (2400, 1280, 3)
  assert (pixels != 255).any(-1).mean() > 0.03  # not a blank page
  # The embedded PNG decoded: its colour appears, unscaled, in at least its own pixel count.
  assert (pixels == SOLID).all(-1).sum() >= SOLID_SIZE[0] * SOLID_SIZE[1]
  # The tables were laid out with the stylesheet: their header cells' background is painted.
  assert (pixels == HEADER).all(-1).sum() > 2000
  dom = _headless(tmp_path, '--dump-dom', url).stdout
  assert dom.count('<table') == len(_md_tables(text))
  assert dom.count('<img') == dom.count('src="data:image/png;base64,') == 2
