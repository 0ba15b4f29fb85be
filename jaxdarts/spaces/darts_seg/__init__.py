"""The DARTS cell space searched for semantic segmentation (``darts_seg``)."""
