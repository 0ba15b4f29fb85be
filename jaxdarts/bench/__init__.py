"""Tabular benchmarks of a cell space: train every cell, score searches.

* :mod:`.minibench`: trains every architecture of an NB201-style space on
  an offline task and writes the table;
* :mod:`.score`: scores searches against a table.
"""
