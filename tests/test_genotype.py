"""Tests of the DARTS genotype (value, text/JSON I/O, derivation) and genotypes."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

from jaxdarts import methods
from jaxdarts.spaces.darts_cnn.derive import derive_genotype, top2_genotype
from jaxdarts.spaces.darts_cnn.genotype import KNOWN_OPS, Genotype
from jaxdarts.spaces.darts_cnn import genotypes
from jaxdarts.spaces.darts_cnn.space import DARTS_PRIMITIVES, DARTS_SPACE, SearchSpace

SPACE3 = SearchSpace(num_nodes=3)

# A 3-node genotype (6 edges per cell, states 0..4).
G3 = Genotype(
    normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2),
            ('sep_conv_5x5', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3', 1)],
    normal_concat=[2, 3, 4],
    reduce=[('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2),
            ('dil_conv_3x3', 1), ('sep_conv_5x5', 2), ('avg_pool_3x3', 3)],
    reduce_concat=range(2, 5),
)

# DARTS_V2 exactly as published in quark0/darts cnn/genotypes.py, with the
# concat lists written as ranges the way the PC-DARTS/P-DARTS code does.
DARTS_V2_PUBLISHED = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=range(2, 6))")


def make_alphas(space: SearchSpace, spec: dict[str, dict], base: float = 0.0):
  """Alphas equal to ``base``, with ``spec[cell][(node, input)] = {op: logit}``."""
  rows = {edge: r for r, edge in enumerate(space.edges)}
  alphas = {}
  for cell in ('normal', 'reduce'):
    a = np.full(space.alpha_shape, base, dtype=np.float32)
    for edge, logits in spec.get(cell, {}).items():
      for op, value in logits.items():
        a[rows[edge], space.primitives.index(op)] = value
    alphas[cell] = a
  return alphas


def brute_force_derive(alphas, space: SearchSpace) -> dict[str, list]:
  """An independent, loop-only statement of the DARTS derivation rule."""
  result = {}
  for cell in ('normal', 'reduce'):
    a = np.asarray(alphas[cell], dtype=np.float64)
    probs = np.exp(a) / np.exp(a).sum(axis=-1, keepdims=True)
    ops = [k for k, p in enumerate(space.primitives) if p != 'none']
    pairs = []
    for node in range(space.num_nodes):
      start = space.edge_offset(node)
      best = []
      for j in range(2 + node):
        k = max(ops, key=lambda k: (probs[start + j, k], -k))
        best.append((probs[start + j, k], j, k))
      best.sort(key=lambda t: (-t[0], t[1]))
      pairs += [(space.primitives[k], j) for _, j, k in best[:2]]
    result[cell] = pairs
  return result


# ---------------------------------------------------------------------------
# The value type.


def test_constructor_normalises_lists_to_tuples():
  from_lists = Genotype(normal=[['sep_conv_3x3', 0], ['skip_connect', np.int64(1)]],
                        normal_concat=[2], reduce=[('max_pool_3x3', 0),
                                                   ('max_pool_3x3', 1)],
                        reduce_concat=range(2, 3))
  from_tuples = Genotype(normal=(('sep_conv_3x3', 0), ('skip_connect', 1)),
                         normal_concat=(2,),
                         reduce=(('max_pool_3x3', 0), ('max_pool_3x3', 1)),
                         reduce_concat=(2,))
  assert from_lists == from_tuples
  assert hash(from_lists) == hash(from_tuples)
  assert from_lists.normal == (('sep_conv_3x3', 0), ('skip_connect', 1))
  assert type(from_lists.normal[1][1]) is int
  assert from_lists.num_nodes == 1
  replaced = from_lists._replace(normal_concat=[2])
  assert replaced.normal_concat == (2,)
  with pytest.raises(AttributeError):
    from_lists.normal = ()  # immutable


def test_constructor_rejects_bad_types():
  with pytest.raises(ValueError, match=r'Genotype.normal\[0\]: expected an '
                     r'\(op, input\) pair, got 3 items'):
    Genotype([('sep_conv_3x3', 0, 1)], [2], [], [2])
  with pytest.raises(ValueError, match=r'Genotype.reduce\[0\]: op must be a string'):
    Genotype([], [2], [(3, 0)], [2])
  with pytest.raises(ValueError, match=r'Genotype.normal_concat\[1\]: expected an integer'):
    Genotype([], [2, 3.0], [], [2])


def test_make_validates_and_cell_accessor():
  g = Genotype.make(G3.normal, G3.normal_concat, G3.reduce, G3.reduce_concat,
                    space=SPACE3)
  assert g == G3
  assert g.num_nodes == 3
  assert g.cell('reduce') == (G3.reduce, (2, 3, 4))
  with pytest.raises(ValueError, match="unknown cell type 'other'"):
    g.cell('other')


def test_known_ops():
  assert KNOWN_OPS == (set(DARTS_PRIMITIVES) - {'none'}) | {'sep_conv_7x7',
                                                           'conv_7x1_1x7'}


# ---------------------------------------------------------------------------
# Validation errors.


def with_pair(genotype: Genotype, cell: str, k: int, pair) -> Genotype:
  pairs = list(getattr(genotype, cell))
  pairs[k] = pair
  return genotype._replace(**{cell: pairs})


def test_unknown_op():
  g = with_pair(genotypes.DARTS_V2, 'normal', 3, ('sep_conv_9x9', 1))
  with pytest.raises(ValueError, match=r"Genotype.normal\[3\] \(node 1\): "
                     r"unknown op 'sep_conv_9x9'; known ops: avg_pool_3x3"):
    g.validate()


def test_none_op_is_refused():
  g = with_pair(genotypes.DARTS_V2, 'reduce', 0, ('none', 0))
  with pytest.raises(ValueError, match=r"reduce\[0\] \(node 0\): op 'none'"):
    g.validate()


def test_op_checked_against_space():
  space = SearchSpace(primitives=('none', 'skip_connect', 'sep_conv_3x3'))
  with pytest.raises(ValueError, match=r"normal\[6\] \(node 3\): unknown op "
                     r"'skip_connect'|unknown op 'dil_conv_3x3'"):
    genotypes.DARTS_V2.validate(space)
  assert genotypes.DARTS_V2.validate() is genotypes.DARTS_V2
  # An op of a custom space is fine there, unknown without it.
  custom = Genotype([('conv_1x1', 0), ('conv_1x1', 1)], [2],
                    [('conv_1x1', 1), ('conv_1x1', 0)], [2])
  custom.validate(SearchSpace(primitives=('none', 'conv_1x1'), num_nodes=1))
  with pytest.raises(ValueError, match="unknown op 'conv_1x1'"):
    custom.validate()


def test_input_out_of_range():
  g = with_pair(genotypes.DARTS_V2, 'reduce', 5, ('skip_connect', 7))
  with pytest.raises(ValueError, match=r'Genotype.reduce\[5\] \(node 2\): '
                     r'input 7 out of range, must be 0 <= input < 4'):
    g.validate()
  g = with_pair(genotypes.DARTS_V2, 'normal', 1, ('sep_conv_3x3', 2))
  with pytest.raises(ValueError, match=r'normal\[1\] \(node 0\): input 2 out of '
                     r'range, must be 0 <= input < 2'):
    g.validate()
  g = with_pair(genotypes.DARTS_V2, 'normal', 0, ('sep_conv_3x3', -1))
  with pytest.raises(ValueError, match='input -1 out of range'):
    g.validate()


def test_odd_number_of_edges():
  g = genotypes.DARTS_V2._replace(normal=genotypes.DARTS_V2.normal[:7])
  with pytest.raises(ValueError, match=r'Genotype.normal: odd number of edges \(7\)'):
    g.validate()


def test_node_count_mismatch():
  g = genotypes.DARTS_V2._replace(reduce=genotypes.DARTS_V2.reduce[:6])
  with pytest.raises(ValueError, match=r'normal has 4 nodes \(8 edges\) but '
                     r'reduce has 3 nodes \(6 edges\)'):
    g.validate()
  with pytest.raises(ValueError, match='3 nodes per cell, but the search space has 4'):
    G3.validate(DARTS_SPACE)


def test_empty_cell():
  g = G3._replace(normal=[], reduce=[])
  with pytest.raises(ValueError, match='Genotype.normal: no edges'):
    g.validate()


@pytest.mark.parametrize('concat, message', [
    ([], r'Genotype.normal_concat: empty'),
    ([2, 5], r'Genotype.normal_concat\[1\]: state 5 out of range, must be '
             r'0 <= state < 5'),
    ([2, 3, 2], r'Genotype.normal_concat\[2\]: state 2 repeats'),
])
def test_bad_concat(concat, message):
  with pytest.raises(ValueError, match=message):
    G3._replace(normal_concat=concat).validate()


# ---------------------------------------------------------------------------
# Text form.


def test_str_is_the_papers_repr():
  text = str(genotypes.DARTS_V2)
  assert text.startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ")
  assert ", normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), " in text
  assert text.endswith("('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
  assert repr(genotypes.DARTS_V2) == text
  assert str(G3) == (
      "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), "
      "('dil_conv_5x5', 2), ('sep_conv_5x5', 0), ('avg_pool_3x3', 3), "
      "('sep_conv_3x3', 1)], normal_concat=[2, 3, 4], "
      "reduce=[('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
      "('dil_conv_3x3', 1), ('sep_conv_5x5', 2), ('avg_pool_3x3', 3)], "
      "reduce_concat=[2, 3, 4])")


@pytest.mark.parametrize('genotype, space', [
    (genotypes.DARTS_V2, DARTS_SPACE), (G3, SPACE3)])
def test_text_round_trip(genotype, space):
  assert Genotype.parse(str(genotype)) == genotype
  assert Genotype.parse(str(genotype), space=space) == genotype


def test_published_darts_v2_text_parses_to_registry_value():
  g = Genotype.parse(DARTS_V2_PUBLISHED, space=DARTS_SPACE)
  assert g == genotypes.DARTS_V2
  assert g.normal_concat == (2, 3, 4, 5) and g.reduce_concat == (2, 3, 4, 5)


def test_parse_variants():
  text = '''
      # keyword order varies, tuples, double quotes, comments, trailing commas
      (
        reduce_concat = range(5),
        reduce = (
          ["max_pool_3x3", 1], ("max_pool_3x3", 0,),
          ("skip_connect", 2), ("dil_conv_3x3", 1),
          ("sep_conv_5x5", 2), ("avg_pool_3x3", 3),
        ),
        normal_concat = (2, 3, 4,),
        normal = [('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2),
                  ('sep_conv_5x5', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3',1),],
      )
  '''
  g = Genotype.parse(text)
  assert g == G3._replace(reduce_concat=(0, 1, 2, 3, 4))
  assert Genotype.parse('Genotype' + text.strip().split('\n', 1)[1]) == g


@pytest.mark.parametrize('text, message', [
    # Syntax errors, as Python's parser reports them.
    (str(G3)[:-1], r'Genotype.parse: syntax error at position 8 \(line 1, '
                   r'column 9\) near "\(normal=.*"; \'\(\' was never closed'),
    (str(G3).replace('normal_concat=[2, 3, 4]', 'normal_concat=[2, 3 $ 4]'),
     r'syntax error at position 164 \(line 1, column 165\) '
     r'near "\$ 4\], reduce='),
    (str(G3).replace('[2, 3, 4]', '[2, 3 4]', 1),
     r'syntax error at position 162 .* near "3 4\], .*Perhaps you forgot a '
     'comma'),
    (str(G3).replace("'skip_connect', 1", 'skip_connect, 1', 1),
     r"expected a value, found 'skip_connect' at position"),
    ('Genotyp' + str(G3)[8:], r"expected 'Genotype\(', found 'Genotyp' at position 0"),
    (str(G3) + ' extra', r'syntax error at position 329 .* near "extra"'),
    (str(G3).replace("'sep_conv_3x3', 0", "'sep_conv_3x3\n', 0", 1),
     r'syntax error at position 18 \(line 1, column 19\) near '
     r'"\'sep_conv_3x3\\n\', 0\), .*; unterminated string'),
    # Fields.
    (str(G3).replace(', reduce_concat=[2, 3, 4]', ''),
     r"Genotype.parse: missing field 'reduce_concat'"),
    (str(G3).replace('normal_concat', 'norm_concat'),
     r"unknown field 'norm_concat' at position \d+ .*; fields are normal, "
     r'normal_concat, reduce, reduce_concat'),
    (str(G3)[:-1] + ', normal=[])', r"field 'normal' given twice at position"),
    # Pairs and values.
    (str(G3).replace("('skip_connect', 1)", "('skip_connect', 1, 2)"),
     r'normal\[1\] must be an \(op, input\) pair, found 3 items at position 38'),
    (str(G3).replace("('skip_connect', 1)", "('skip_connect',)"),
     r'normal\[1\] must be an \(op, input\) pair, found 1 items'),
    (str(G3).replace("('skip_connect', 1)", "(1, 'skip_connect')"),
     r'normal\[1\]: op must be a quoted string, found int'),
    (str(G3).replace('reduce_concat=[2, 3, 4]', 'reduce_concat=range(1, 2, 3)'),
     r'range\(\) takes 1 or 2 arguments, got 3'),
    (str(G3).replace('reduce_concat=[2, 3, 4]', "reduce_concat=['2']"),
     r"field 'reduce_concat' must hold integers, found str"),
    ('', r"expected '\(' to open 'Genotype\(', found end of text at position 0"),
    # Syntax fine, genotype invalid.
    (str(G3).replace('sep_conv_5x5', 'sep_conv_9x9', 1),
     r"Genotype.normal\[3\] \(node 1\): unknown op 'sep_conv_9x9'"),
    (str(G3).replace("('avg_pool_3x3', 3)", "('avg_pool_3x3', 4)", 1),
     r'Genotype.normal\[4\] \(node 2\): input 4 out of range, must be 0 <= input < 4'),
])
def test_parse_errors(text, message):
  with pytest.raises(ValueError, match=message):
    Genotype.parse(text)


def test_parse_error_names_line_and_column():
  text = 'Genotype(\n  normal=[],\n  normal_concat=[2] ]'
  with pytest.raises(ValueError, match=r'syntax error at position 43 \(line 3, '
                     r'column 21\) near "\]"; closing parenthesis'):
    Genotype.parse(text)


class _Spy:
  """Records any call or attribute access made on it."""

  def __init__(self, log):
    self.log = log

  def __call__(self, *args):
    self.log.append(('call', args))
    return self

  def __getattr__(self, name):
    self.log.append(('getattr', name))
    return self


# Code put into the text of G3 (replacing ``old``), the part of it the error
# must point at, and the error.
_CODE = [
    ('[2, 3, 4]', 'spy()', 'spy()', r"expected a value, found 'spy\(\)'"),
    ('[2, 3, 4]', '[2, 3, spy.four]', 'spy.four',
     r"expected a value, found 'spy.four'"),
    ('[2, 3, 4]', "__import__('jaxdarts_spy').STATES", '__import__',
     r"expected a value, found \"__import__\('jaxdarts_spy'\).STATES\""),
    ("'skip_connect'", "spy('skip_connect')", 'spy(',
     r"expected a value, found \"spy\('skip_connect'\)\""),
    ('[2, 3, 4]', 'range(spy())', 'spy()',
     r"expected an integer argument of range\(\), found 'spy\(\)'"),
    ('[2, 3, 4]', '[2, 3, 2 + 2]', '2 + 2',
     r"expected a value, found '2 \+ 2'"),
    ('Genotype', "__import__('jaxdarts_spy').Genotype", '__import__',
     r"expected 'Genotype\(', found \"__import__\('jaxdarts_spy'\).Genotype\""),
    ('normal=', '**spy(), normal=', '**spy()',
     r"expected a field name, found '\*\*spy\(\)'"),
    ('normal=', 'spy(), normal=', 'spy()',
     r"expected a field name, found 'spy\(\)'"),
]


@pytest.mark.parametrize('old, code, at, message', _CODE)
def test_parse_refuses_code_without_running_it(old, code, at, message,
                                               monkeypatch):
  log = []
  monkeypatch.setattr(builtins, 'spy', _Spy(log), raising=False)
  real_import = builtins.__import__

  def spy_import(name, *args, **kwargs):
    if name.startswith('jaxdarts_spy'):
      log.append(('import', name))
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', spy_import)
  text = str(G3).replace(old, code, 1)
  position = text.index(code) + code.index(at)
  with pytest.raises(ValueError, match=f'{message} at position {position} '):
    Genotype.parse(text)
  assert log == []


@pytest.mark.parametrize('old, new, at, message', [
    # Literals other than ints, strings, lists, tuples and range(...).
    ('[2, 3, 4]', '[2, 3, 4.0]', '4.0', r"expected a value, found '4.0'"),
    ('[2, 3, 4]', '[2, 3, True]', 'True', r"expected a value, found 'True'"),
    ("'skip_connect'", "f'skip_connect'", "f'",
     r"expected a value, found \"f'skip_connect'\""),
    ('[2, 3, 4]', 'range(9 ** 99)', '9 **',
     r"integer argument of range\(\), found '9 \*\* 99'"),
    ('[2, 3, 4]', 'range(1000000000)', 'range',
     r'range\(\) of 1000000000 states is too long'),
    ('[2, 3, 4]', 'range(stop=5)', 'stop',
     r"integer argument of range\(\), found 'stop=5'"),
    # Columns count characters, not UTF-8 bytes.
    ("('dil_conv_5x5', 2)", "('dïl_conv_5x5', x)", 'x)',
     r"expected a value, found 'x'"),
])
def test_parse_refuses_other_values(old, new, at, message):
  text = str(G3).replace(old, new, 1)
  position = text.index(new) + new.index(at)
  with pytest.raises(ValueError, match=f'{message} at position {position} '
                     rf'\(line 1, column {position + 1}\)'):
    Genotype.parse(text)


def test_parse_reads_signed_ints():
  text = str(G3).replace("'skip_connect', 1", "'skip_connect', -1", 1)
  with pytest.raises(ValueError, match=r'Genotype.normal\[1\] \(node 0\): '
                     'input -1 out of range'):
    Genotype.parse(text)
  assert Genotype.parse(str(G3).replace(', 1)', ', +1)')) == G3


@pytest.mark.parametrize('name', ['Genotype', ''])
@pytest.mark.parametrize('newline', ['', '\n   '])
def test_parse_positions_after_indentation_and_comments(name, newline):
  """Leading lines and indentation, and an omitted name, keep positions."""
  assert Genotype.parse(f'  # G3\n\t  {G3}  \n  ') == G3
  text = f'  # G3\n    {name}{str(G3)[8:]}'.replace(
      ', normal_concat=[2, 3, 4]', f',{newline} normal_concat=[2, x]', 1)
  position = text.index('x]')
  line = text.count('\n', 0, position) + 1
  column = position - text.rindex('\n', 0, position)
  with pytest.raises(ValueError, match=rf"found 'x' at position {position} "
                     rf'\(line {line}, column {column}\) near "x\], reduce='):
    Genotype.parse(text)


def test_parse_with_space():
  with pytest.raises(ValueError, match='3 nodes per cell, but the search space has 4'):
    Genotype.parse(str(G3), space=DARTS_SPACE)


# ---------------------------------------------------------------------------
# Dict and JSON forms.


@pytest.mark.parametrize('genotype', [genotypes.DARTS_V2, G3])
def test_json_round_trip(genotype, tmp_path):
  data = json.loads(genotype.to_json())
  assert data['normal'][0] == list(genotype.normal[0])
  assert data['normal_concat'] == list(genotype.normal_concat)
  assert Genotype.from_json(genotype.to_json()) == genotype
  assert Genotype.from_dict(genotype.to_dict()) == genotype
  path = tmp_path / 'genotype.json'
  genotype.save(path)
  assert Genotype.load(path) == genotype
  assert Genotype.load(str(path), space=SearchSpace(num_nodes=genotype.num_nodes)) == genotype


def test_load_text_form(tmp_path):
  path = tmp_path / 'genotype.txt'
  path.write_text(DARTS_V2_PUBLISHED + '\n')
  assert Genotype.load(path) == genotypes.DARTS_V2


def test_bad_json():
  with pytest.raises(ValueError, match=r'Genotype.from_json: malformed JSON: '
                     r'.* at line 1 column \d+'):
    Genotype.from_json(G3.to_json()[:-2])
  with pytest.raises(ValueError, match='expected a mapping'):
    Genotype.from_json('[1, 2]')


def test_bad_json_file_names_the_file(tmp_path):
  path = tmp_path / 'broken.json'
  path.write_text('{"normal": [["sep_conv_3x3", 0],')
  with pytest.raises(ValueError, match=r"Genotype.load\('.*broken.json'\): "
                     'Genotype.from_json: malformed JSON'):
    Genotype.load(path)
  path.write_text('Genotype(normal=[')
  with pytest.raises(ValueError, match=r"Genotype.load\('.*broken.json'\): "
                     'Genotype.parse: syntax error'):
    Genotype.load(path)


@pytest.mark.parametrize('key', ['normal', 'normal_concat', 'reduce', 'reduce_concat'])
def test_missing_json_key(key):
  data = G3.to_dict()
  del data[key]
  with pytest.raises(ValueError, match=f"Genotype.from_dict: missing key '{key}'"):
    Genotype.from_json(json.dumps(data))


def test_unknown_json_key_and_bad_values():
  data = dict(G3.to_dict(), name='G3')
  with pytest.raises(ValueError, match="unknown key 'name'"):
    Genotype.from_dict(data)
  data = G3.to_dict()
  data['reduce'][2] = ['skip_connect', 2, 0]
  with pytest.raises(ValueError, match=r'Genotype.reduce\[2\]: expected an '
                     r'\(op, input\) pair, got 3 items'):
    Genotype.from_dict(data)
  data = G3.to_dict()
  data['normal'][0][1] = 0.5
  with pytest.raises(ValueError, match=r'Genotype.normal\[0\]: expected an integer'):
    Genotype.from_dict(data)
  data = G3.to_dict()
  data['normal'][0][0] = 'conv_9x9'
  with pytest.raises(ValueError, match="unknown op 'conv_9x9'"):
    Genotype.from_json(json.dumps(data))


# ---------------------------------------------------------------------------
# Derivation.


def test_derive_known_answer():
  spec = {
      'normal': {
          # Node 0: both inputs kept, strongest (input 1) first.
          (0, 0): {'sep_conv_3x3': 2.0},
          (0, 1): {'dil_conv_5x5': 4.0},
          # Node 1: input 2 and 0 win; input 1 has 'none' by far the largest.
          (1, 0): {'skip_connect': 3.0},
          (1, 1): {'none': 9.0, 'sep_conv_5x5': 1.0},
          (1, 2): {'avg_pool_3x3': 5.0},
          # Node 2: 'none' is the largest op on every edge; the edges are
          # ranked by their best other op, and 'none' is never chosen.
          (2, 0): {'none': 10.0},
          (2, 1): {'none': 10.0, 'avg_pool_3x3': 2.0},
          (2, 2): {'none': 10.0},
          (2, 3): {'none': 10.0, 'dil_conv_3x3': 3.0},
          # Node 3: input 4 strongest, then input 0.
          (3, 0): {'sep_conv_5x5': 3.0},
          (3, 1): {'max_pool_3x3': 1.0},
          (3, 4): {'skip_connect': 6.0},
      },
      'reduce': {
          (0, 0): {'max_pool_3x3': 1.0},
          (0, 1): {'max_pool_3x3': 1.0},   # tie: lower input first
          (1, 2): {'skip_connect': 2.0},
          (1, 1): {'max_pool_3x3': 1.0},
          (2, 0): {'sep_conv_3x3': 1.0, 'sep_conv_5x5': 1.0},  # op tie
          (2, 3): {'dil_conv_3x3': 3.0},
          (3, 2): {'avg_pool_3x3': 3.0},
          (3, 3): {'avg_pool_3x3': 3.0},
      },
  }
  g = derive_genotype(make_alphas(DARTS_SPACE, spec))
  assert g.normal == (
      ('dil_conv_5x5', 1), ('sep_conv_3x3', 0),
      ('avg_pool_3x3', 2), ('skip_connect', 0),
      ('dil_conv_3x3', 3), ('avg_pool_3x3', 1),
      ('skip_connect', 4), ('sep_conv_5x5', 0),
  )
  assert g.reduce == (
      ('max_pool_3x3', 0), ('max_pool_3x3', 1),
      ('skip_connect', 2), ('max_pool_3x3', 1),
      ('dil_conv_3x3', 3), ('sep_conv_3x3', 0),
      ('avg_pool_3x3', 2), ('avg_pool_3x3', 3),
  )
  assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
  assert all(op != 'none' for op, _ in g.normal + g.reduce)


def test_derive_none_largest_everywhere():
  # 'none' dominates every row; the other ops are uniform, so all edges tie
  # and the first two inputs with the first non-'none' op are kept.
  alphas = make_alphas(DARTS_SPACE, {}, base=0.0)
  for cell in alphas:
    alphas[cell][:, DARTS_PRIMITIVES.index('none')] = 20.0
  g = derive_genotype(alphas)
  for i in range(4):
    assert g.normal[2 * i:2 * i + 2] == (('max_pool_3x3', 0), ('max_pool_3x3', 1))
  assert g == derive_genotype(make_alphas(DARTS_SPACE, {}))


def test_derive_three_nodes():
  spec = {'normal': {(0, 1): {'sep_conv_3x3': 2.0}, (1, 2): {'skip_connect': 2.0},
                     (1, 0): {'dil_conv_3x3': 1.0}, (2, 3): {'none': 5.0},
                     (2, 2): {'sep_conv_5x5': 2.0}, (2, 1): {'avg_pool_3x3': 1.0}},
          'reduce': {(2, 3): {'max_pool_3x3': 2.0}}}
  g = derive_genotype(make_alphas(SPACE3, spec), space=SPACE3)
  assert g.num_nodes == 3
  assert g.normal == (('sep_conv_3x3', 1), ('max_pool_3x3', 0),
                      ('skip_connect', 2), ('dil_conv_3x3', 0),
                      ('sep_conv_5x5', 2), ('avg_pool_3x3', 1))
  assert g.reduce[4:] == (('max_pool_3x3', 3), ('max_pool_3x3', 0))
  assert g.normal_concat == g.reduce_concat == (2, 3, 4)


def test_derive_other_primitives():
  space = SearchSpace(primitives=('conv_1x1', 'none', 'identity', 'conv_3x3'),
                      num_nodes=2)
  spec = {'normal': {(0, 0): {'none': 8.0, 'conv_3x3': 1.0},
                     (1, 2): {'identity': 3.0}, (1, 0): {'conv_3x3': 2.0}},
          'reduce': {}}
  g = derive_genotype(make_alphas(space, spec), space=space)
  assert g.normal == (('conv_1x1', 1), ('conv_3x3', 0),
                      ('identity', 2), ('conv_3x3', 0))
  assert g.reduce == (('conv_1x1', 0), ('conv_1x1', 1),
                      ('conv_1x1', 0), ('conv_1x1', 1))
  # Without 'none', every op competes.
  space = SearchSpace(primitives=('a', 'b'), num_nodes=1)
  alphas = {'normal': np.array([[0.0, 1.0], [2.0, 0.0]]),
            'reduce': np.array([[0.0, 0.0], [0.0, 3.0]])}
  g = derive_genotype(alphas, space=space)
  assert g.normal == (('a', 1), ('b', 0))
  assert g.reduce == (('b', 1), ('a', 0))


@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('space', [DARTS_SPACE, SPACE3])
def test_derive_matches_brute_force(seed, space):
  rng = np.random.default_rng(seed)
  alphas = {cell: rng.normal(size=space.alpha_shape) for cell in ('normal', 'reduce')}
  g = derive_genotype(alphas, space=space)
  expected = brute_force_derive(alphas, space)
  assert list(g.normal) == expected['normal']
  assert list(g.reduce) == expected['reduce']


def test_derive_accepts_jax_arrays():
  import jax
  alphas = DARTS_SPACE.init_alphas(jax.random.PRNGKey(0), scale=1.0)
  g = derive_genotype(alphas)
  assert g == derive_genotype({k: np.asarray(v) for k, v in alphas.items()})
  g.validate(DARTS_SPACE)


def test_derive_bad_alphas():
  alphas = make_alphas(DARTS_SPACE, {})
  with pytest.raises(ValueError, match=(
      r"^derive: alphas\['normal'\] has shape \(14, 7\), "
      r'expected \(14, 8\) \(num_edges=14 for 4 nodes, num_ops=8')):
    derive_genotype(dict(alphas, normal=alphas['normal'][:, :7]))
  with pytest.raises(ValueError, match=r"alphas\['normal'\] has shape \(14, 8\), "
                     r'expected \(9, 8\)'):
    derive_genotype(alphas, space=SPACE3)
  with pytest.raises(ValueError, match="alphas has no 'reduce' entry"):
    derive_genotype({'normal': alphas['normal']})
  with pytest.raises(ValueError, match='non-finite'):
    derive_genotype(dict(alphas, reduce=alphas['reduce'] * np.nan))


@pytest.mark.parametrize('space', [DARTS_SPACE, SPACE3])
def test_darts_derives_the_top2_genotype_of_its_op_weights(space):
  """The rule on op weights (the space's) and on alphas (the method's)."""
  rng = np.random.default_rng(7)
  alphas = {cell: rng.normal(size=space.alpha_shape)
            for cell in ('normal', 'reduce')}
  expected = brute_force_derive(alphas, space)
  weights = {cell: np.exp(a) / np.exp(a).sum(-1, keepdims=True)
             for cell, a in alphas.items()}
  for g in (top2_genotype(weights, space), space.derive(weights),
            methods.get('darts').derive(alphas, space)):
    assert list(g.normal) == expected['normal']
    assert list(g.reduce) == expected['reduce']
  with pytest.raises(ValueError, match="^derive: weights has no 'reduce'"):
    top2_genotype({'normal': weights['normal']}, space)


def test_same_architecture_ignores_the_order_of_pairs_and_concat():
  v2 = genotypes.DARTS_V2
  swapped = v2._replace(normal=v2.normal[1::-1] + v2.normal[2:],
                        reduce_concat=v2.reduce_concat[::-1])
  assert swapped != v2
  assert v2.same_architecture(swapped) and swapped.same_architecture(v2)
  moved = v2._replace(normal=v2.normal[:7] + (('dil_conv_3x3', 1),))
  assert not v2.same_architecture(moved)
  assert not v2.same_architecture(genotypes.DARTS_V1)
  assert not v2.same_architecture(None)


# ---------------------------------------------------------------------------
# Published genotypes.


@pytest.mark.parametrize('name', genotypes.names())
def test_published_genotypes_parse_and_validate(name):
  g = genotypes.PUBLISHED[name]
  assert g == Genotype.parse(genotypes.PUBLISHED_TEXT[name], space=DARTS_SPACE)
  assert g.validate(DARTS_SPACE) is g
  assert g.num_nodes == 4
  assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
  assert name in genotypes.SOURCES and 'github.com/' in genotypes.SOURCES[name]
  assert genotypes.get(name.lower()) is g
  assert Genotype.parse(str(g)) == g


def test_published_spot_checks():
  v2 = genotypes.DARTS_V2
  assert v2.normal[:2] == (('sep_conv_3x3', 0), ('sep_conv_3x3', 1))
  assert v2.normal[5] == ('skip_connect', 0)
  assert v2.normal[7] == ('dil_conv_3x3', 2)
  assert v2.reduce[2:4] == (('skip_connect', 2), ('max_pool_3x3', 1))
  assert v2.reduce[7] == ('max_pool_3x3', 1)
  v1 = genotypes.DARTS_V1
  assert v1.normal[0] == ('sep_conv_3x3', 1) and v1.reduce[7] == ('avg_pool_3x3', 0)
  assert genotypes.PC_DARTS.reduce[5] == ('sep_conv_3x3', 3)
  assert genotypes.PDARTS.normal[7] == ('dil_conv_5x5', 4)
  assert set(genotypes.names()) >= {'DARTS_V1', 'DARTS_V2', 'PC_DARTS', 'PDARTS'}


def test_registry_lookup():
  assert genotypes.get('darts') is genotypes.DARTS_V2
  assert genotypes.get('Darts_V1') is genotypes.DARTS_V1
  assert genotypes.get('pc-darts') is genotypes.PC_DARTS
  assert genotypes.get('PCDARTS') is genotypes.PC_DARTS
  with pytest.raises(ValueError, match=r"unknown genotype 'enas'; known: "
                     r'DARTS_V1, DARTS_V2, .*PDARTS'):
    genotypes.get('enas')
