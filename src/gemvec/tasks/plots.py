"""Pictures of classification and clustering results.

* :func:`confusion_png` and :func:`map_png` need matplotlib (the ``plots`` extra);
* :func:`map_html` writes one self-contained HTML file (inline SVG and a few lines of script,
  nothing fetched from the network): hover a point to read its text, click a legend entry to
  hide or show a cluster.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gemvec.errors import require

TSNE_MAX_POINTS = 5000  # above this the 2-D map uses PCA: t-SNE gets slow on a CPU
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363",
]  # fmt: skip
_NOISE_COLOUR = "#c8c8c8"


def colour(cluster: int) -> str:
    return _NOISE_COLOUR if cluster < 0 else _PALETTE[cluster % len(_PALETTE)]


def project_2d(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates: t-SNE (cosine) up to TSNE_MAX_POINTS texts, PCA beyond, or as asked."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if method == "auto":
        method = "tsne" if len(vectors) <= TSNE_MAX_POINTS else "pca"
    if len(vectors) < 4 or method == "pca":
        from sklearn.decomposition import PCA

        components = min(2, len(vectors), vectors.shape[1])
        points = PCA(n_components=components, random_state=seed).fit_transform(vectors)
        return np.pad(points, ((0, 0), (0, 2 - components)))
    if method != "tsne":
        raise ValueError(f"Unknown projection {method!r}; use auto, tsne or pca.")
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(vectors) - 1) / 3)
    return TSNE(2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed).fit_transform(
        vectors
    )


def _pyplot():
    matplotlib = require("matplotlib", "plots", "Drawing PNG charts")
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def confusion_png(confusion: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A confusion matrix (rows gold, columns predicted), row-normalised colours, counts written in."""
    plt = _pyplot()
    n = len(labels)
    side = max(4.0, min(0.28 * n + 2.5, 30.0))
    fig, ax = plt.subplots(figsize=(side, side))
    totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    ax.imshow(confusion / totals, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=max(4, 10 - n // 12))
    ax.set_yticks(range(n), labels, fontsize=max(4, 10 - n // 12))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    white = confusion[i, j] / totals[i, 0] > 0.5
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if white else "black")  # fmt: skip
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def map_png(
    points: np.ndarray,
    clusters: np.ndarray,
    path: str | Path,
    names: dict[int, str] | None = None,
    title: str = "",
) -> Path:
    """A scatter plot of the 2-D map coloured by cluster; ``names``: legend text per cluster id."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 7))
    size = float(np.clip(4000 / max(len(points), 1), 6, 40))  # few points: bigger dots
    for cluster in sorted(set(clusters.tolist())):
        rows = clusters == cluster
        label = "noise" if cluster < 0 else (names or {}).get(cluster, f"cluster {cluster}")
        ax.scatter(
            points[rows, 0], points[rows, 1], s=size, c=colour(cluster), label=label, alpha=0.8, linewidths=0
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "texts by cluster")
    if len(set(clusters.tolist())) <= 25:
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def map_html(
    points: np.ndarray,
    clusters: np.ndarray,
    texts: Sequence[str],
    path: str | Path,
    names: dict[int, str] | None = None,
    title: str = "gemvec clusters",
    max_text: int = 300,
) -> Path:
    """An interactive, self-contained HTML map: tooltips with the text, clickable legend."""
    width, height, pad = 900.0, 680.0, 20.0
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    xy = pad + (points - low) / span * np.array([width - 2 * pad, height - 2 * pad])
    circles = []
    for (x, y), cluster, text in zip(xy, clusters.tolist(), texts, strict=True):
        short = text if len(text) <= max_text else text[:max_text] + "…"
        circles.append(
            f'<circle cx="{x:.1f}" cy="{height - y:.1f}" r="3.5" fill="{colour(cluster)}" data-c="{cluster}">'
            f"<title>[{cluster}] {html.escape(short)}</title></circle>"
        )
    legend = []
    for cluster in sorted(set(clusters.tolist())):
        label = "noise" if cluster < 0 else (names or {}).get(cluster, f"cluster {cluster}")
        size = int((clusters == cluster).sum())
        legend.append(
            f'<li data-c="{cluster}"><span style="background:{colour(cluster)}"></span>'
            f"{html.escape(label)} ({size})</li>"
        )
    page = _HTML.format(
        title=html.escape(title),
        width=int(width),
        height=int(height),
        circles="\n".join(circles),
        legend="\n".join(legend),
        count=json.dumps(len(texts)),
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; display: flex; gap: 16px; align-items: flex-start; }}
svg {{ border: 1px solid #ddd; background: #fff; }}
circle {{ opacity: .8; }} circle:hover {{ stroke: #000; stroke-width: 1.5; opacity: 1; }}
ul {{ list-style: none; padding: 0; margin: 0; max-width: 360px; }}
li {{ cursor: pointer; margin: 3px 0; }} li.off {{ opacity: .35; }}
li span {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px; border-radius: 50%; }}
</style></head>
<body>
<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">
<title>{title}: {count} texts</title>
{circles}
</svg>
<div><h3>{title}</h3><p>Hover a point to read its text; click a cluster to hide or show it.</p>
<ul id="legend">
{legend}
</ul></div>
<script>
document.querySelectorAll('#legend li').forEach(function (item) {{
  item.addEventListener('click', function () {{
    var off = item.classList.toggle('off');
    document.querySelectorAll('circle[data-c="' + item.dataset.c + '"]').forEach(function (dot) {{
      dot.style.display = off ? 'none' : '';
    }});
  }});
}});
</script>
</body></html>
"""
