"""Plots: valid PNGs of the size asked for, matplotlib imported only when a plot is drawn."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jacnet
from jacnet.errors import JacnetTypeError, JacnetValueError
from jacnet.plots import jacobian_formula, jacobian_matrix, plot_history, plot_jacobian
from jacnet.train import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=120)


def test_importing_jacnet_and_its_plots_does_not_import_matplotlib() -> None:
    done = run_python(
        "import sys, jacnet, jacnet.plots, jacnet.cli.check, jacnet.cli.jacobian\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "print('ok')"
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_missing_matplotlib_names_the_extra_to_install() -> None:
    done = run_python(
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "import numpy as np, jacnet\n"
        "from jacnet.plots import plot_jacobian\n"
        "try:\n"
        "    plot_jacobian(jacnet.Softmax(), np.ones((2, 3)))\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'jacnet[plot]'" in done.stdout


def test_plot_jacobian_writes_a_png_of_figsize_times_dpi(tmp_path: Path) -> None:
    path = tmp_path / "softmax.png"
    fig = plot_jacobian(jacnet.Softmax(), np.random.default_rng(0).standard_normal((3, 4)), path=path,
                        figsize=(4.0, 3.0), dpi=50)
    assert png_size(path) == (200, 150)
    assert "partial" in fig.axes[0].get_title()


@pytest.mark.parametrize("wrt", ["X", "W", "b"])
def test_plot_jacobian_affine_each_wrt(tmp_path: Path, wrt: str) -> None:
    layer = jacnet.Affine(3, 2, rng=0, dtype=np.float64)
    path = tmp_path / f"affine_{wrt}.png"
    plot_jacobian(layer, np.ones((2, 3)), wrt=wrt, path=str(path))
    assert png_size(path) == (600, 480)


def test_plot_jacobian_loss_into_given_axes_with_a_title(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 2), dpi=80)
    ax = fig.add_subplot()
    out = plot_jacobian(jacnet.SoftmaxCrossEntropy(), np.zeros((2, 3)), target=[0, 2], ax=ax,
                        title="dJ/dL", path=tmp_path / "loss.png")
    assert out is fig
    assert ax.get_title() == "dJ/dL"
    assert png_size(tmp_path / "loss.png") == (400, 160)


def test_jacobian_matrix_labels_and_blocks() -> None:
    layer = jacnet.Affine(3, 2, rng=0, dtype=np.float64)
    X = np.arange(6.0).reshape(2, 3)
    jm = jacobian_matrix(layer, X, wrt="W")
    assert jm.matrix.shape == (4, 6)
    assert jm.row_labels == ["z[0,0]", "z[0,1]", "z[1,0]", "z[1,1]"]
    assert jm.col_labels[4] == "w[2,0]"
    assert (jm.row_block, jm.col_block) == (2, 2)
    # The Kronecker pattern: row (i, j), column (k, l) holds x_ik when j == l.
    assert jm.matrix[3, 5] == X[1, 2] and jm.matrix[3, 4] == 0
    jb = jacobian_matrix(layer, X, wrt="b")
    np.testing.assert_array_equal(jb.matrix, np.vstack([np.eye(2), np.eye(2)]))
    assert jb.col_block == 0
    loss = jacobian_matrix(jacnet.MeanSquaredError(), X, target=np.zeros((2, 3)))
    assert loss.matrix.shape == (1, 6) and loss.row_labels == ["J"] and loss.col_labels[0] == "ŷ[0,0]"


def test_jacobian_formula_names() -> None:
    assert jacobian_formula(jacnet.Affine(2, 2), "X") == "∂z_ij/∂x_kl = δ_ik w_lj"
    assert jacobian_formula(jacnet.Softmax()) == "∂y_ij/∂x_kl = δ_ik y_ij (δ_jl - y_il)"
    assert jacobian_formula(jacnet.Affine(2, 2), "W", math=True).startswith("$")

    class Mine(jacnet.Layer):
        pass

    assert "Mine" in jacobian_formula(Mine())


def _history(classifier: bool) -> History:
    history = History()
    for epoch in range(4):
        logs = {"loss": 1.0 / (epoch + 1), "val_loss": 1.2 / (epoch + 1)}
        if classifier:
            logs.update(accuracy=0.5 + 0.1 * epoch, val_accuracy=0.45 + 0.1 * epoch)
        else:
            logs.update(val_mse=1.1 / (epoch + 1), val_r2=0.2 * epoch)
        history.append(epoch, logs)
    return history


def test_plot_history_classifier_has_loss_and_accuracy_panels(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    fig = plot_history(_history(classifier=True), path)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert png_size(path) == (1000, 360)
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 2


def test_plot_history_regression_and_plain_dicts(tmp_path: Path) -> None:
    fig = plot_history(_history(classifier=False), tmp_path / "r.png", figsize=(4, 3), dpi=50)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "R²"]
    assert png_size(tmp_path / "r.png") == (200, 150)
    fig = plot_history({"loss": [3.0, 2.0, 1.5]}, tmp_path / "d.png")
    assert len(fig.axes) == 1
    assert png_size(tmp_path / "d.png") == (500, 360)


def test_plot_history_rejects_bad_input() -> None:
    with pytest.raises(JacnetValueError, match="'loss' curve"):
        plot_history({"accuracy": [0.5]})
    with pytest.raises(JacnetTypeError, match="History or a dict"):
        plot_history([1, 2, 3])
    with pytest.raises(JacnetValueError, match="positive"):
        plot_jacobian(jacnet.Softmax(), np.ones((2, 2)), figsize=(0, 3))


def test_jacobian_command_plot_writes_a_png(tmp_path: Path) -> None:
    for args, size in ((["softmax", "--batch", "2", "--features", "3"], (640, 480)),
                       (["affine", "--wrt", "W", "--dpi", "50"], (320, 240)),
                       (["softmax_ce"], (700, 260))):
        path = tmp_path / f"{args[0]}.png"
        done = subprocess.run([sys.executable, "-m", "jacnet.cli", "jacobian", *args, "--plot", str(path)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        assert done.returncode == 0, done.stderr
        assert f"wrote {path}" in done.stdout
        assert png_size(path) == size


def test_jacobian_command_plot_to_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "jacnet.cli", "jacobian", "relu", "--plot", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--plot expects a writable file" in done.stderr


# Structural and computed zeros ---------------------------------------------------------------


def test_structural_mask_of_each_builtin_layout() -> None:
    from jacnet.plots import structural_mask

    relu = jacobian_matrix(jacnet.ReLU(), np.array([[1.0, -1.0], [-2.0, 3.0]]))
    np.testing.assert_array_equal(relu.structure, np.eye(4, dtype=bool))
    soft = jacobian_matrix(jacnet.Softmax(), np.zeros((2, 3)))
    np.testing.assert_array_equal(soft.structure, np.kron(np.eye(2), np.ones((3, 3))).astype(bool))
    layer = jacnet.Affine(3, 2, rng=0, dtype=np.float64)
    X = np.arange(1.0, 7.0).reshape(2, 3)
    jw = jacobian_matrix(layer, X, wrt="W")
    # every entry off the mask is zero for any input; every entry on it is x_ik (non-zero here)
    assert jw.structure is not None
    assert not jw.matrix[~jw.structure].any() and jw.matrix[jw.structure].all()
    jb = jacobian_matrix(layer, X, wrt="b")
    np.testing.assert_array_equal(jb.structure, np.vstack([np.eye(2), np.eye(2)]).astype(bool))
    loss = jacobian_matrix(jacnet.MeanSquaredError(), X, target=X)  # all computed, all zero here
    assert loss.structure is not None and loss.structure.all() and not loss.matrix.any()

    class Mine(jacnet.ReLU):
        pass

    assert structural_mask(jacnet.Sequential([jacnet.ReLU()]), "X", (2, 2), (2, 2)) is None
    assert jacobian_matrix(Mine(), np.ones((1, 2))).structure is not None  # a ReLU is a ReLU


def test_relu_heatmap_tells_computed_zeros_from_structural_ones(tmp_path: Path) -> None:
    X = np.array([[0.5, -1.0, 2.0], [-0.3, 1.5, -2.0]])
    fig = plot_jacobian(jacnet.ReLU(), X, path=tmp_path / "relu.png")
    image = fig.axes[0].images[0]
    shown = image.get_array()
    # the 30 off-diagonal entries are masked (drawn grey), the 6 diagonal ones are drawn,
    # three of them computed zeros at the negative inputs
    assert np.ma.count_masked(shown) == 30
    diagonal = np.ma.getdata(shown)[np.eye(6, dtype=bool)]
    assert diagonal.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert not np.ma.getmaskarray(shown)[np.eye(6, dtype=bool)].any()
    assert image.get_clim() == (0.0, 1.0)  # the colour bar fits a 0/1 pattern
    assert tuple(image.cmap(image.norm(0.0)))[:3] != tuple(image.cmap.get_bad())[:3]  # white, not grey
    assert "structural zeros" in fig.axes[0].get_xlabel()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("0") == 3 and texts.count("1.00") == 3


def test_heatmap_colour_limits_fit_signed_data_and_a_given_mask() -> None:
    layer = jacnet.Affine(3, 2, rng=0, dtype=np.float64)
    fig = plot_jacobian(layer, np.ones((2, 3)))
    low, high = fig.axes[0].images[0].get_clim()
    W = layer.params["W"]
    assert low == -high == -float(np.abs(W).max())
    fig = plot_jacobian(jacnet.Softmax(), np.zeros((1, 2)), structure=None)
    assert np.ma.count_masked(fig.axes[0].images[0].get_array()) == 0
    with pytest.raises(JacnetValueError, match="structure"):
        plot_jacobian(jacnet.Softmax(), np.zeros((1, 2)), structure=np.ones((3, 3), bool))


def test_jacobian_command_prints_computed_zeros_as_0_and_structural_ones_as_dots(
        capsys: pytest.CaptureFixture[str]) -> None:
    from jacnet.cli import main

    assert main(["jacobian", "relu", "--batch", "2", "--features", "3"]) == 0
    out = capsys.readouterr().out
    assert "(. = structural zero, 0 = computed zero)" in out
    rows = [line.replace("|", " ").split()[1:] for line in out.splitlines() if line.startswith("y[")]
    assert len(rows) == 6
    for r, cells in enumerate(rows):  # the diagonal holds 1.0000 or a computed 0, the rest dots
        assert cells[r] in ("1.0000", "0")
        assert all(c == "." for k, c in enumerate(cells) if k != r)
    assert "0" in [cells[r] for r, cells in enumerate(rows)]


# Formulas and structure from the classes ------------------------------------------------------


def _registered_examples() -> list[tuple[str, object, np.ndarray, object]]:
    """(kind, module, input, target) for every registered layer (training and inference) and loss."""
    from jacnet.registry import LAYERS, LOSSES

    cases: list[tuple[str, object, np.ndarray, object]] = []
    for kind, cls in LAYERS.items():
        for training in (True, False):
            layer, X = cls.example(np.random.default_rng(1), np.float64)
            layer.train(training)
            cases.append((f"{kind}-{'train' if training else 'eval'}", layer, X, None))
    for kind, cls in LOSSES.items():
        loss, pred, target = cls.example(np.random.default_rng(1), np.float64)
        cases.append((kind, loss, pred, target))
    return cases


def test_plots_name_no_class() -> None:
    # Formulas, structures and letters come from the classes: plots.py imports none of them.
    import jacnet.plots as plots
    from jacnet.registry import LAYERS, LOSSES

    source = Path(plots.__file__).read_text(encoding="utf-8")
    assert "from jacnet.layers import" not in source and "FORMULAS" not in source
    for cls in (*LAYERS.values(), *LOSSES.values()):
        assert f"isinstance(module, {cls.__name__}" not in source, cls.__name__
        assert f"({cls.__name__}, " not in source, cls.__name__


def test_every_registered_class_states_a_formula_for_each_wrt() -> None:
    from matplotlib.mathtext import MathTextParser

    parser = MathTextParser("agg")
    for name, module, _, _ in _registered_examples():
        wrts = ("X", *getattr(module, "params", {}))
        for wrt in wrts:
            assert wrt in type(module).formulas, f"{name} has no formula for {wrt}"
            plain, math = type(module).formulas[wrt]
            assert plain.startswith("∂") and "=" in plain, (name, plain)
            assert math.startswith("$") and math.endswith("$"), (name, math)
            parser.parse(math, dpi=72)  # the title renders
            assert jacobian_formula(module, wrt) in (plain, *(
                v[0] for k, v in type(module).formulas.items() if k == f"{wrt}, inference"))
            assert jacobian_formula(module, wrt, math=True).startswith("$")


@pytest.mark.parametrize("case", _registered_examples(), ids=lambda c: c[0])
def test_structural_mask_of_every_registered_class_holds_every_non_zero(case: tuple) -> None:
    from jacnet.plots import structural_mask

    name, module, X, target = case
    for wrt in ("X", *getattr(module, "params", {})):
        jm = jacobian_matrix(module, X, wrt=wrt, target=target)
        assert jm.structure is not None, name
        assert jm.structure.shape == jm.matrix.shape
        assert not jm.matrix[~jm.structure].any(), f"{name} {wrt}: a non-zero off the structure"
        # the count from the shapes alone equals the mask's
        structure = module.jacobian_structure(wrt, X.shape)
        assert structure.count(jm.output_shape, jm.input_shape) == int(jm.structure.sum())
        again = structural_mask(module, wrt, jm.output_shape, jm.input_shape, X_shape=X.shape)
        np.testing.assert_array_equal(again, jm.structure)


def test_conv1d_mask_is_the_toeplitz_band_and_its_plot_greys_the_rest() -> None:
    conv = jacnet.Conv1D(2, 2, 3, padding=1, rng=0, dtype=np.float64)
    X = np.random.default_rng(0).standard_normal((2, 2, 8))
    jm = jacobian_matrix(conv, X)
    assert jm.matrix.shape == (32, 32) and (jm.row_block, jm.col_block) == (16, 16)
    assert (jm.row_subblock, jm.col_subblock) == (8, 8)
    S = jm.structure.reshape(2, 2, 8, 2, 2, 8)
    t, s = np.indices((8, 8))
    band = np.abs(s - t) <= 1
    for n in range(2):
        for m in range(2):
            for o in range(2):
                for c in range(2):
                    np.testing.assert_array_equal(S[n, o, :, m, c, :], band & (n == m))
    fig = plot_jacobian(conv, X)
    assert np.ma.count_masked(fig.axes[0].images[0].get_array()) == 32 * 32 - 8 * 22
    assert "δ" not in fig.axes[0].get_title() and "delta" in fig.axes[0].get_title()


def test_batchnorm_mask_couples_the_batch_in_training_only() -> None:
    bn, X = jacnet.BatchNorm.example(np.random.default_rng(0), np.float64)  # (4, 3)
    train = jacobian_matrix(bn, X).structure
    np.testing.assert_array_equal(train, np.kron(np.ones((4, 4)), np.eye(3)).astype(bool))
    bn.eval()
    np.testing.assert_array_equal(jacobian_matrix(bn, X).structure, np.eye(12, dtype=bool))
    assert "run" in jacobian_formula(bn, "X")
    gamma = jacobian_matrix(bn.train(), X, wrt="gamma").structure
    np.testing.assert_array_equal(gamma, np.tile(np.eye(3, dtype=bool), (4, 1)))


def test_maxpool_heatmap_picks_one_entry_per_window() -> None:
    pool = jacnet.MaxPool1D(2)
    X = np.array([[[1.0, 3.0, 2.0, 0.5, -1.0, 4.0]]])
    fig = plot_jacobian(pool, X)
    shown = fig.axes[0].images[0].get_array()
    data, masked = np.ma.getdata(shown), np.ma.getmaskarray(shown)
    assert (~masked).sum() == 6  # the three windows of two entries
    assert data[~masked].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # winners 1, losers white 0
