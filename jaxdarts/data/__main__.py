"""Runs :func:`jaxdarts.data.cli.main`: ``python -m jaxdarts.data ...``."""

import sys

from jaxdarts.data.cli import main

if __name__ == '__main__':
  sys.exit(main())
