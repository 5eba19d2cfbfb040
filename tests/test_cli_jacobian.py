"""``jacnet jacobian`` for every registered layer and loss: the kinds come from the registry,
every parameter agrees with its closed form, the counts are right, sizes and modes are
options, and oversized or wrong requests are one line with exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import jacnet
from jacnet.cli import build_parser, main
from jacnet.cli.jacobian import kinds
from jacnet.plots import jacobian_formula
from jacnet.registry import LAYERS, LOSSES


def _params(kind: str) -> list[str]:
    if kind not in LAYERS:
        return []
    layer, _ = LAYERS[kind].example(np.random.default_rng(0), np.float64)
    return list(layer.params)


CASES = [(kind, wrt) for kind in [*LAYERS, *LOSSES] for wrt in ("X", *_params(kind))]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["jacobian", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def flat(text: str) -> str:
    """The text with runs of white space (line wraps included) as one space."""
    return " ".join(text.split())


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, flat(text))
    assert match, text
    return int(match[1].replace(",", ""))


def test_kinds_are_the_registry() -> None:
    assert kinds() == [*LAYERS, *LOSSES]
    assert {"conv1d", "conv2d", "maxpool1d", "maxpool2d", "avgpool1d", "globalavgpool", "flatten",
            "batchnorm", "layernorm", "dropout", "affine", "softmax_ce"} <= set(kinds())
    parser = build_parser()
    args = parser.parse_args(["jacobian", "conv2d"])
    assert args.kind == "conv2d"


@pytest.mark.parametrize(("kind", "wrt"), CASES, ids=[f"{k}-{w}" for k, w in CASES])
def test_every_registered_kind_and_parameter_agrees_and_is_counted(
        capsys: pytest.CaptureFixture[str], kind: str, wrt: str) -> None:
    code, out, err = run_cli(capsys, kind, "--wrt", wrt, "--seed", "1")
    assert code == 0, err
    match = re.search(r"max \|backward - contraction\| = (\S+)", out)
    assert match and float(match[1]) < 1e-12, out
    entries = _number(r"structure: ([\d,]+) entries", out)
    nonzero = _number(r"entries, ([\d,]+) non-zero", out)
    assert 0 < nonzero <= entries
    assert "At a realistic size" in out
    if kind in LAYERS:
        module, _ = LAYERS[kind].example(np.random.default_rng(0), np.float64)
        assert jacobian_formula(module, wrt) in out  # the class's own formula
        structural = _number(r"structural zeros: ([\d,]+) entries are zero", out)
        computed = _number(r"([\d,]+) are computed", out)
        assert structural + computed == entries and nonzero <= computed
        closed = _number(r"the closed form, [^:]*: ([\d,]+) operations", out)
        assert 0 < closed <= entries or kind == "softmax"


def test_conv1d_counts_the_band_and_the_closed_form(capsys: pytest.CaptureFixture[str]) -> None:
    # Conv1D(2, 3, k=3, padding=1) on (2, 2, 5): the band holds 2 + 3 + 3 + 3 + 2 = 13 (t, s)
    # pairs per (n, o, c), so N·O·C·13 = 156 entries are computed; the closed form dX costs
    # N·L_out·O·C·k = 2·5·3·2·3 = 180 multiply-adds; the Jacobian has 30 × 20 = 600 entries.
    code, out, _ = run_cli(capsys, "conv1d")
    assert code == 0
    text = flat(out)
    assert "laid out as (2·3·5) × (2·2·5) = 30 × 20" in text
    assert "structural zeros: 444 entries are zero for every input" in text
    assert "156 are computed" in text
    assert "N·L_out·O·C·k multiply-adds: 180 operations, against 600 multiply-adds" in text
    assert "δ_nm W[o,c,s−t·stride+pad]" in text
    # The printed pattern: one Toeplitz band per pair of channels, samples apart.
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("y[0,0,")]
    assert rows == ["xx...xx...|..........", "xxx..xxx..|..........", ".xxx..xxx.|..........",
                    "..xxx..xxx|..........", "...xx...xx|.........."]
    # dW: N·O·L_out·C·k = 180 as well; db: N·O·L_out = 30 additions.
    code, out, _ = run_cli(capsys, "conv1d", "--wrt", "W")
    assert "N·O·L_out·C·k multiply-adds: 180 operations" in flat(out)
    code, out, _ = run_cli(capsys, "conv1d", "--wrt", "b")
    assert "N·O·L_out additions: 30 operations" in flat(out)


def test_size_options_build_the_layer_and_its_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "conv1d", "--batch", "3", "--channels", "2", "--out", "4",
                           "--length", "7", "--kernel", "3", "--stride", "2")
    assert code == 0
    assert "Conv1D(2, 4, kernel_size=3, stride=2, padding=1" in out
    assert "laid out as (3·4·4) × (3·2·7) = 48 × 42" in out  # L_out = (7 + 2 - 3)//2 + 1 = 4
    code, out, _ = run_cli(capsys, "conv2d", "--channels", "1", "--out", "1", "--length", "4",
                           "--kernel", "3", "--padding", "1")
    assert code == 0 and "shape (2, 1, 4, 4)" in out and "= 32 × 32" in out
    code, out, _ = run_cli(capsys, "maxpool1d", "--channels", "1", "--length", "6", "--kernel", "3",
                           "--stride", "1")
    assert code == 0 and "MaxPool1D(kernel_size=3, stride=1, padding=0)" in out
    code, out, _ = run_cli(capsys, "batchnorm", "--batch", "5", "--features", "2")
    assert code == 0 and "BatchNorm(2," in out and "shape (5, 2)" in out
    code, out, _ = run_cli(capsys, "layernorm", "--features", "4")
    assert code == 0 and "LayerNorm(4," in out
    code, out, _ = run_cli(capsys, "leaky_relu", "--slope", "0.2")
    assert code == 0 and "LeakyReLU(negative_slope=0.2)" in out


def test_batchnorm_training_couples_the_batch_inference_does_not(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "batchnorm", "--batch", "4", "--features", "3")
    assert code == 0
    # training: δ_fg only, N² entries per feature computed: 3·16 = 48 of 144
    assert _number(r"([\d,]+) are computed", out) == 48
    assert "couples the samples" in flat(out)
    code, out, _ = run_cli(capsys, "batchnorm", "--batch", "4", "--features", "3", "--inference")
    assert code == 0
    assert "δ_nm δ_fg γ_f / σ_run,f" in out
    assert _number(r"([\d,]+) are computed", out) == 12
    assert "dX = γ dY / σ_run" in flat(out)


def test_dropout_uses_one_fixed_mask(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "dropout", "--batch", "4", "--features", "5", "--seed", "3")
    assert code == 0
    assert float(re.search(r"max \|backward - contraction\| = (\S+)", out)[1]) == 0.0  # type: ignore[index]
    nonzero = _number(r"entries, ([\d,]+) non-zero", out)
    assert 0 < nonzero < 20  # some entries dropped: computed zeros on the diagonal
    assert _number(r"([\d,]+) are computed", out) == 20


def test_oversized_requests_are_refused_before_anything_is_built(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import jacnet.cli.jacobian as command

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Jacobian was built")

    monkeypatch.setattr(command, "expanded_jacobian", never)
    monkeypatch.setattr(command, "jacobian_matrix", never)
    for args in (["conv2d", "--batch", "50", "--length", "20"],
                 ["affine", "--in", "100000", "--out", "100000", "--wrt", "W"],
                 ["conv1d", "--channels", "5000", "--out", "5000", "--length", "3"],
                 ["conv1d", "--batch", "64", "--channels", "16", "--length", "64"],
                 ["batchnorm", "--batch", "3000", "--features", "2"],
                 ["softmax", "--batch", "100", "--features", "100"]):
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and out == ""
        assert "max_entries" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["relu", "--kernel", "3"], "--kernel expects a layer on (N, C, L) input"),
        (["flatten", "--kernel", "3"], "--kernel expects a layer with kernel_size"),
        (["globalavgpool", "--out", "3"], "--out expects a layer with out_channels (conv1d, conv2d)"),
        (["conv1d", "--features", "3"], "--features expects a layer on (N, K) input"),
        (["conv1d", "--in", "3"], "--in expects affine"),
        (["affine", "--channels", "2"], "--channels expects a layer on (N, C, L) input"),
        (["dropout", "--wrt", "W"], "--wrt expects affine or another layer with parameters"),
        (["batchnorm", "--wrt", "W"], "--wrt expects X or a parameter of batchnorm (gamma, beta)"),
        (["mse", "--channels", "2"], "--channels expects a layer, got the loss mse"),
        (["mse", "--inference"], "--inference expects a layer"),
        (["conv1d", "--length", "2", "--kernel", "5"], "at least the kernel"),
        (["maxpool1d", "--kernel", "2", "--padding", "2"], "padding expects at most half"),
        (["batchnorm", "--batch", "1"], "more than one value per feature"),
    ],
)
def test_bad_requests_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                               fragment: str) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2, out
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


@pytest.mark.parametrize(("args", "structural"), [
    (["conv1d", "--channels", "2", "--out", "2", "--length", "8", "--kernel", "3", "--padding", "1"],
     32 * 32 - 2 * 2 * 2 * 22),  # N·O·C bands of 2 + 3·6 + 2 = 22 entries computed
    (["batchnorm", "--batch", "4", "--features", "3"], 144 - 48),
    (["maxpool1d", "--channels", "2", "--length", "6"], 12 * 24 - 24),
])
def test_plots_of_the_new_layers_grey_their_structural_zeros(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], structural: int) -> None:
    path = tmp_path / f"{args[0]}.png"
    code, out, err = run_cli(capsys, *args, "--plot", str(path), "--dpi", "40")
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _number(r"structural zeros: ([\d,]+) entries", out) == structural


def test_a_registered_kind_needs_no_cli_code() -> None:
    # The command's choices and the defaults come from the registry and each class's example:
    # every registered layer builds, with its example's batch unless --batch says otherwise.
    parser = build_parser()
    for kind in LAYERS:
        args = parser.parse_args(["jacobian", kind])
        from jacnet.cli.jacobian import build_layer

        layer, shape = build_layer(args)
        assert isinstance(layer, jacnet.Layer) and len(shape) >= 2
