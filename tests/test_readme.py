"""The README's Python snippets run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index):
  source = SNIPPETS[index]
  exec(compile(source, f"README.md snippet {index}", "exec"), {})
