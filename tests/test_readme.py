"""Every ```python block of README.md and of the guide pages in docs/ runs as written, each in a fresh
interpreter. (docs/saving.md and docs/per_example.md show fragments that continue a reader's own
session, so they are not among the pages.)"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *(ROOT / "docs" / f"{name}.md" for name in ("keras", "layers", "training", "configs", "data"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list:
    """Each python block as a pytest.param whose id (`README.md:12`) names the page and the block's line."""
    return [pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}")
            for page in PAGES for text in [page.read_text()] for match in BLOCK.finditer(text)]


def test_the_pages_have_python_blocks():
    ids = [p.id for p in python_blocks()]
    assert any(i.startswith("README.md:") for i in ids) and len(ids) >= 10


@pytest.mark.parametrize("code", python_blocks())
def test_block_runs_in_a_fresh_interpreter(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
