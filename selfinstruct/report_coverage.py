"""The audit page's coverage section: leading verbs with their objects, stage score histograms, clusters.

Drawn with report.py's helpers (inline SVG, every piece of data escaped); the numbers come from coverage.py
through the audit summary. No data of its own, no I/O.
"""

from __future__ import annotations

from selfinstruct.report import ACCEPTED, REJECTED, _table, _text, esc, histogram, pct


def verb_chart(verbs: list[dict], *, width: int = 540) -> str:
    """Horizontal bars per leading verb, its top objects written after the bar (coverage.verb_table)."""
    if not verbs:
        return '<p class="muted">no instruction with a leading verb</p>'
    label_w, bar_h, gap = 110, 16, 6
    top = max(v["count"] for v in verbs) or 1
    scale = (width - label_w - 230) / top
    height = len(verbs) * (bar_h + gap) + gap
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="leading verbs and objects">']
    for i, v in enumerate(verbs):
        y = gap + i * (bar_h + gap)
        objects = ", ".join(f"{o['noun']} {o['count']}" for o in v["objects"])
        short = objects if len(objects) <= 38 else objects[:37] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">{esc(v["verb"])}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{v["count"] * scale:.1f}" height="{bar_h}" fill="{ACCEPTED}">'
            f"<title>{esc(v['verb'])}: {v['count']} ({esc(objects)})</title></rect>"
        )
        parts.append(
            f'<text x="{label_w + v["count"] * scale + 4:.1f}" y="{y + bar_h - 4}">{v["count"]}'
            f'<tspan fill="#777"> {esc(short)}</tspan></text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def coverage_html(cov: dict) -> str:
    """The coverage section: verbs and objects, score histograms per stage, clusters with representatives."""
    verbs = cov["verbs"]
    charts = [(f"Leading verbs ({verbs['parsed']} of {verbs['instructions']} kept instructions parsed)",
               verb_chart(verbs["verbs"]))]  # fmt: skip
    labels = {"semantic_cosine": "highest cosine to the pool", "ifd": "IFD", "rating": "judge's score (0-5)"}
    for name, h in cov["scores"].items():
        acc, rej = h["accepted"], h["rejected"]
        series = [("accepted", acc["counts"], ACCEPTED), ("rejected", rej["counts"], REJECTED)]
        charts.append((f"Scores: {labels.get(name, name)}", histogram(acc["edges"], series, x_label=name)))
    body = "".join(f'<div class="chart"><h3>{esc(t)}</h3>{svg}</div>' for t, svg in charts)
    out = f'<div class="charts">{body}</div>'
    if cov.get("clusters"):
        out += "<h3>Clusters of the embedding space</h3>" + _table(
            ["size", "share", "representative instruction"],
            [[str(c["size"]), pct(c["share"]), _text(c["representative"])] for c in cov["clusters"]],
            {0, 1},
        )
    return out
