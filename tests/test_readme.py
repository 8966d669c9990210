"""The README's Python snippets run as written."""

import ast
import inspect
import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index):
  source = SNIPPETS[index]
  exec(compile(source, f"README.md snippet {index}", "exec"), {})


def _table_signatures():
  """Every `name(arguments)` in the first column of README's API table."""
  table = README.read_text().split("## What is in the box", 1)[1]
  table = table.split("\n\n", 2)[1]
  for row in table.splitlines()[2:]:
    first_cell = row.split(" | ")[0]
    yield from re.findall(r"`((?:nagd\.)?[\w.]+\(.*?\))`", first_cell)


def _parse(signature):
  """(dotted name, parameters as (name, kind, default)) of a README call."""
  name, arguments = signature.split("(", 1)
  function = ast.parse(f"def f({arguments[:-1]}): pass").body[0].args
  positional = function.posonlyargs + function.args
  defaults = [REQUIRED] * (len(positional) - len(function.defaults))
  defaults += [ast.literal_eval(d) for d in function.defaults]
  parameters = [(a.arg, "positional", d) for a, d in zip(positional, defaults)]
  for argument, default in zip(function.kwonlyargs, function.kw_defaults):
    parameters.append((argument.arg, "keyword", REQUIRED if default is None
                       else ast.literal_eval(default)))
  return name, parameters


REQUIRED = "<no default>"
SIGNATURES = list(_table_signatures())


def test_the_api_table_lists_every_public_name():
  import nagd_optax  # pylint: disable=g-import-not-at-top

  listed = {_parse(s)[0].removeprefix("nagd.") for s in SIGNATURES}
  public = {n for n in nagd_optax.__all__ if n[0].islower()
            and n not in ("schedules", "criteria", "problems")}
  public |= {f"schedules.{n}" for n in nagd_optax.schedules.__all__}
  public |= {f"criteria.{n}" for n in nagd_optax.criteria.__all__
             if n[0].islower() and n != "tree_inner_product"}
  assert public <= listed, sorted(public - listed)


@pytest.mark.parametrize("signature", SIGNATURES)
def test_the_api_table_matches_the_real_signatures(signature):
  import nagd_optax  # pylint: disable=g-import-not-at-top

  name, parameters = _parse(signature)
  function = nagd_optax
  for part in name.split(".")[1:] if name.startswith("nagd.") else [name]:
    function = getattr(function, part)
  real = []
  for parameter in inspect.signature(function).parameters.values():
    kind = ("keyword" if parameter.kind == parameter.KEYWORD_ONLY
            else "positional")
    default = (REQUIRED if parameter.default is parameter.empty
               else parameter.default)
    real.append((parameter.name, kind, default))
  assert parameters == real
