"""Figures without pyplot: a new Agg figure, image paths, saving, op colours.

matplotlib is imported inside the functions, so importing the drawing
modules (or jaxdarts) needs neither matplotlib nor a display. Figures are
`matplotlib.figure.Figure` objects on an Agg canvas, made without pyplot:
they are never registered with pyplot, so none is left open, and the global
matplotlib backend of the caller (a notebook's, say) is left as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from jaxdarts.spaces.darts_cnn.space import DARTS_PRIMITIVES

if TYPE_CHECKING:
  from matplotlib.figure import Figure

PathLike = str | os.PathLike

IMAGE_SUFFIXES = ('.png', '.svg')


def op_color(op: str) -> str:
  """A fixed colour per op name (DARTS primitives first, then by hash)."""
  palette = ('#7f7f7f', '#1f77b4', '#17becf', '#2ca02c', '#d62728',
             '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#bcbd22')
  if op in DARTS_PRIMITIVES:
    return palette[DARTS_PRIMITIVES.index(op)]
  return palette[len(DARTS_PRIMITIVES) + sum(map(ord, op)) % 2]


def new_figure(width: float, height: float) -> Figure:
  """A pyplot-free figure on an Agg canvas."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  return fig


def check_image_path(path: PathLike) -> Path:
  path = Path(path)
  if path.suffix.lower() not in IMAGE_SUFFIXES:
    raise ValueError(f'{path}: unsupported image format {path.suffix!r}; use '
                     f'one of {", ".join(IMAGE_SUFFIXES)}')
  return path


def save(fig: Figure, path: Path, dpi: int = 150) -> Path:
  """Saves ``fig`` in the format named by the suffix; SVG text stays text."""
  import matplotlib
  path.parent.mkdir(parents=True, exist_ok=True)
  with matplotlib.rc_context({'svg.fonttype': 'none',
                              'svg.hashsalt': 'jaxdarts'}):
    fig.savefig(path, format=path.suffix.lower()[1:], dpi=dpi,
                bbox_inches='tight', pad_inches=0.1)
  return path


def finish_axes(ax, title: str) -> None:
  """A line plot's title, epoch axis, grid and legend (if any line has a
  label)."""
  ax.set_title(title, fontsize=10)
  ax.set_xlabel('epoch', fontsize=9)
  ax.tick_params(labelsize=8)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7)
