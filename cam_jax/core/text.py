"""Parsing the comma-separated lists that config fields hold (``'vgg_tiny,resnet_tiny'``)."""


def split_list(text: str) -> list[str]:
  """The non-empty, stripped items of a comma-separated ``text``."""
  return [item.strip() for item in text.split(',') if item.strip()]
