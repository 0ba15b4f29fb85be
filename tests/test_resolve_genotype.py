"""Tests of jaxdarts.genotypes.resolve: every form of a genotype a user gives.

``--genotype=`` of the retraining command and ``config.genotype`` take a
genotype text (or its JSON), a published name, or a path to a genotype file
or a search workdir; the inputs here are realistic ones (the published
cells' texts, paths with ``~`` and spaces).
"""

from __future__ import annotations

import pytest

from jaxdarts import genotypes

# The published CIFAR-10 cells: 4 nodes, texts of 450-470 characters, the
# PC-DARTS and P-DARTS ones with range(2, 6) concats as in their repositories.
PUBLISHED = ('DARTS_V1', 'DARTS_V2', 'PC_DARTS', 'PDARTS')


@pytest.mark.parametrize('name', PUBLISHED)
def test_resolve_takes_texts_and_names(name):
  text = genotypes.PUBLISHED_TEXT[name]
  assert len(text.encode()) > 255  # Too long for a file name.
  expected = genotypes.get(name)
  resolve = genotypes.resolve
  assert resolve(text) == expected
  assert resolve(f'\n  {text}\n') == expected
  # Pasted from a paper's repository: a comment, over several lines.
  assert resolve(f'# {name}, CIFAR-10\n' + text.replace('), (', '),\n  (')) == (
      expected)
  assert resolve(expected.to_json(indent=2)) == expected  # genotype.json's.
  assert resolve(expected) == expected
  assert resolve(name) == expected
  assert resolve(name.lower().replace('_', '-')) == expected


def test_resolve_takes_paths(home, monkeypatch):
  """Genotype files (.json, .txt) and search workdirs, however written."""
  resolve = genotypes.resolve
  for name in PUBLISHED:
    expected = genotypes.get(name)
    files = home / 'my genotypes'
    files.mkdir(exist_ok=True)
    expected.save(files / f'{name}.json')
    (files / f'{name}.txt').write_text(genotypes.PUBLISHED_TEXT[name] + '\n')
    search = home / 'search runs' / name.lower()
    search.mkdir(parents=True)
    expected.save(search / 'genotype.json')
    specs = [f'~/my genotypes/{name}.json', f'~/my genotypes/{name}.txt',
             files / f'{name}.json', f'{files}/{name}.txt',
             f'~/search runs/{name.lower()}', f'~/search runs/{name.lower()}/',
             f'{search}/', search]
    for spec in specs:
      assert resolve(spec) == expected, spec
  monkeypatch.chdir(home / 'search runs')
  assert resolve('pdarts/') == genotypes.get('PDARTS')  # Not the name.
  assert resolve('../my genotypes/DARTS_V1.txt') == genotypes.get('DARTS_V1')


def test_a_published_name_wins_over_a_directory(tmp_path, monkeypatch,
                                                 caplog):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'darts').mkdir()
  genotypes.DARTS_V1.save(tmp_path / 'darts' / 'genotype.json')
  assert genotypes.resolve('darts') == genotypes.DARTS_V2
  assert 'write ./darts for it' in caplog.text
  assert genotypes.resolve('./darts') == genotypes.DARTS_V1


def _refusal(spec) -> str:
  """The message of `resolve`'s error, which lists every form."""
  with pytest.raises(ValueError, match='published name: DARTS_V1') as info:
    genotypes.resolve(spec)
  message = str(info.value)
  assert 'path to a genotype file' in message
  assert 'Genotype(normal=' in message
  return message


@pytest.mark.parametrize('spec', ['no_such_genotype', '', 'sep_conv_3x3',
                                  'x' * 300, None])
def test_resolve_rejects_garbage(spec):
  assert 'is not a genotype;' in _refusal(spec)


def test_resolve_says_why(home):
  assert 'did you mean DARTS_V2?' in _refusal('DARTS_V3')
  assert 'did you mean PC_DARTS?' in _refusal('pc-dart')
  assert 'no such file or directory: /no/such/file.json' in _refusal(
      '/no/such/file.json')
  assert f'no such file or directory: {home}/my runs/genotype.json' in (
      _refusal('~/my runs/genotype.json'))
  assert f'{home} holds no genotype.json' in _refusal('~/')
  (home / 'bad.txt').write_text('Genotype(normal=[]')
  assert "malformed: Genotype.load('" in _refusal('~/bad.txt')


def test_resolve_reports_malformed_text():
  text = genotypes.PUBLISHED_TEXT['DARTS_V2']
  message = _refusal(text[:-1])  # The closing parenthesis lost.
  # Named at the parenthesis left open.
  assert 'malformed: Genotype.parse: syntax error at position 8 ' in message
  assert "'(' was never closed" in message
  message = _refusal(text.replace('sep_conv_3x3', 'sep_conv_9x9'))
  assert ("malformed: Genotype.normal[0] (node 0): unknown op 'sep_conv_9x9'"
          in message)
  assert 'malformed JSON' in _refusal('{"normal": [["sep_conv_3x3", 0]')
