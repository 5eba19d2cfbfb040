"""The README's "library in a few lines" runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def test_the_library_in_a_few_lines_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The library in a few lines", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "'accuracy'" in printed and "all gradients agree" in printed
    assert namespace["J"].shape == (1, 3, 1, 3)  # type: ignore[attr-defined]
