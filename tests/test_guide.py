"""Every example in ``docs/*.md`` runs, and prints exactly what the document says it prints.

Conventions of the documents (so the guide cannot rot):

- A ```` ```python ```` block is executed; all blocks of one document share one namespace, in
  order, with the working directory a fresh temporary folder that is also on ``sys.path``.
  What it prints must equal the ```` ```text ```` block right after it, or be empty when
  the next block is not a ``text`` block.
- A ```` ```python ```` block whose fence is preceded by the line ``<!-- file: NAME.py -->`` is
  not executed: it is written to ``NAME.py`` in that folder (for ``import`` and ``jacnet check``).
- A ```` ```console ```` block holds ``$ jacnet ...`` commands, each followed by its exact output
  (stdout and stderr). They run as ``python -m jacnet.cli ...`` in the same folder.

Outputs are compared line by line after stripping trailing spaces, with one allowance: numbers
in scientific notation of magnitude below 1e-6 are rounding noise (they differ between BLAS
builds), so they only have to be noise on both sides; on a line holding such a number, index
tuples such as ``(2, 0)`` (the entry where that noise peaks) and runs of spaces are not compared
either.

Set ``JACNET_UPDATE_GUIDE=1`` to rewrite the expected outputs in the documents from a run
(then read the diff before committing it).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```(\w*)\s*$")
FILE_MARK = re.compile(r"^<!--\s*file:\s*([\w.-]+\.py)\s*-->\s*$")
NOISE = re.compile(r"-?\d+(?:\.\d+)?e-(\d+)")
INDEX = re.compile(r"\(\d+(?:, \d+)*,?\)")
UPDATE = os.environ.get("JACNET_UPDATE_GUIDE") == "1"


@dataclass
class Block:
    """A fenced block: its language, its body, where the body starts and ends (line numbers)."""

    lang: str
    body: str
    start: int
    end: int
    file: str | None = None


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of a markdown document, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match[1]:
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            file_match = FILE_MARK.match(lines[i - 1]) if i > 0 else None
            blocks.append(Block(match[1], "\n".join(lines[i + 1:j]), i + 1, j,
                                file_match[1] if file_match else None))
            i = j + 1
        else:
            i += 1
    return blocks


def _noise_free(line: str) -> str:
    def mask(m: re.Match[str]) -> str:
        return "<noise>" if int(m[1]) >= 6 else m[0]

    masked = NOISE.sub(mask, line.rstrip())
    if "<noise>" in masked:
        masked = re.sub(r"\s+", " ", INDEX.sub("<index>", masked))
    return masked


def same_output(actual: str, expected: str) -> bool:
    """Equal line by line, up to trailing spaces and rounding noise (see the module docstring)."""
    a = [_noise_free(line) for line in actual.rstrip("\n").splitlines()]
    b = [_noise_free(line) for line in expected.rstrip("\n").splitlines()]
    return a == b


def _run_python(source: str, namespace: dict[str, object], where: str) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(source, where, "exec"), namespace)
    return buffer.getvalue()


def _run_console(body: str, cwd: Path) -> list[tuple[str, str, str]]:
    """Each command of a console block with its expected and its actual output."""
    results: list[tuple[str, str, str]] = []
    command: str | None = None
    expected: list[str] = []

    def flush() -> None:
        if command is None:
            return
        argv = shlex.split(command)
        assert argv[0] == "jacnet", f"console blocks run jacnet commands only, got {command!r}"
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "100"}
        done = subprocess.run([sys.executable, "-m", "jacnet.cli", *argv[1:]], cwd=cwd,
                              capture_output=True, text=True, env=env, timeout=120)
        results.append((command, "\n".join(expected), done.stdout + done.stderr))

    for line in body.splitlines():
        if line.startswith("$ "):
            flush()
            command, expected = line[2:], []
        else:
            expected.append(line)
    flush()
    return results


def _documents() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_the_guide_exists_and_has_examples() -> None:
    names = [p.name for p in _documents()]
    assert "guide.md" in names and "writing-a-layer.md" in names
    for name in ("guide.md", "writing-a-layer.md"):
        blocks = parse_blocks((DOCS / name).read_text(encoding="utf-8"))
        assert any(b.lang == "python" for b in blocks), f"{name} has no python examples"


def test_blocks_use_known_languages() -> None:
    for path in _documents():
        blocks = parse_blocks(path.read_text(encoding="utf-8"))
        for block in blocks:
            assert block.lang in ("python", "text", "console", "sh"), (
                f"{path.name}:{block.start}: unknown block language {block.lang!r}")


def test_images_the_documents_embed_exist_and_are_small() -> None:
    for path in _documents():
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text(encoding="utf-8")):
            image = (path.parent / target).resolve()
            assert image.is_file(), f"{path.name} embeds {target}, which does not exist"
            assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert image.stat().st_size < 100_000, f"{target} is {image.stat().st_size} bytes"


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_document_examples_print_what_the_document_says(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = path.read_text(encoding="utf-8")
    blocks = parse_blocks(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    failures: list[str] = []
    updates: list[tuple[Block, str]] = []
    try:
        for k, block in enumerate(blocks):
            nxt = blocks[k + 1] if k + 1 < len(blocks) else None
            if block.lang == "python" and block.file:
                (tmp_path / block.file).write_text(block.body + "\n", encoding="utf-8")
                written.append(block.file[:-3])
            elif block.lang == "python":
                actual = _run_python(block.body, namespace, f"{path.name}:{block.start}")
                if nxt is not None and nxt.lang == "text":
                    if not same_output(actual, nxt.body):
                        failures.append(f"{path.name}:{block.start}: printed\n{actual}\nexpected\n{nxt.body}")
                        updates.append((nxt, actual.rstrip("\n")))
                elif actual.strip():
                    failures.append(f"{path.name}:{block.start}: printed output but no ```text block "
                                    f"follows:\n{actual}")
            elif block.lang == "console":
                pieces = []
                for command, expected, actual in _run_console(block.body, tmp_path):
                    pieces.append(f"$ {command}\n{actual.rstrip()}")
                    if not same_output(actual, expected):
                        failures.append(f"{path.name}:{block.start}: $ {command}\nprinted\n{actual}\n"
                                        f"expected\n{expected}")
                if failures and failures[-1].startswith(f"{path.name}:{block.start}:"):
                    updates.append((block, "\n".join(pieces)))
    finally:
        for name in written:
            sys.modules.pop(name, None)
    if UPDATE and updates:
        lines = text.splitlines()
        for block, new in sorted(updates, key=lambda u: -u[0].start):
            lines[block.start:block.end] = new.splitlines()
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert not failures, "\n\n".join(failures)


def test_noise_allowance_is_narrow() -> None:
    table = "Affine  dX    1.84e-11     8.50e-11     (2, 0)       ok"
    assert same_output(table, "Affine  dX    3.10e-10     2.00e-11     (0,)         ok")
    assert not same_output(table, "Affine  dX    3.10e-04     2.00e-11     (0,)         ok")
    assert not same_output("[[ 0.3061  0.1565]]", "[[ 0.3062  0.1565]]")
    assert not same_output("max (1, 2) 5.0", "max (2, 1) 5.0")
