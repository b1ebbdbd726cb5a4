"""The figure of a semidefinite complementarity solution (`PSDComplementarityResult.plot`)."""

import numpy as np

from ._plots import _axes


def plot_psd_complementarity(result, ax=None, **kwargs):
    """The eigenvalues of `S` (descending) and of `W = q + M(S)` (ascending), by index: where one
    is positive the other is 0 (complementarity). Returns the axes."""
    if np.ndim(result.residual):
        raise ValueError("plot a batched PSDComplementarityResult one instance at a time.")
    s = np.linalg.eigvalsh(np.asarray(result.S))[::-1]
    w = np.linalg.eigvalsh(np.asarray(result.W))
    _, ax = _axes(ax)
    idx = np.arange(1, s.size + 1)
    ax.plot(idx, s, "o", label="eigenvalues of $S$ (descending)", **kwargs)
    ax.plot(idx, w, "s", mfc="none", label="eigenvalues of $W = q + M(S)$ (ascending)")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue")
    ax.set_title(f"PSD complementarity: residual {float(result.residual):.1e}")
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
