"""The text form of a genotype, read with `ast` and never evaluated.

The text is parsed as a Python expression and only literal nodes are
accepted: ints (with an optional sign), strings, lists, tuples and
``range(...)`` of ints. Errors name the position, line and column of the
offending text. `Genotype.parse` is the public entry point.
"""

from __future__ import annotations

import ast
import re
from typing import Any

FIELDS = ('normal', 'normal_concat', 'reduce', 'reduce_concat')

Pair = tuple[str, int]


_LEADING = re.compile(r'(?:\s|#[^\n]*)*')  # Whitespace and comments.
_VALUES = 'values are integers, quoted strings, lists, tuples and range(...)'


def _syntax_error(text: str, pos: int, message: str,
                  hint: str = '') -> ValueError:
  """A ValueError naming position, line, column and an excerpt of ``text``.

  Reads ``Genotype.parse: <message> at position <pos> (line <l>, column <c>)
  near "<text from pos>"; <hint>``.
  """
  line = text.count('\n', 0, pos) + 1
  column = pos - (text.rfind('\n', 0, pos) + 1) + 1
  where = f'at position {pos} (line {line}, column {column})'
  if pos < len(text):
    excerpt = text[pos:pos + 24].replace('\n', '\\n')
    dots = '...' if pos + 24 < len(text) else ''
    where += f' near "{excerpt}{dots}"'
  hint = f'; {hint}' if hint else ''
  return ValueError(f'Genotype.parse: {message} {where}{hint}')


def _describe(node: ast.AST) -> str:
  """The source of ``node`` (rebuilt from the tree), quoted and shortened."""
  source = ast.unparse(node)
  return repr(source if len(source) <= 40 else source[:37] + '...')


def _int_value(node: ast.AST) -> int | None:
  """The value of a literal ``n``, ``-n`` or ``+n``; None for other nodes."""
  sign = 1
  if isinstance(node, ast.UnaryOp) and isinstance(node.op,
                                                  (ast.UAdd, ast.USub)):
    sign = -1 if isinstance(node.op, ast.USub) else 1
    node = node.operand
  if isinstance(node, ast.Constant) and type(node.value) is int:
    return sign * node.value
  return None


class _Parser:
  """Reads one genotype's text form from the tree `ast.parse` builds.

  Leading whitespace and comments are dropped (keeping the line count) and
  the name ``Genotype`` is put before a leading ``(``, so ``ast`` parses the
  text as a call; positions are mapped back to the original text.
  """

  def __init__(self, text: str):
    if not isinstance(text, str):
      raise ValueError(f'Genotype.parse: expected a string, got '
                       f'{type(text).__name__}')
    self.text = text
    self.start = _LEADING.match(text).end()
    if self.start == len(text):
      raise _syntax_error(text, self.start,
                          "expected '(' to open 'Genotype(', found end of text")
    self.line = text.count('\n', 0, self.start) + 1
    self.name = 'Genotype' if text[self.start] == '(' else ''
    # ast refuses indented blank last lines unless they end in a newline.
    source = '\n' * (self.line - 1) + self.name + text[self.start:] + '\n'
    self.lines = source.split('\n')
    try:
      self.tree = ast.parse(source, mode='eval').body
    except SyntaxError as e:
      if not e.lineno:
        raise ValueError(f'Genotype.parse: {e.msg}') from None
      pos = self.position(e.lineno, (e.offset or 1) - 1)
      hint = '' if e.msg == 'invalid syntax' else e.msg
      raise _syntax_error(text, pos, 'syntax error', hint) from None
    except (MemoryError, RecursionError):  # The parser's own stack.
      raise ValueError('Genotype.parse: text too deeply nested') from None

  def position(self, lineno: int, column: int) -> int:
    """The position in ``text`` of a line and 0-based column of the source."""
    if lineno == self.line:
      return self.start + max(column - len(self.name), 0)
    lines = self.text.split('\n')[:lineno - 1]
    return min(sum(len(line) + 1 for line in lines) + column, len(self.text))

  def error(self, node: ast.AST, message: str, hint: str = '') -> ValueError:
    # ast counts columns in UTF-8 bytes.
    line = self.lines[node.lineno - 1].encode()
    column = len(line[:node.col_offset].decode(errors='ignore'))
    return _syntax_error(self.text, self.position(node.lineno, column),
                         message, hint)

  def kind(self, node: ast.AST) -> str:
    """'int', 'str', 'list', 'tuple' or 'range'; refuses any other node."""
    if _int_value(node) is not None:
      return 'int'
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      return 'str'
    if isinstance(node, (ast.List, ast.Tuple)):
      return 'list' if isinstance(node, ast.List) else 'tuple'
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id == 'range'):
      return 'range'
    raise self.error(node, f'expected a value, found {_describe(node)}',
                     _VALUES)

  def genotype_fields(self) -> dict[str, Any]:
    """``Genotype(field=value, ...)``: keywords only, each field once."""
    call = self.tree
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == 'Genotype'):
      head = call.func if isinstance(call, ast.Call) else call
      raise self.error(head, f"expected 'Genotype(', found {_describe(head)}")
    nodes: dict[str, ast.AST] = {}
    for arg in [*call.args, *call.keywords]:
      name = getattr(arg, 'arg', None)
      if name is None:  # A positional argument or **mapping.
        raise self.error(arg, f'expected a field name, found {_describe(arg)}')
      if name not in FIELDS:
        raise self.error(arg, f'unknown field {name!r}',
                         f'fields are {", ".join(FIELDS)}')
      if name in nodes:
        raise self.error(arg, f'field {name!r} given twice')
      nodes[name] = arg.value
    for name in FIELDS:
      if name not in nodes:
        raise ValueError(f'Genotype.parse: missing field {name!r}')
    return {
        'normal': self.pairs('normal', nodes['normal']),
        'normal_concat': self.concat('normal_concat', nodes['normal_concat']),
        'reduce': self.pairs('reduce', nodes['reduce']),
        'reduce_concat': self.concat('reduce_concat', nodes['reduce_concat']),
    }

  def pairs(self, field: str, node: ast.AST) -> list[Pair]:
    """A list of ``(op, input)`` pairs, checking each one's shape."""
    if (kind := self.kind(node)) not in ('list', 'tuple'):
      raise self.error(node, f'field {field!r} must be a list of '
                       f'(op, input) pairs, found {kind}')
    pairs = []
    for k, item in enumerate(node.elts):
      where = f'{field}[{k}]'
      if (kind := self.kind(item)) not in ('list', 'tuple'):
        raise self.error(item, f'{where} must be an (op, input) pair, '
                         f'found {kind}')
      if len(item.elts) != 2:
        raise self.error(item, f'{where} must be an (op, input) pair, '
                         f'found {len(item.elts)} items')
      op, state = item.elts
      if (kind := self.kind(op)) != 'str':
        raise self.error(op, f'{where}: op must be a quoted string, '
                         f'found {kind}')
      if (kind := self.kind(state)) != 'int':
        raise self.error(state, f'{where}: input must be an integer, '
                         f'found {kind}')
      pairs.append((op.value, _int_value(state)))
    return pairs

  def concat(self, field: str, node: ast.AST) -> tuple[int, ...]:
    """A list or tuple of ints, or ``range(stop)``/``range(start, stop)``."""
    if (kind := self.kind(node)) == 'range':
      return self.range_call(node)
    if kind not in ('list', 'tuple'):
      raise self.error(node, f'field {field!r} must be a list of ints or '
                       f'a range, found {kind}')
    for item in node.elts:
      if (kind := self.kind(item)) != 'int':
        raise self.error(item, f'field {field!r} must hold integers, '
                         f'found {kind}')
    return tuple(_int_value(item) for item in node.elts)

  def range_call(self, node: ast.Call) -> tuple[int, ...]:
    """The ints of ``range(stop)`` or ``range(start, stop)``."""
    args = [*node.args, *node.keywords]
    for arg in args:
      if _int_value(arg) is None:
        raise self.error(arg, 'expected an integer argument of range(), '
                         f'found {_describe(arg)}')
    if len(args) not in (1, 2):
      raise self.error(node, f'range() takes 1 or 2 arguments, got {len(args)}')
    states = range(*map(_int_value, args))
    if len(states) > len(self.text):  # More states than any genotype here has.
      raise self.error(node, f'range() of {len(states)} states is too long')
    return tuple(states)


def parse_fields(text: str) -> dict:
  """The four fields of a genotype text, as ints, strings and tuples."""
  return _Parser(text).genotype_fields()
