"""`selfinstruct audit`: what the filters threw away and why, as tables, one JSON object or an HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from selfinstruct.cli.app import app, console, err_console, plain, print_json
from selfinstruct.report import num, pct


def _table(title: str, columns: list[str], numeric: frozenset[int] = frozenset()) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i in numeric else "left", overflow="fold")
    return table


def print_summary(s: dict) -> None:
    t = s["totals"]
    head = Text(f"{s['kind']} {s['source']}: ", style="bold")
    head.append(
        f"{t['accepted']} accepted, {t['rejected']} rejected, {t['readmitted']} readmitted "
        f"(acceptance {pct(t['acceptance'])})"
    )
    console.print(head)
    sel = {k: v for k, v in s["selection"].items() if v is not None and k != "limit"}
    if sel:
        console.print(plain("rejects selected by " + ", ".join(f"--{k} {v}" for k, v in sel.items())))

    table = _table("rejects by stage", ["stage", "rejects", "share", "readmitted"], frozenset({1, 2, 3}))
    for r in s["by_stage"]:
        table.add_row(plain(r["stage"]), str(r["count"]), pct(r["share"]), str(r["readmitted"]))
    console.print(table)
    cols = ["stage", "reason", "rejects", "share", "readmitted"]
    table = _table("rejects by reason", cols, frozenset({2, 3, 4}))
    for r in s["by_reason"]:
        table.add_row(
            plain(r["stage"]), plain(r["reason"]), str(r["count"]), pct(r["share"]), str(r["readmitted"])
        )
    console.print(table)
    cols = ["round", "accepted", "rejected", "readmitted", "acceptance"]
    table = _table("acceptance per round", cols, frozenset(range(5)))
    for r in s["rounds"]:
        table.add_row(
            "–" if r["round"] is None else str(r["round"]),
            str(r["accepted"]), str(r["rejected"]), str(r["readmitted"]), pct(r["acceptance"]),
        )  # fmt: skip
    console.print(table)
    if s["blockers"]:
        cols = ["pool instruction", "id", "blocked", "reasons", "max score"]
        table = _table("pool instructions that block the most candidates", cols, frozenset({2, 4}))
        for b in s["blockers"]:
            reasons = ", ".join(f"{k} {v}" for k, v in b["reasons"].items())
            table.add_row(
                plain(b["neighbour"]), plain(b["neighbour_id"]), str(b["count"]), plain(reasons),
                num(b["max_score"]),
            )  # fmt: skip
        console.print(table)
    for g in s["samples"]:
        title = f"{g['stage']} / {g['reason']}: {len(g['rejects'])} of {g['count']}"
        if any(x["neighbour"] for x in g["rejects"]):
            cols = ["id", "candidate", "nearest pool instruction", "score", "round"]
            table = _table(title, cols, frozenset({3, 4}))
            for x in g["rejects"]:
                n = x["neighbour"] or {}
                table.add_row(
                    plain(x["id"]), plain(x["instruction"] or x["raw"]), plain(n.get("text") or n.get("id")),
                    num(n.get("score")), plain(x["round"]),
                )  # fmt: skip
        else:
            table = _table(title, ["id", "instruction / raw text", "evidence", "round"], frozenset({3}))
            for x in g["rejects"]:
                evidence = json.dumps(x["evidence"], ensure_ascii=False)
                table.add_row(
                    plain(x["id"]), plain(x["instruction"] or x["raw"], 160), plain(evidence, 160),
                    plain(x["round"]),
                )  # fmt: skip
        console.print(table)
    _print_coverage(s["coverage"])
    if s["readmitted"]:
        cols = ["reject", "stage / reason", "instruction", "by", "time"]
        table = _table("readmitted (counted as accepted)", cols)
        for r in s["readmitted"]:
            table.add_row(
                plain(r["reject_id"]), plain(f"{r['stage']} / {r['reason']}"), plain(r["instruction"]),
                plain(r["by"]), plain(r["time"]),
            )  # fmt: skip
        console.print(table)


@app.command()
def audit(
    run: Annotated[Path, typer.Argument(help="A run directory (generate) or a filter output directory.")],
    stage: Annotated[str | None, typer.Option(help="Only rejects of this stage (parse, rouge, ...).")] = None,
    reason: Annotated[str | None, typer.Option(help="Only rejects with this reason code.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Samples per reason, and pool instructions listed.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (selfinstruct.audit/1).")
    ] = False,
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML report here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --html file if it exists.")] = False,
    clusters: Annotated[
        bool | None,
        typer.Option(
            "--clusters/--no-clusters",
            help="Cluster the kept instructions by embedding (loads a small model; default: on with --html).",
        ),
    ] = None,
) -> None:
    """Rejects by stage and reason, acceptance per round, the pool instructions that block most, samples."""
    from selfinstruct.audit import audit as do_audit
    from selfinstruct.report import render

    want = clusters if clusters is not None else html is not None
    summary = do_audit(run, stage=stage, reason=reason, limit=limit, clusters=want)
    if html is not None:
        from selfinstruct.store import atomic_file, check_output

        check_output(html, inputs=[run], replace=force)
        html.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(html) as f:
            f.write(render(summary))
    if as_json:
        print_json(summary)
    else:
        print_summary(summary)
    if html is not None:  # stdout holds exactly the JSON object under --json
        (err_console if as_json else console).print(Text(f"wrote {html}"))


def _print_coverage(cov: dict) -> None:
    v = cov["verbs"]
    title = f"leading verbs of kept instructions ({v['parsed']} of {v['instructions']} parsed)"
    table = _table(title, ["verb", "count", "most frequent objects"], frozenset({1}))
    for row in v["verbs"]:
        objects = ", ".join(f"{o['noun']} {o['count']}" for o in row["objects"])
        table.add_row(plain(row["verb"]), str(row["count"]), plain(objects))
    console.print(table)
    for name, h in cov["scores"].items():
        acc, rej = h["accepted"], h["rejected"]
        console.print(
            plain(
                f"{name}: accepted n={acc['n']} mean={num(acc['mean'])}, rejected n={rej['n']} mean={num(rej['mean'])}"
            )
        )
    if cov.get("clusters"):
        table = _table(
            "clusters of the embedding space", ["size", "share", "representative"], frozenset({0, 1})
        )
        for c in cov["clusters"]:
            table.add_row(str(c["size"]), pct(c["share"]), plain(c["representative"]))
        console.print(table)
