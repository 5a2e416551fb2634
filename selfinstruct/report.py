"""The audit as one self-contained HTML page: inline CSS and inline SVG charts, no script, no network.

Input is the dict `audit.summarize` returns, so the page shows exactly what `audit --json` prints. Every
string that reaches the page goes through `esc` (html.escape with quote=True): model text may hold markup,
quotes or broken tags, and it must land as text in element bodies, attributes and SVG <title>s alike. A
Content-Security-Policy meta tag forbids scripts and remote loads as a second line of defence, not the first.
This module knows nothing of files or of how the summary was computed.
"""

from __future__ import annotations

import html
from typing import Any

ACCEPTED, REJECTED, READMITTED = "#2f7d4f", "#c0392b", "#d68910"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f}
body{margin:24px auto;max-width:1180px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.muted{color:#666}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;table-layout:auto}
th,td{border:1px solid #e1e1e1;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.text{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;max-width:520px}
.raw{white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.35 ui-monospace,monospace}
.raw{background:#fafafa;max-height:160px;overflow:auto;margin:0}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:18px;align-items:start}
.chart{border:1px solid #eee;border-radius:6px;padding:8px}
.chart h3{margin:0 0 4px}
svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#333}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
.tag{display:inline-block;padding:0 6px;border-radius:3px;background:#fbeee0;color:#8a5300;font-size:12px}
"""

# No scripts, no remote anything: only the inline styles and SVG this page carries.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def esc(value: Any) -> str:
    """Text for HTML bodies and attribute values alike."""
    return html.escape("" if value is None else str(value), quote=True)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------------- charts


def _axis(x1: float, y: float, x2: float) -> str:
    return f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#999"/>'


def bar_chart(rows: list[tuple[str, int, int]], *, width: int = 540) -> str:
    """Horizontal bars: (label, rejected, readmitted) per row, readmitted stacked after rejected."""
    if not rows:
        return '<p class="muted">no rejects</p>'
    label_w, bar_h, gap = 190, 16, 6
    top = max(r + b for _, r, b in rows) or 1
    scale = (width - label_w - 60) / top
    height = len(rows) * (bar_h + gap) + gap
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="rejects by reason">']
    for i, (label, rej, back) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">{esc(short)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{rej * scale:.1f}" height="{bar_h}" fill="{REJECTED}">'
            f"<title>{esc(label)}: {rej} rejected</title></rect>"
        )
        if back:
            parts.append(
                f'<rect x="{label_w + rej * scale:.1f}" y="{y}" width="{back * scale:.1f}" '
                f'height="{bar_h}" fill="{READMITTED}"><title>{esc(label)}: {back} readmitted</title></rect>'
            )
        parts.append(
            f'<text x="{label_w + (rej + back) * scale + 4:.1f}" y="{y + bar_h - 4}">{rej}'
            f"{f' (+{back})' if back else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    edges: list[float],
    series: list[tuple[str, list[int], str]],
    *,
    x_label: str,
    marker: float | None = None,
    marker_label: str = "",
    width: int = 540,
    height: int = 220,
    open_last: bool = False,
) -> str:
    """Side-by-side bars per bin for each series (name, counts, colour); `marker` draws a vertical line."""
    if not any(sum(counts) for _, counts, _ in series):
        return '<p class="muted">no data</p>'
    left, right, top_pad, bottom = 40, 10, 10, 38
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = len(edges) - 1
    top = max(max(counts) for _, counts, _ in series) or 1
    bin_w = plot_w / n
    bar_w = bin_w / (len(series) + 0.5)
    lo, hi = edges[0], edges[-1]
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(x_label)}">',
        _axis(left, top_pad + plot_h, width - right),
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end">{top}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    for s, (name, counts, colour) in enumerate(series):
        for i, c in enumerate(counts):
            if not c:
                continue
            h = c / top * plot_h
            x = left + i * bin_w + bar_w * (s + 0.25)
            upper = f"{edges[i + 1]:g}" if not (open_last and i == n - 1) else "…"
            parts.append(
                f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{esc(name)}: {c} in [{edges[i]:g}, {upper})</title></rect>'
            )
    for i in range(0, n + 1, max(1, n // 5)):
        x = left + i * bin_w
        tick = f"{edges[i]:g}" + ("+" if open_last and i == n else "")
        parts.append(f'<text x="{x:.1f}" y="{top_pad + plot_h + 14}" text-anchor="middle">{esc(tick)}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>'
    )
    if marker is not None and lo <= marker <= hi:
        x = left + (marker - lo) / (hi - lo) * plot_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{top_pad}" x2="{x:.1f}" y2="{top_pad + plot_h}" stroke="#333" '
            f'stroke-dasharray="4 3"><title>{esc(marker_label)}</title></line>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span style="background:{c}"></span>{esc(name)} ({sum(counts)})' for name, counts, c in series
    )
    return "".join(parts) + f'<div class="legend muted">{legend}</div>'


def rounds_chart(rounds: list[dict], *, width: int = 540, height: int = 220) -> str:
    """Acceptance (accepted / records) per round as bars on a 0-100 % axis."""
    rows = [r for r in rounds if r["round"] is not None and r["acceptance"] is not None]
    if not rows:
        return '<p class="muted">no rounds recorded</p>'
    left, right, top_pad, bottom = 40, 10, 10, 38
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    slot = plot_w / len(rows)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="acceptance over rounds">',
        _axis(left, top_pad + plot_h, width - right),
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top_pad + plot_h - frac * plot_h
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{frac:.0%}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>'
        )
    step = max(1, len(rows) // 12)
    for i, r in enumerate(rows):
        h = r["acceptance"] * plot_h
        x = left + i * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{ACCEPTED}"><title>round {esc(r["round"])}: {r["accepted"]} accepted, '
            f"{r['rejected']} rejected ({pct(r['acceptance'])})</title></rect>"
        )
        if i % step == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{top_pad + plot_h + 14}" text-anchor="middle">'
                f"{esc(r['round'])}</text>"
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">round</text></svg>'
    )
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------- tables


def _table(
    head: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), row_ids: list[str] | None = None
) -> str:
    """`rows` cells are already-escaped HTML; `numeric` column indexes are right-aligned. `row_ids` (raw text)
    become element ids, so a reject can be linked to as report.html#reject-ID."""
    if not rows:
        return '<p class="muted">none</p>'
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    ids = row_ids or [None] * len(rows)
    body = "".join(
        ("<tr>" if rid is None else f'<tr id="{esc(rid)}">')
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r, rid in zip(rows, ids, strict=True)
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: str | None, cls: str = "text") -> str:
    return '<span class="muted">–</span>' if value is None else f'<div class="{cls}">{esc(value)}</div>'


def _evidence(ev: dict) -> str:
    # Neighbour text is shown beside the candidate; repeating it here would only make the cell long.
    items = [f"<b>{esc(k)}</b>: {esc(_short(v))}" for k, v in ev.items() if k != "neighbour"]
    return "<br>".join(items) or '<span class="muted">–</span>'


def _short(v: Any, n: int = 160) -> str:
    s = v if isinstance(v, str) else f"{v:.4g}" if isinstance(v, float) else repr(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def _samples(groups: list[dict]) -> str:
    out = []
    for g in groups:
        out.append(
            f'<h3>{esc(g["stage"])} / {esc(g["reason"])} <span class="muted">({g["count"]} rejects, '
            f"{len(g['rejects'])} shown)</span></h3>"
        )
        row_ids = [f"reject-{s['id']}" for s in g["rejects"]]
        if any(s["neighbour"] for s in g["rejects"]):
            head = [
                "reject id",
                "candidate",
                "nearest pool instruction",
                "score",
                "neighbour id",
                "round",
                "evidence",
            ]
            rows = [
                [
                    esc(s["id"]),
                    _text(s["instruction"] or s["raw"]),
                    _text(s["neighbour"]["text"] if s["neighbour"] else None),
                    esc(num(s["neighbour"]["score"] if s["neighbour"] else None)),
                    esc(s["neighbour"]["id"] if s["neighbour"] else ""),
                    esc(s["round"]),
                    _evidence(s["evidence"]),
                ]
                for s in g["rejects"]
            ]
            out.append(_table(head, rows, {3, 5}, row_ids))
        else:
            rows = [
                [
                    esc(s["id"]),
                    _text(s["instruction"]),
                    _text(s["raw"] or None, "raw"),
                    esc(s["round"]),
                    _evidence(s["evidence"]),
                ]
                for s in g["rejects"]
            ]
            out.append(
                _table(["reject id", "instruction", "raw text", "round", "evidence"], rows, {3}, row_ids)
            )
    return "".join(out) or '<p class="muted">no rejects selected</p>'


# ---------------------------------------------------------------------------------------------------- page


def _coverage(summary: dict) -> str:
    from selfinstruct.report_coverage import coverage_html  # it draws with this module's helpers

    return coverage_html(summary["coverage"]) if "coverage" in summary else ""


def render(summary: dict) -> str:
    """The whole page as a string."""
    t, sel, hist = summary["totals"], summary["selection"], summary["histograms"]
    chosen = ", ".join(f"{k} = {v}" for k, v in sel.items() if v is not None and k != "limit")
    cards = "".join(
        f'<div class="card"><b>{esc(v)}</b><span class="muted">{esc(k)}</span></div>'
        for k, v in (
            ("accepted", t["accepted"]),
            ("rejected", t["rejected"]),
            ("readmitted", t["readmitted"]),
            ("acceptance", pct(t["acceptance"])),
        )
    )
    rouge, words = hist["rouge_max"], hist["instruction_words"]
    thr = rouge["threshold"]
    charts = [
        (
            "Rejects by reason",
            bar_chart([(r["reason"], r["count"], r["readmitted"]) for r in summary["by_reason"]]),
        ),
        (
            "Highest ROUGE-L against the pool",
            histogram(
                rouge["edges"],
                [
                    ("accepted", rouge["accepted"], ACCEPTED),
                    ("rejected (ROUGE-L)", rouge["rejected"], REJECTED),
                ],
                x_label="max ROUGE-L F",
                marker=thr,
                marker_label=f"threshold {thr}",
            ),
        ),
        (
            "Instruction length (words)",
            histogram(
                words["edges"],
                [("accepted", words["accepted"], ACCEPTED), ("rejected", words["rejected"], REJECTED)],
                x_label="words",
                open_last=True,
            ),
        ),
        ("Acceptance over rounds", rounds_chart(summary["rounds"])),
    ]
    by_stage = _table(
        ["stage", "rejects", "share", "readmitted"],
        [
            [esc(r["stage"]), str(r["count"]), pct(r["share"]), str(r["readmitted"])]
            for r in summary["by_stage"]
        ],
        {1, 2, 3},
    )
    by_reason = _table(
        ["stage", "reason", "rejects", "share", "readmitted"],
        [
            [esc(r["stage"]), esc(r["reason"]), str(r["count"]), pct(r["share"]), str(r["readmitted"])]
            for r in summary["by_reason"]
        ],
        {2, 3, 4},
    )
    rounds = _table(
        ["round", "accepted", "rejected", "readmitted", "acceptance"],
        [
            [
                esc("–" if r["round"] is None else r["round"]),
                str(r["accepted"]),
                str(r["rejected"]),
                str(r["readmitted"]),
                pct(r["acceptance"]),
            ]
            for r in summary["rounds"]
        ],
        {0, 1, 2, 3, 4},
    )
    blockers = _table(
        ["pool instruction", "id", "blocked", "reasons", "max score"],
        [
            [
                _text(b["neighbour"]),
                esc(b["neighbour_id"]),
                str(b["count"]),
                esc(", ".join(f"{k} {v}" for k, v in b["reasons"].items())),
                esc(num(b["max_score"])),
            ]
            for b in summary["blockers"]
        ],
        {2, 4},
    )
    readmitted = _table(
        ["reject", "task", "stage / reason", "instruction", "by", "time"],
        [
            [
                esc(r["reject_id"]),
                esc(r["task_id"]),
                f'{esc(r["stage"])} / {esc(r["reason"])} <span class="tag">readmitted</span>',
                _text(r["instruction"]),
                esc(r["by"]),
                esc(r["time"]),
            ]
            for r in summary["readmitted"]
        ],
    )
    chart_html = "".join(f'<div class="chart"><h3>{esc(title)}</h3>{svg}</div>' for title, svg in charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>selfinstruct audit: {esc(summary["source"])}</title>
<style>{CSS}</style></head>
<body>
<h1>Audit of {esc(summary["source"])}</h1>
<p class="muted">{esc(summary["kind"])} directory · schema {esc(summary["schema"])}{
        f" · rejects selected by {esc(chosen)}" if chosen else ""
    }</p>
<div class="cards">{cards}</div>
<h2>Charts</h2><div class="charts">{chart_html}</div>
<h2>What the kept data covers</h2>{_coverage(summary)}
<h2>Rejects by stage</h2>{by_stage}
<h2>Rejects by reason</h2>{by_reason}
<h2>Acceptance per round</h2>{rounds}
<h2>Pool instructions that block the most candidates</h2>{blockers}
<h2>Sample rejects</h2>{_samples(summary["samples"])}
<h2>Readmitted</h2>
<p class="muted">Rejects a person moved into the accepted set; counted as accepted, not rejected.</p>{
        readmitted
    }
</body></html>
"""
