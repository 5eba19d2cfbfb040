"""The scores report (``python -m bench.scores``) runs end to end and summarises correctly.

No test here asserts a score's level or a time: only the report's shape and its arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scores
from bench._common import markdown_tables


def test_one_row_one_seed_runs_and_writes_the_report(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "scores.md"
    assert scores.main(["--only", "iris", "--seeds", "0", "--output", str(out)]) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out  # printed and written alike
    assert "--only iris --seeds 0" in text  # the header names the command
    summary, detail = markdown_tables(text)
    header, _, *rows = summary
    assert len(rows) == 1 and len(rows[0]) == len(header)
    row = dict(zip(header, rows[0], strict=True))
    assert (row["`--data`"], row["metric"], row["model"]) == ("iris", "accuracy", "mlp")
    assert row["preset"] == "epochs 200" and row["PyTorch, same CNN: mean ± sd"] == "—"
    mean, sd = row["jacnet mean ± sd"].split(" ± ")
    assert mean == row["jacnet, seed 0"] == row["jacnet min"] and sd == "0.000"
    for key in ("jacnet, seed 0", "linear, seed 0", "linear mean", "sklearn MLP, seed 0", "sklearn MLP mean"):
        assert 0.0 <= float(row[key]) <= 1.0, (key, row[key])
    assert [r[:2] for r in detail[2:]] == [["iris", "0"]]
    assert detail[2][2] == row["jacnet, seed 0"]


def test_summary_takes_mean_sd_and_min_over_seeds() -> None:
    rows = [scores.Score("diabetes", seed, "regression", jacnet, 0.5, 0.4, 1.0)
            for seed, jacnet in enumerate((0.4, 0.6, 0.5))]
    header, _, line = scores.summary_table(rows)
    row = dict(zip(header.strip("|").split("|"), line.strip("|").split("|"), strict=True))
    row = {key.strip(): value.strip() for key, value in row.items()}
    assert row["metric"] == "R²" and row["jacnet, seed 0"] == "0.400"
    assert row["jacnet mean ± sd"] == "0.500 ± 0.100" and row["jacnet min"] == "0.400"
    assert row["preset"] == "hidden 16, epochs 200, weight decay 1"


def test_rows_run_with_presets_alone_and_cnn_rows_carry_the_pytorch_reference() -> None:
    assert all(set(options) <= {"--model", "mlp", "cnn"} for _, options in scores.ROWS)
    rows = [scores.Score("mnist1d", seed, "classification", ours, 0.3, 0.6, 10.0, (), "cnn", theirs, 8.0)
            for seed, ours, theirs in ((0, 0.96, 0.95), (1, 0.98, 0.97))]
    header, _, line = scores.summary_table(rows)
    row = dict(zip(header.strip("|").split("|"), line.strip("|").split("|"), strict=True))
    row = {key.strip(): value.strip() for key, value in row.items()}
    assert row["`--data`"] == "mnist1d" and row["model"] == "cnn"
    assert row["jacnet mean ± sd"] == "0.970 ± 0.014"
    assert row["PyTorch, same CNN: mean ± sd"] == "0.960 ± 0.014"
    assert row["PyTorch s"] == "8.0" and row["preset"].startswith("channels 32,32,32, kernel size 5")


@pytest.mark.parametrize("argv", [["--only", "cifar"], ["--seeds", "0,-1"], ["--seeds", "a"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        scores.main([*argv, "--no-write"])
