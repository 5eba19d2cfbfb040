"""``jacnet check`` and ``jacnet jacobian`` through a subprocess: exit codes, tables, diagnoses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BUILTINS = ("Affine", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "MeanSquaredError",
            "BinaryCrossEntropy", "CategoricalCrossEntropy", "SoftmaxCrossEntropy",
            "SigmoidBinaryCrossEntropy")

USER_MODULE = '''
import numpy as np
import jacnet


class Scale(jacnet.Layer):
    """y_ij = x_ij s_j, right."""

    def __init__(self, features=3, dtype="float64"):
        super().__init__()
        self.params = {"s": np.linspace(0.5, 2.0, features).astype(dtype)}
        self.grads = {"s": np.zeros(features, dtype=dtype)}

    def forward(self, X):
        self._X = np.asarray(X)
        return self._X * self.params["s"]

    def backward(self, dY):
        self.grads["s"] = np.sum(dY * self._X, axis=0)
        return dY * self.params["s"]


class MeanScale(Scale):
    """Wrong: a mean over the batch where the sum belongs."""

    def backward(self, dY):
        self.grads["s"] = np.mean(dY * self._X, axis=0)
        return dY * self.params["s"]


class WrongJacobian(Scale):
    """Backward right, jacobian wrong (the identity instead of diag(s))."""

    def jacobian(self, X, wrt="X"):
        N, K = np.shape(X)
        if wrt == "X":
            return np.einsum("ik,jl->ijkl", np.eye(N), np.eye(K))
        return np.einsum("jl,ij->ijl", np.eye(K), np.asarray(X))


class Square(jacnet.Layer):
    """y = x², backward forgets the 2 in one column."""

    def forward(self, X):
        self._X = np.asarray(X)
        return self._X ** 2

    def backward(self, dY):
        dX = 2 * dY * self._X
        dX[:, 1] /= 2
        return dX


class HalfMSE(jacnet.Loss):
    """J = 1/N Σ (p - t)², gradient off by a factor 2."""

    def _value(self, P, T):
        return float(np.sum((P - T) ** 2)) / P.shape[0]

    def _gradient(self, P, T):
        return (P - T) / P.shape[0]


class NoGrad(Scale):
    """Forgets to write grads["s"]: check_gradients alone would never look at it."""

    def backward(self, dY):
        self.grads = {}
        return dY * self.params["s"]


class Flat(Scale):
    """Returns dX flattened."""

    def backward(self, dY):
        super().backward(dY)
        return (dY * self.params["s"]).ravel()


class Crash(jacnet.Layer):
    def forward(self, X):
        return 1 / 0


class Needs(jacnet.Layer):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, X):
        self._X = np.asarray(X)
        return self._X * self.k

    def backward(self, dY):
        return dY * self.k


NotALayer = dict
'''


def jacnet_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "jacnet.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "my_layers.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    return folder


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# jacnet check ---------------------------------------------------------------------------------


def test_check_builtins_all_pass_in_one_table() -> None:
    done = jacnet_cli("check")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    table = {(r[0], r[1]) for r in rows if len(r) >= 8 and r[-1] in ("pass", "FAIL")}
    for name in BUILTINS:
        assert any(module == name for module, _ in table), name
    assert {("Affine", "dX"), ("Affine", "dW"), ("Affine", "db")} <= table
    assert all(r[-1] == "pass" for r in rows if len(r) >= 8 and r[-1] in ("pass", "FAIL"))
    assert f"all {_builtin_gradients()} gradients agree" in done.stdout
    assert "float64" in done.stdout


def test_check_float32_explains_precision() -> None:
    done = jacnet_cli("check", "--dtype", "float32", "--seed", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dtype float32, rtol 0.02, atol 0.0001, finite-difference step 0.01" in done.stdout
    assert "machine eps 1.19e-07" in done.stdout
    assert "What float32 can resolve" in done.stdout
    assert f"all {_builtin_gradients()} gradients agree" in done.stdout


def _builtin_gradients() -> int:
    """dX and one gradient per parameter of every registered layer, and dŶ of every loss."""
    import numpy as np

    from jacnet.registry import LAYERS, LOSSES

    rng = np.random.default_rng(0)
    return sum(1 + len(cls.example(rng, np.float64)[0].params) for cls in LAYERS.values()) + len(LOSSES)


def test_check_a_correct_user_layer_passes(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers:Scale", "--shape", "5x4", "--args", '{"features": 4}',
                      cwd=user_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Scale\s+ds\s", done.stdout)
    assert "all 2 gradients agree" in done.stdout


def test_check_a_wrong_user_layer_exits_1_and_names_the_gradient(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers:MeanScale", "--shape", "4x3", cwd=user_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"MeanScale\s+ds\s.*FAIL", done.stdout)
    assert re.search(r"MeanScale\s+dX\s.*pass", done.stdout)
    assert "MeanScale ds is wrong: at ds[" in done.stdout
    assert "wrong at 3 of 3 entries of ds" in done.stdout
    assert "0.25 × the reference" in done.stdout and "a mean where a sum belongs" in done.stdout
    assert "1 of 2 gradients wrong: MeanScale ds" in done.stdout


def test_check_maps_where_a_gradient_is_wrong(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers:Square", "--shape", "3x3", cwd=user_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Square dX is wrong: at dX[" in done.stdout and ", 1]" in done.stdout
    assert "wrong at 3 of 9 entries of dX" in done.stdout
    assert done.stdout.count("    . x .") == 3


def test_check_tells_a_wrong_jacobian_from_a_wrong_backward(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers:WrongJacobian", cwd=user_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"WrongJacobian\s+dX\s.*WRONG\s+ok\s+FAIL", done.stdout)
    assert "jacobian() is what is wrong" in done.stdout


def test_check_a_missing_or_misshapen_gradient_counts_as_wrong(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers:NoGrad", cwd=user_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NoGrad.backward did not fill grads['s']" in done.stdout
    assert "1 of 2 gradients wrong: NoGrad ds" in done.stdout
    done = jacnet_cli("check", "my_layers:Flat", cwd=user_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Flat dX is wrong: Flat.backward gives dX of shape (12,), expected (4, 3)" in done.stdout


def test_check_a_wrong_user_loss(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers:HalfMSE", "--shape", "6x2", "--target", "real", cwd=user_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "HalfMSE dŶ is wrong" in done.stdout
    assert "0.5 × the reference" in done.stdout


def test_check_builtin_loss_by_spec_with_each_target_kind() -> None:
    for spec, target in (("jacnet:SoftmaxCrossEntropy", "onehot"), ("jacnet:SoftmaxCrossEntropy", "labels"),
                         ("jacnet.losses:BinaryCrossEntropy", "binary"), ("jacnet:MeanSquaredError", "real")):
        done = jacnet_cli("check", spec, "--shape", "3x4", "--target", target)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{target} target" in done.stdout


def test_check_user_layer_in_float32_and_by_file_path(user_dir: Path) -> None:
    done = jacnet_cli("check", "my_layers.py:Scale", "--dtype", "float32", cwd=user_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "float32" in done.stdout and "machine eps" in done.stdout
    done = jacnet_cli("check", "jacnet:Affine", "--args", '{"in_features": 3, "out_features": 2}')
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Affine\s+db\s.*pass", done.stdout)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["check", "not a spec"], ["expects a spec like my_layers:MyLayer"]),
        (["check", "my_layers"], ["expects a spec like"]),
        (["check", "no_such_module_xyz:Thing"], ["no module named 'no_such_module_xyz'"]),
        (["check", "my_layers:Missing"], ["no 'Missing'", "it defines", "Scale"]),
        (["check", "my_layers:NotALayer"], ["subclass of jacnet.Layer or jacnet.Loss"]),
        (["check", "missing_file.py:Scale"], ["no such file"]),
        (["check", "my_layers:Needs"], ["could not be built", "TypeError"]),
        (["check", "my_layers:Crash"], ["ZeroDivisionError", "my_layers.py:"]),
        (["check", "my_layers:Scale", "--shape", "4"], ["--shape", "NxK"]),
        (["check", "my_layers:Scale", "--args", "[1, 2]"], ["--args", "JSON object"]),
        (["check", "my_layers:Scale", "--args", "{bad"], ["--args", "JSON object"]),
        (["check", "my_layers:Scale", "--target", "labels"], ["--target expects a Loss"]),
        (["check", "--shape", "4x3"], ["--shape expects a MODULE:CLASS"]),
        (["check", "--dtype", "float16"], ["--dtype"]),
        (["check", "jacnet:Affine", "--args", '{"in_features": 5, "out_features": 2}', "--shape", "4x3"],
         ["expects shape (N, 5)"]),
    ],
)
def test_check_errors_are_one_line_with_exit_2(user_dir: Path, args: list[str], fragments: list[str]) -> None:
    one_line_error(jacnet_cli(*args, cwd=user_dir), *fragments)


# jacnet jacobian ------------------------------------------------------------------------------

KINDS = ["affine", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "mse", "bce", "cce",
         "softmax_ce", "sigmoid_bce"]


def _difference(text: str, what: str = "backward - contraction") -> float:
    match = re.search(re.escape(f"max |{what}| = ") + r"(\S+)", text)
    assert match, text
    return float(match[1])


@pytest.mark.parametrize("kind", KINDS)
def test_jacobian_every_kind_matches_its_backward(kind: str) -> None:
    done = jacnet_cli("jacobian", kind, "--seed", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _difference(done.stdout) < 1e-12
    assert re.search(r"structure: [\d,]+ entries, [\d,]+ non-zero", done.stdout)
    assert "At a realistic size" in done.stdout
    if kind in ("softmax_ce", "sigmoid_bce"):
        assert _difference(done.stdout, "chain - fused") < 1e-12


def test_jacobian_softmax_prints_the_labelled_block_diagonal() -> None:
    done = jacnet_cli("jacobian", "softmax", "--batch", "2", "--features", "3")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "∂y_ij/∂x_kl = δ_ik y_ij (δ_jl - y_il)" in out
    assert "laid out as (2·3) × (2·3) = 6 × 6" in out
    header = next(line for line in out.splitlines() if "x[0,0]" in line)
    assert "x[1,2]" in header and "|" in header
    rows = [line for line in out.splitlines() if line.startswith("y[")]
    assert len(rows) == 6
    # Sample 0's rows hold numbers in sample 0's columns and dots in sample 1's, and vice versa.
    left, right = rows[0].split("|")
    assert all(cell != "." for cell in left.split()[1:]) and right.split() == [".", ".", "."]
    left, right = rows[5].split("|")
    assert left.split()[1:] == [".", ".", "."]
    assert "36 entries, 18 non-zero (50.0%)" in out
    assert "65.5 GB" in out  # 128·1000 squared entries of 4 bytes


def test_jacobian_affine_figures_at_realistic_size() -> None:
    done = jacnet_cli("jacobian", "affine", "--in", "3", "--out", "2", "--wrt", "X")
    assert done.returncode == 0, done.stderr
    assert "∂z_ij/∂x_kl = δ_ik w_lj" in done.stdout
    assert "32,768 × 100,352 = 3,288,334,336 entries, 13.2 GB in float32" in done.stdout
    assert "25,690,112" in done.stdout  # N·in·out multiply-adds of dX = dZ Wᵀ
    done = jacnet_cli("jacobian", "affine", "--batch", "2", "--in", "3", "--out", "2", "--wrt", "W")
    assert done.returncode == 0, done.stderr
    assert "w[2,0]" in done.stdout and "z[1,1]" in done.stdout
    assert "∂z_ij/∂w_kl = x_ik δ_jl" in done.stdout
    done = jacnet_cli("jacobian", "affine", "--wrt", "b")
    assert done.returncode == 0, done.stderr
    assert "b[1]" in done.stdout and "stacked identities" in done.stdout


def test_jacobian_large_request_prints_the_pattern_then_refuses() -> None:
    done = jacnet_cli("jacobian", "relu", "--batch", "6", "--features", "5")
    assert done.returncode == 0, done.stderr
    assert "x = non-zero" in done.stdout
    one_line_error(jacnet_cli("jacobian", "softmax", "--batch", "100", "--features", "100"), "max_entries")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["jacobian", "relu", "--wrt", "W"], "--wrt expects affine"),
        (["jacobian", "affine", "--features", "3"], "--features"),
        (["jacobian", "softmax", "--in", "3"], "--in expects affine"),
        (["jacobian", "conv"], "invalid choice"),
        (["jacobian", "softmax", "--batch", "0"], "--batch"),
    ],
)
def test_jacobian_errors_are_one_line_with_exit_2(args: list[str], fragment: str) -> None:
    one_line_error(jacnet_cli(*args), fragment)
