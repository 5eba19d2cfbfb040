"""Pictures of the math: expanded-Jacobian heatmaps and training curves.

matplotlib is imported only inside the plotting functions, so ``import jacnet.plots`` (and the
rest of jacnet) works without it. Figures are built with ``matplotlib.figure.Figure`` directly,
never through ``pyplot``: no global figure state, no GUI backend, safe in scripts and servers.

The helpers that lay an expanded Jacobian out as a labelled 2-D matrix (:func:`jacobian_matrix`)
and name its formula (:func:`jacobian_formula`) need only NumPy; ``jacnet jacobian`` prints
with them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from jacnet._validation import FloatArray, as_float_array, describe
from jacnet.errors import JacnetTypeError, JacnetValueError
from jacnet.jacobian import expanded_jacobian
from jacnet.losses import Loss

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["JacobianMatrix", "jacobian_formula", "jacobian_matrix", "plot_history", "plot_jacobian",
           "structural_mask"]

PathLike = str | os.PathLike[str]

def jacobian_formula(module: Any, wrt: str = "X", *, math: bool = False) -> str:
    """The per-entry formula of a module's expanded Jacobian, from its class's ``formulas``.

    Parameters
    ----------
    module : Layer or Loss
        A layer or loss whose class (or a base class) states ``formulas = {wrt: (plain text,
        mathtext)}``; a module in inference (``training`` False) uses the entry
        ``"<wrt>, inference"`` where its class gives one. Anything else gets a generic
        ``∂Y/∂A`` description.
    wrt : str
        ``"X"`` or a parameter name.
    math : bool
        Return matplotlib mathtext (``$...$``) instead of plain Unicode text.

    Returns
    -------
    str
        For instance ``"∂z_ij/∂x_kl = δ_ik w_lj"`` for ``Affine`` with ``wrt="X"``.
    """
    formulas = getattr(type(module), "formulas", None) or {}
    keys = [wrt] if getattr(module, "training", True) else [f"{wrt}, inference", wrt]
    for key in keys:
        if key in formulas:
            return str(formulas[key][1 if math else 0])
    name = type(module).__name__
    if isinstance(module, Loss):
        return f"∂J/∂ŷ of {name}"
    return f"∂Y/∂{wrt} of {name}"


@dataclass(frozen=True)
class JacobianMatrix:
    """An expanded Jacobian laid out as a 2-D matrix with a label for every row and column.

    Attributes
    ----------
    matrix : ndarray, (rows, cols)
        ``∂Y/∂A`` reshaped to ``(Y.size, A.size)``; a loss has one row (``J``).
    row_labels, col_labels : list of str
        ``"z[0,1]"``, ``"x[1,2]"``, ``"w[2,0]"``, ``"b[1]"``, ``"J"``...
    row_block, col_block : int
        Entries per block along each axis (one sample's outputs, one row of ``W``...): block
        boundaries fall on multiples of them. ``0`` means no blocks.
    output_shape, input_shape : tuple of int
        The shapes of ``Y`` and ``A`` before flattening.
    structure : ndarray of bool, (rows, cols), or None
        ``False`` at the *structural* zeros, entries that are zero for every input because of
        the module's structure (the off-diagonal of an element-wise layer, the other samples'
        blocks...); ``True`` where the value is computed (and may still be zero, e.g. a ReLU
        at a negative input). ``None`` when the structure is not known (a user's layer).
    row_subblock, col_subblock : int
        Entries per channel within a block of an ``(N, C, *spatial)`` array (one Toeplitz
        band of a convolution); ``0`` when the array has fewer than three axes.
    """

    matrix: FloatArray
    row_labels: list[str]
    col_labels: list[str]
    row_block: int
    col_block: int
    output_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    structure: NDArray[np.bool_] | None = None
    row_subblock: int = 0
    col_subblock: int = 0


def structural_mask(module: Any, wrt: str, output_shape: tuple[int, ...],
                    input_shape: tuple[int, ...], *, X_shape: tuple[int, ...] | None = None
                    ) -> NDArray[np.bool_] | None:
    """Where a module's expanded Jacobian can be non-zero, ``(rows, cols)``, from the
    ``jacobian_structure`` its class states (see :mod:`jacnet.structure`).

    ``False`` marks the structural zeros (``δ_ik``: another sample; ``δ_jl``: another
    feature; outside a kernel's window...); ``True`` the entries computed from the input. A
    loss has no structural zeros. ``None`` for a module whose structure jacnet does not know
    (a user's layer without ``jacobian_structure``, a Sequential). ``X_shape`` is the layer's
    input shape (by default ``input_shape`` for ``wrt="X"``, else ``output_shape``: pass it
    for a parameter of a layer that changes the shape, such as a convolution).
    """
    stating = getattr(module, "jacobian_structure", None)
    if stating is None:
        return None
    if X_shape is None:
        X_shape = input_shape if wrt == "X" else output_shape
    structure = stating(wrt, tuple(X_shape))
    if structure is None:
        return None
    rows = int(np.prod(output_shape, dtype=np.int64))
    cols = int(np.prod(input_shape, dtype=np.int64))
    return np.asarray(structure.mask(tuple(output_shape), tuple(input_shape))).reshape(rows, cols)


def _labels(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{','.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def _names(module: Any, wrt: str) -> tuple[str, str]:
    """The letters of the output and of the differentiated input, as the lecture writes them
    (the class's ``symbols``: ``("z", "x")`` for an affine layer, ``("J", "l")`` for a loss on
    logits)."""
    out, inp = getattr(type(module), "symbols", ("J", "ŷ") if isinstance(module, Loss) else ("y", "x"))
    if isinstance(module, Loss) or wrt == "X":
        return out, inp
    return out, (wrt.lower() if len(wrt) == 1 else wrt)


def jacobian_matrix(module: Any, X: Any, *, wrt: str = "X", target: Any = None) -> JacobianMatrix:
    """Materialise a module's expanded Jacobian and lay it out as a labelled matrix.

    Parameters
    ----------
    module : Layer, Loss or Sequential
        What to differentiate (see :func:`jacnet.expanded_jacobian`).
    X : array_like, (N, in)
        The input (the prediction, for a loss).
    wrt : str
        ``"X"`` or a parameter name (``"W"``, ``"b"``...).
    target : array_like, optional
        The loss's target; required for a loss.

    Returns
    -------
    JacobianMatrix
        Rows are the outputs ``Y`` in row-major order, columns the entries of ``A``.
    """
    A = as_float_array(X, "jacobian_matrix X", ndim=None)
    J = np.asarray(expanded_jacobian(module, A, wrt=wrt, target=target))
    out_name, in_name = _names(module, wrt)
    if isinstance(module, Loss):
        out_shape: tuple[int, ...] = ()
        in_shape = tuple(A.shape)
    else:
        in_shape = tuple(A.shape) if wrt == "X" else tuple(module.params[wrt].shape)
        out_shape = tuple(J.shape[: J.ndim - len(in_shape)])
    rows = int(np.prod(out_shape, dtype=np.int64))
    cols = int(np.prod(in_shape, dtype=np.int64))
    structure = structural_mask(module, wrt, out_shape, in_shape, X_shape=tuple(A.shape))
    return JacobianMatrix(
        matrix=J.reshape(rows, cols),
        row_labels=_labels(out_name, out_shape),
        col_labels=_labels(in_name, in_shape),
        row_block=_block(out_shape),
        col_block=_block(in_shape),
        output_shape=out_shape,
        input_shape=in_shape,
        structure=structure,
        row_subblock=_subblock(out_shape),
        col_subblock=_subblock(in_shape),
    )


def _block(shape: tuple[int, ...]) -> int:
    """Entries per block: one sample (or one row of a parameter matrix), ``prod(shape[1:])``."""
    return int(np.prod(shape[1:], dtype=np.int64)) if len(shape) >= 2 else 0


def _subblock(shape: tuple[int, ...]) -> int:
    """Entries per channel within a block of an ``(N, C, *spatial)`` shape: ``prod(shape[2:])``."""
    return int(np.prod(shape[2:], dtype=np.int64)) if len(shape) >= 3 else 0


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "jacnet's plots need matplotlib, which is not installed; install it with "
            "pip install 'jacnet[plot]'"
        ) from exc


def _new_figure(figsize: tuple[float, float], dpi: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)  # attaches itself: savefig then needs no pyplot and no backend choice
    return fig


def _save(fig: Figure, path: PathLike | None) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=fig.dpi, format="png")


def _check_size(value: Any, name: str) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise JacnetTypeError(f"{name} expects (width, height) in inches, got {describe(value)}") from None
    if not (w > 0 and h > 0 and np.isfinite(w) and np.isfinite(h)):
        raise JacnetValueError(f"{name} expects positive finite sizes, got {value!r}")
    return w, h


def plot_jacobian(
    module: Any,
    X: Any,
    *,
    wrt: str = "X",
    target: Any = None,
    ax: Axes | None = None,
    title: str | None = None,
    path: PathLike | None = None,
    figsize: tuple[float, float] = (6.0, 4.8),
    dpi: float = 100,
    annotate: bool | None = None,
    structure: Any = "auto",
) -> Figure:
    """Draw a module's expanded Jacobian as a heatmap with its block structure visible.

    Rows are the outputs ``y[i,j]`` (one block per sample), columns the entries of the input or
    parameter; grid lines mark the block boundaries. *Structural* zeros, entries zero for every
    input by the module's structure (``structure`` False), are drawn in neutral grey; every
    computed entry is drawn in the colour map, a computed zero (a ReLU at a negative input) in
    its zero colour, white. The colour limits fit the data: symmetric around zero when the
    values have both signs, ``[0, max]`` (white to red) when none is negative, ``[min, 0]``
    when none is positive. An affine layer in ``X`` shows a block diagonal of ``Wᵀ`` blocks,
    in ``W`` the Kronecker pattern ``x_ik δ_jl``, in ``b`` stacked identities; a softmax shows
    dense ``K × K`` blocks on the diagonal.

    Parameters
    ----------
    module : Layer, Loss or Sequential
        What to differentiate.
    X : array_like, (N, in)
        The input (the prediction, for a loss).
    wrt : str
        ``"X"`` or a parameter name.
    target : array_like, optional
        The loss's target; required for a loss.
    ax : matplotlib Axes, optional
        Draw into these axes (no colorbar is added); otherwise a new figure is made.
    title : str, optional
        Defaults to the formula, e.g. ``∂z_ij/∂x_kl = δ_ik w_lj``.
    path : str or PathLike, optional
        Also write the figure there as PNG.
    figsize : (float, float)
        Size in inches of a new figure; the PNG is ``figsize × dpi`` pixels.
    dpi : float
        Resolution of a new figure and of the PNG.
    annotate : bool, optional
        Write each computed entry's value in its cell (a computed zero as ``0``); by default
        when the matrix has at most 12 × 12 entries.
    structure : "auto", array_like of bool (rows, cols), or None
        Where the entries are computed (``True``) or structural zeros (``False``): "auto" uses
        :func:`structural_mask` for the built-in modules; ``None`` draws every entry as
        computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.

    Raises
    ------
    ImportError
        When matplotlib is not installed (``pip install 'jacnet[plot]'``).
    """
    _require_matplotlib()
    jm = jacobian_matrix(module, X, wrt=wrt, target=target)
    M = np.asarray(jm.matrix, dtype=np.float64)
    rows, cols = M.shape
    if ax is None:
        fig = _new_figure(_check_size(figsize, "plot_jacobian figsize"), float(dpi))
        ax = fig.add_subplot()
        colorbar = True
    else:
        fig = cast("Figure", ax.figure)  # a SubFigure draws the same way
        colorbar = False
    mask = jm.structure if isinstance(structure, str) and structure == "auto" else structure
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != M.shape:
            raise JacnetValueError(f"plot_jacobian structure expects a boolean array of shape {M.shape}, "
                                   f"got shape {mask.shape}")
    computed = M if mask is None else M[mask]
    low = float(computed.min(initial=0.0))
    high = float(computed.max(initial=0.0))
    import matplotlib as mpl

    if low < 0 < high or low == high:
        limit = max(-low, high) or 1.0
        name, vmin, vmax = "RdBu_r", -limit, limit
    elif low >= 0:
        name, vmin, vmax = "Reds", 0.0, high
    else:
        name, vmin, vmax = "Blues_r", low, 0.0
    limit = max(abs(vmin), abs(vmax))
    cmap = mpl.colormaps[name].with_extremes(bad="0.78")  # structural zeros: neutral grey
    shown = M if mask is None else np.ma.masked_array(M, mask=~mask)
    image = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    # Bold lines at block boundaries (samples), medium ones between channels within a block,
    # thin ones between cells while they stay readable.
    for size, block, sub, line in ((rows, jm.row_block, jm.row_subblock, ax.axhline),
                                   (cols, jm.col_block, jm.col_subblock, ax.axvline)):
        thin = size <= 40
        for k in range(1, size):
            bold = bool(block) and k % block == 0 and size // block <= 64
            medium = not bold and bool(sub) and k % sub == 0 and size // sub <= 128
            if bold:
                line(k - 0.5, color="0.2", linewidth=1.4)
            elif medium:
                line(k - 0.5, color="0.5", linewidth=0.7)
            elif thin:
                line(k - 0.5, color="0.85", linewidth=0.4)
    small = rows <= 24 and cols <= 24
    if small:
        ax.set_yticks(range(rows), jm.row_labels, fontsize=8)
        ax.set_xticks(range(cols), jm.col_labels, fontsize=8, rotation=90)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.tick_params(length=0)
    if annotate is None:
        annotate = rows <= 12 and cols <= 12
    if annotate:
        for (r, c), value in np.ndenumerate(M):
            if mask is not None and not mask[r, c]:
                continue  # a structural zero: the grey says it
            if value != 0 or mask is not None:
                ax.text(c, r, f"{value:.2f}" if value != 0 else "0", ha="center", va="center",
                        fontsize=6.5, color="white" if abs(value) > 0.6 * limit else "black")
    out = "×".join(str(s) for s in jm.output_shape) or "the scalar J"
    inp = "×".join(str(s) for s in jm.input_shape)
    ax.set_title(title if title is not None else jacobian_formula(module, wrt, math=True), fontsize=11)
    # On a second line: a long first one would be cut off at the figure's edge.
    legend = "" if mask is None else (f"\ngrey: {int(mask.size - np.count_nonzero(mask))} structural "
                                      f"zeros, white: computed zeros")
    ax.set_xlabel(f"{type(module).__name__}: {rows} output{'s' if rows != 1 else ''} ({out}) × "
                  f"{cols} inputs ({inp}), {np.count_nonzero(M)} non-zero{legend}", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_history(
    history: Any,
    path: PathLike | None = None,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Draw training curves: the loss (train and validation) and, when recorded, the accuracy.

    Parameters
    ----------
    history : jacnet.History or dict of lists
        What :func:`jacnet.fit` returns, or its ``.history`` dict (keys ``loss``,
        ``accuracy``, ``val_loss``, ``val_accuracy``, ``val_mse``, ``val_r2``).
    path : str or PathLike, optional
        Also write the figure there as PNG.
    figsize : (float, float), optional
        Inches; by default 5 × 3.6 per panel.
    dpi : float
        Resolution of the figure and of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One panel for the losses, a second one for accuracy (or R²) when present.

    Raises
    ------
    ImportError
        When matplotlib is not installed (``pip install 'jacnet[plot]'``).
    """
    _require_matplotlib()
    curves = getattr(history, "history", history)
    if not isinstance(curves, dict) or not all(isinstance(k, str) for k in curves):
        raise JacnetTypeError(f"plot_history history expects a History or a dict of lists, "
                              f"got {describe(history)}")
    if not curves.get("loss"):
        raise JacnetValueError("plot_history history expects a 'loss' curve with at least one epoch, "
                               f"got keys {sorted(curves)}")
    n = len(curves["loss"])
    recorded = list(getattr(history, "epochs", []) or [])
    epochs = [e + 1 for e in recorded] if len(recorded) == n else list(range(1, n + 1))

    def xs(values: list[float]) -> list[int]:
        return epochs[: len(values)] if len(values) <= n else list(range(1, len(values) + 1))

    second = [k for k in ("accuracy", "val_accuracy") if curves.get(k)]
    second_label = "accuracy"
    if not second and curves.get("val_r2"):
        second, second_label = ["val_r2"], "R²"
    panels = 2 if second else 1
    size = _check_size(figsize, "plot_history figsize") if figsize is not None else (5.0 * panels, 3.6)
    fig = _new_figure(size, float(dpi))
    axes = [fig.add_subplot(1, panels, p + 1) for p in range(panels)]
    loss_keys = ["loss", "val_loss"] if curves.get("val_loss") else ["loss", "val_mse"]
    for key in loss_keys:
        values = [float(v) for v in curves.get(key) or []]
        if values:
            axes[0].plot(xs(values), values, marker="o" if n <= 20 else None, markersize=3,
                         label="train" if key == "loss" else "validation")
    axes[0].set_title("loss")
    if second:
        for key in second:
            values = [float(v) for v in curves[key]]
            axes[1].plot(xs(values), values, marker="o" if n <= 20 else None, markersize=3,
                         label="validation" if key.startswith("val_") else "train")
        axes[1].set_title(second_label)
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    _save(fig, path)
    return fig
