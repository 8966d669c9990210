"""The documentation site builds offline, with warnings as errors."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
       "html", str(ROOT / "docs"), str(tmp_path)],
      capture_output=True, text=True, timeout=300, check=False,
  )
  assert result.returncode == 0, result.stdout + result.stderr
  built = {p.name for p in tmp_path.rglob("*.html")}
  assert {"index.html", "api.html", "restart.html", "benchmarks.html"} <= built
  # Formulas render offline: MathJax is served from the site itself.
  api = (tmp_path / "api.html").read_text()
  scripts = re.findall(r'<script[^>]*src="([^"]+)"', api)
  assert any(s.endswith("mathjax/tex-chtml.js") for s in scripts), scripts
  assert not [s for s in scripts if "//" in s], scripts  # nothing remote
  assert (tmp_path / "_static" / "mathjax" / "tex-chtml.js").exists()
  # Optax's type aliases appear by name, not as a 300-character union.
  assert "optax.ScalarOrSchedule" in api
  assert "numpy.bool | numpy.number" not in api


def test_every_public_name_is_documented_with_an_example():
  import nagd_optax  # pylint: disable=g-import-not-at-top

  api = (ROOT / "docs" / "api.md").read_text()
  subpackages = ("schedules", "criteria", "problems")
  names = [f"nagd_optax.{n}" for n in nagd_optax.__all__
           if n not in subpackages]
  for subpackage in subpackages:
    names += [f"nagd_optax.{subpackage}.{n}"
              for n in getattr(nagd_optax, subpackage).__all__]
  for name in names:
    assert name in api, f"{name} has no entry in docs/api.md"
    obj = nagd_optax
    for part in name.split(".")[1:]:
      obj = getattr(obj, part)
    assert ">>>" in (obj.__doc__ or ""), f"{name}'s docstring has no example"
