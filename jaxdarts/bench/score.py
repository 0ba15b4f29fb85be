"""Scores searches in an NB201-style space against a `minibench` table.

For a method (and hypergradient), `score_method` runs the search once per
seed with `jaxdarts.run.search.run_search` and reads off the table, per
seed:

* ``test`` / ``val``: the mean (over the table's training seeds) accuracy
  of the derived cell; ``regret``: the best cell's test accuracy minus it;
  ``percentile``: the share of the space's cells it beats (ties half);
* ``history``: the cell derived at every epoch end and its test accuracy;
* ``kendall_tau``: Kendall's tau-b between the final op weights' ranking
  of every cell of the space (score ``sum_e log w_e[op_e]``, the cell's
  log-probability when the weights are per-edge distributions) and the
  cells' test accuracies in the table; where the weights are not
  distributions the score still ranks by them;
* ``seconds``: the search's wall time;
* ``supernet_val``: the supernet's accuracy on the alphas half at the last
  epoch end (``supernet_val_accuracy`` of the search's
  ``metrics.jsonl``, with the deterministic mixing weights);
* ``params``: the derived cell's network's parameters, from the table (of
  its representative: the same function, dead edges dropped);
* ``param_free``: the derived cell's parameter-free ops other than
  ``none`` (``skip_connect``, ``avg_pool_3x3``: the collapse signature),
  and ``none_edges`` its ``none`` edges, counted separately.

With the table's retrained test accuracy, the scoreboard's columns are the
methods issue's quality table (supernet validation accuracy, parameters,
parameter-free ops, retrained test accuracy).

`random_search` is the baseline of NAS-Bench-201's tables: sample cells
uniformly, "train" each by looking it up (charging its table training
time), keep the best validation accuracy, stop when the budget is spent;
`score_random` runs it with the mean wall time of a method's searches as
the budget.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, Iterable

import numpy as np
from scipy import stats as scipy_stats

from jaxdarts.bench import minibench
from jaxdarts.spaces.nb201.cell import KERNELS
from jaxdarts.spaces.nb201.genotype import Genotype


def check_space(config, table: dict[str, Any]) -> None:
  """Refuses a search config whose space differs from the table's.

  Raises:
    ValueError: naming the config fields to set.
  """
  want = table['config']
  got = (config.model.space, tuple(config.model.primitives),
         config.model.num_nodes)
  if got != ('nb201', tuple(want['primitives']), want['num_nodes']):
    raise ValueError(
        f'The search (space {got[0]!r}, primitives {list(got[1])}, '
        f'num_nodes {got[2]}) is not the table\'s space: set '
        f"config.model.space='nb201', config.model.primitives="
        f"{tuple(want['primitives'])}, config.model.num_nodes="
        f"{want['num_nodes']} (the nb201_digits preset does).")


def kendall_tau(strengths: np.ndarray, table: dict[str, Any],
                primitives: Iterable[str]) -> float:
  """Kendall's tau-b between ``strengths``' ranking of every cell of the
  table's space and the cells' mean test accuracies."""
  primitives = list(primitives)
  logw = np.log(np.maximum(np.asarray(strengths, np.float64), 1e-300))
  scores, accs = [], []
  for arch in table['mapping']:
    ops = Genotype.parse(arch).ops
    scores.append(sum(logw[e, primitives.index(op)]
                      for e, op in enumerate(ops)))
    accs.append(minibench.mean_accuracy(table, arch))
  return float(scipy_stats.kendalltau(scores, accs).statistic)


def cell_ops(genotype: Genotype) -> dict[str, int]:
  """``{'param_free': ..., 'none_edges': ...}``: the cell's edges whose op
  has no parameters (no convolution) other than ``none``, and its
  ``none`` edges."""
  ops = genotype.ops
  return {'param_free': sum(op not in KERNELS and op != 'none'
                            for op in ops),
          'none_edges': sum(op == 'none' for op in ops)}


def final_supernet_accuracy(records: list[dict[str, float]]) -> float:
  """The last ``supernet_val_accuracy`` of a search's metrics records
  (NaN if none has one)."""
  values = [r['supernet_val_accuracy'] for r in records
            if 'supernet_val_accuracy' in r]
  return values[-1] if values else float('nan')


def _entry(table, genotype) -> dict[str, Any]:
  arch = str(genotype)
  test = minibench.mean_accuracy(table, arch)
  best = minibench.summary(table)['best']
  return {'arch': arch, 'test': test,
          'val': minibench.mean_accuracy(table, arch, 'val'),
          'regret': best - test,
          'percentile': minibench.percentile(table, test),
          'params': table['archs'][table['mapping'][arch]]['params'],
          **cell_ops(Genotype.parse(arch))}


def score_method(config, table: dict[str, Any], seeds: Iterable[int],
                 workdir: str | os.PathLike[str], *, method: str = 'darts',
                 hypergradient: str = 'first_order',
                 options: dict[str, Any] | None = None,
                 log=print) -> list[dict[str, Any]]:
  """Runs ``method`` once per seed (in ``workdir/<method>_<hg>_s<seed>``)
  and scores each search (see the module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxdarts.run import search  # pylint: disable=g-import-not-at-top
  from jaxdarts.run.workdir import Workdir  # pylint: disable=g-import-not-at-top
  check_space(config, table)
  rows = []
  for seed in seeds:
    cfg = copy.deepcopy(config)
    cfg.search.method = method
    cfg.search.hypergradient = hypergradient
    cfg.search.seed = seed
    for key, value in (options or {}).items():
      cfg.method[key] = value
    path = os.path.join(os.fspath(workdir), f'{method}_{hypergradient}_s{seed}')
    start = time.perf_counter()
    result = search.run_search(cfg, path)
    seconds = time.perf_counter() - start
    strengths = result.state.method.strengths(
        jax.device_get(result.state.alphas))['cell']
    run_dir = Workdir(path, Genotype)
    history = run_dir.genotype_history()
    row = {'method': method, 'hypergradient': hypergradient, 'seed': seed,
           **_entry(table, result.genotype), 'seconds': seconds,
           'supernet_val': final_supernet_accuracy(run_dir.metrics()),
           'kendall_tau': kendall_tau(strengths, table,
                                      cfg.model.primitives),
           'history': [(epoch, str(g), minibench.mean_accuracy(table, str(g)))
                       for epoch, g in history]}
    log(f'{method}/{hypergradient} seed {seed}: {row["arch"]} test '
        f'{row["test"]:.4f} regret {row["regret"]:.4f} percentile '
        f'{row["percentile"]:.1f} tau {row["kendall_tau"]:.3f} supernet '
        f'{row["supernet_val"]:.3f} params {row["params"]} param-free '
        f'{row["param_free"]} none {row["none_edges"]} ({seconds:.0f} s)')
    rows.append(row)
  return rows


def random_search(table: dict[str, Any], budget_seconds: float,
                  rng: np.random.Generator) -> tuple[str, int]:
  """``(best-by-validation cell, cells sampled)`` of uniform random search
  whose every sample costs its table training time (at least one)."""
  archs = sorted(table['mapping'])
  spent, count, best = 0.0, 0, None
  while count == 0 or spent < budget_seconds:
    arch = archs[rng.integers(len(archs))]
    rep = table['archs'][table['mapping'][arch]]
    spent += rep['train_seconds']
    count += 1
    val = float(np.mean(rep['val']))
    if best is None or val > best[0]:
      best = (val, arch)
  return best[1], count


def score_random(table: dict[str, Any], budget_seconds: float,
                 seeds: Iterable[int]) -> list[dict[str, Any]]:
  """`random_search` once per seed, scored like a method."""
  rows = []
  for seed in seeds:
    arch, count = random_search(table, budget_seconds,
                                np.random.default_rng(seed))
    rows.append({'method': 'random', 'hypergradient': '-', 'seed': seed,
                 **_entry(table, Genotype.parse(arch)),
                 'seconds': budget_seconds, 'samples': count,
                 'supernet_val': float('nan'),
                 'kendall_tau': float('nan'), 'history': []})
  return rows


def scoreboard(rows: list[dict[str, Any]]) -> str:
  """A markdown table: one line per (method, hypergradient), mean +- std
  over seeds (parameter-free ops exclude ``none``, counted in its own
  column)."""
  lines = ['| method | hypergradient | seeds | test acc | regret | '
           'percentile | Kendall tau | supernet val acc | params | '
           'param-free ops | none edges | seconds | derived cells |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
  for row in rows:
    groups.setdefault((row['method'], row['hypergradient']), []).append(row)

  def ms(values, digits=4):
    values = np.asarray(values, np.float64)
    if np.all(np.isnan(values)):
      return '-'
    return f'{np.nanmean(values):.{digits}f} +- {np.nanstd(values):.{digits}f}'

  for (method, hg), group in groups.items():
    cells = len({r['arch'] for r in group})
    lines.append(
        f'| {method} | {hg} | {len(group)} | {ms([r["test"] for r in group])}'
        f' | {ms([r["regret"] for r in group])} | '
        f'{ms([r["percentile"] for r in group], 1)} | '
        f'{ms([r["kendall_tau"] for r in group], 3)} | '
        f'{ms([r["supernet_val"] for r in group])} | '
        f'{ms([r["params"] for r in group], 0)} | '
        f'{ms([r["param_free"] for r in group], 1)} | '
        f'{ms([r["none_edges"] for r in group], 1)} | '
        f'{np.mean([r["seconds"] for r in group]):.0f} | {cells} |')
  return '\n'.join(lines)
