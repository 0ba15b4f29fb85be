"""Checks of the image files the drawings and plots write."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def assert_png(path: Path) -> None:
  """``path`` is a PNG file with some content."""
  data = Path(path).read_bytes()
  assert data.startswith(PNG_SIGNATURE), path
  assert len(data) > 1000, path


def assert_svg(path: Path) -> ET.Element:
  """``path`` is a non-empty SVG document; returns its root element."""
  root = ET.parse(path).getroot()
  assert root.tag.endswith('svg'), root.tag
  assert len(root) > 0
  return root
