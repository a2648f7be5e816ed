"""The report's self-contained HTML twin: Markdown rendered by Python-Markdown (its ``tables``
extension, https://python-markdown.github.io/extensions/tables/), every image embedded as a
base64 data URI (RFC 2397) and one inline stylesheet, so ``report.html`` opens offline and
prints with readable tables. A Content-Security-Policy forbids loading anything else."""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import urllib.parse
from html import escape

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from cam_jax.core.errors import BadInput, MissingInput

# A table cell that holds a number, optionally followed by its CI: '0.333 [0.102, 0.583]', '12'.
_NUMBER = re.compile(r'[-+]?\.?\d[\d\s.,eE+\-\[\]%]*')
_SCHEME = re.compile(r'^([a-zA-Z][a-zA-Z0-9+.-]*:|//)')

STYLE = """
body { font: 15px/1.45 sans-serif; color: #111; background: #fff; max-width: 76rem;
       margin: 1.5rem auto; padding: 0 1rem; }
h1, h2, h3 { line-height: 1.2; }
table { border-collapse: collapse; margin: .5rem 0 1.2rem; font-size: .85rem; }
th, td { border: 1px solid #777; padding: .2rem .45rem; vertical-align: top; }
th { background: #dde6f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f5f5f5; }
code { font-family: monospace; background: #f0f0f0; padding: 0 .2em; }
img { max-width: 100%; height: auto; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; }
  table { font-size: 8pt; }
  thead { display: table-header-group; }
  tr, img { break-inside: avoid; page-break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; page-break-after: avoid; }
  th, tbody tr { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""


def data_uri(path: str, *, source: str) -> str:
  """The image file at ``path`` as a ``data:<type>;base64,`` URI; ``source`` names the document
  that shows it, for the error."""
  kind = mimetypes.guess_type(path)[0]
  if not kind or not kind.startswith('image/'):
    raise BadInput(f'{source}: image {path} is not a known image type (by its extension)')
  if not os.path.isfile(path):
    raise MissingInput(f'{source}: image {path} not found (report.html embeds every image)')
  with open(path, 'rb') as f:
    return f'data:{kind};base64,{base64.b64encode(f.read()).decode("ascii")}'


class _Embed(Treeprocessor):
  """Replaces each ``<img src>`` by its file's data URI, marks numeric cells ``class="num"``
  and keeps the first ``<h1>``'s text as the page title."""

  def __init__(self, md, base_dir: str, source: str):
    super().__init__(md)
    self.base_dir, self.source, self.title = base_dir, source, ''

  def run(self, root):
    for img in root.iter('img'):
      src = img.get('src', '')
      if _SCHEME.match(src):
        raise BadInput(f'{self.source}: image {src!r} is not a local file; report.html embeds '
                       'every image, so each must be a file beside the Markdown')
      img.set('src', data_uri(os.path.join(self.base_dir, urllib.parse.unquote(src)),
                              source=self.source))
    for cell in root.iter('td'):
      if not len(cell) and _NUMBER.fullmatch((cell.text or '').strip()):
        cell.set('class', 'num')
    h1 = next(root.iter('h1'), None)
    self.title = ''.join(h1.itertext()).strip() if h1 is not None else ''


class _EmbedExtension(Extension):
  """Registers ``_Embed`` last, after the inline patterns (priority 20) have made ``<img>`` and
  the cells' text and backslash escapes are restored (0); ``processor`` holds it after the
  conversion, with the title it found."""

  def __init__(self, base_dir: str, source: str):
    super().__init__()
    self.base_dir, self.source, self.processor = base_dir, source, None

  def extendMarkdown(self, md):
    self.processor = _Embed(md, self.base_dir, self.source)
    md.treeprocessors.register(self.processor, 'cam_jax_embed', -1)


def to_html(text: str, base_dir: str, *, source: str = 'report.md') -> str:
  """One self-contained HTML page of the Markdown ``text``: headings, paragraphs, lists, pipe
  tables, inline code, emphasis, links and images; image paths are relative to ``base_dir``
  and a missing one is a ``BadInput`` naming it. Links stay links (they are not loaded)."""
  embed = _EmbedExtension(base_dir, source)
  body = markdown.markdown(text, extensions=['tables', embed], output_format='html')
  title = embed.processor.title or os.path.splitext(os.path.basename(source))[0]
  return PAGE.format(title=escape(title), style=STYLE, body=body)


__all__ = ['STYLE', 'data_uri', 'to_html']
