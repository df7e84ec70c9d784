"""Figures drawn without pyplot: a `matplotlib.figure.Figure` on its own Agg canvas.

pyplot keeps global state: ``matplotlib.use("Agg")`` switches a notebook's backend (its
inline plots stop showing) and every ``plt.subplots`` figure stays registered until
closed. A Figure with a FigureCanvasAgg attached renders to PNG the same way and touches
neither, so ``atts report`` and ``atts compare`` are safe to call from a notebook.
"""

from __future__ import annotations


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kw):
    """``plt.subplots`` without pyplot: ``(figure, axes)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy, optional (the report extra)
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: savefig renders with Agg
    return fig, fig.subplots(nrows, ncols, **kw)


def close(fig) -> None:
    """Nothing to do: the figure is not registered anywhere; kept for pyplot's shape."""
