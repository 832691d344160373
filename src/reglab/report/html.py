"""report.html and summary.md: one self-contained page and the same tables in Markdown.

The page embeds every figure as a PNG data URI, has no script, and carries a
Content-Security-Policy that forbids every fetch except ``data:`` images, so
it opens offline and a browser never makes a network request for it. Links
to the SVG and PNG files beside it are relative (``figures/<name>.svg``).
"""

from __future__ import annotations

import base64
from html import escape

from reglab.report.digest import Digest
from reglab.report.figures import FigureSpec
from reglab.report.tables import (Table, architecture_text, data_rows, data_text, environment_rows, headline,
                                  hyperparameter_table, optimizer_text, paired_table, regularizer_formulas,
                                  reproduce_command, results_table, schedule_flag_texts, training_rows)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1b1b1b;
 margin:0;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:36px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 6px}
.sub{color:#555;margin:0 0 14px}
nav{font-size:14px;margin:10px 0 18px} nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
.banner{padding:10px 14px;border-radius:6px;margin:12px 0}
.incomplete{background:#fff4e5;border:1px solid #f0a020}
.warn{background:#f5f5f5;border:1px solid #ccc;font-size:14px}
.headline{font-size:16px;background:#eef6ff;border-left:4px solid #0072B2;padding:10px 14px}
figure{margin:18px 0 28px} figure img{max-width:100%;height:auto;display:block;border:1px solid #eee}
figcaption{font-size:13.5px;color:#333;margin-top:6px} figcaption a{color:#0b5cad}
table{border-collapse:collapse;font-size:13.5px;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 9px;text-align:right;vertical-align:top}
td{white-space:nowrap} .kv td{white-space:normal}
th{background:#f3f3f3;text-align:center} td.l,th:first-child{text-align:left}
tr.em td{background:#fffbe0;font-weight:600}
.note{font-size:13px;color:#555;margin:4px 0}
.kv td{text-align:left} .kv td:first-child{color:#555;white-space:nowrap}
.scroll{overflow-x:auto}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f4f4f4;padding:10px 12px;border-radius:5px;overflow-x:auto;white-space:pre-wrap}
ul.formulas{margin:4px 0 10px 0;padding-left:20px}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
"""

SECTIONS = (("results", "Results"), ("training", "Training curves"), ("inside", "Inside the networks"),
            ("comparisons", "Paired comparisons"), ("setup", "Setup"))


def render_html(d: Digest, figures: list[tuple[FigureSpec, bytes]]) -> str:
    """The whole page; `figures` pairs each spec with its PNG bytes."""
    run = d.run
    parts = page_head(f"reglab report: {d.study}") + [
        f"<h1>reglab report: {escape(d.study)}</h1>",
        f'<p class="sub">Dataset {escape(d.dataset)} · {len(d.methods)} methods × '
        f"{'/'.join(str(n) for n in sorted({m.n_seeds for m in d.methods}))} seeds · "
        f"{d.epochs_done} of {d.n_epochs} epochs · run directory <code>{escape(str(run.dir))}</code></p>",
        "<nav>" + "".join(f'<a href="#{sid}">{title}</a>' for sid, title in SECTIONS) + "</nav>",
    ]
    if not d.complete:
        parts.append(
            f'<div class="banner incomplete"><b>This run is incomplete</b> (status '
            f"“{escape(str(run.manifest.get('status', '?')))}”, {d.epochs_done} of {d.n_epochs} epochs written). "
            "Everything below is built from what is on disk now; numbers are not final. Rebuild with "
            f"<code>reglab report {escape(str(run.dir))}</code> when the run has finished.</div>")
    for w in d.warnings:
        parts.append(f'<div class="banner warn">{escape(w)}</div>')

    by_section: dict[str, list[tuple[FigureSpec, bytes]]] = {}
    for spec, png in figures:
        by_section.setdefault(spec.section, []).append((spec, png))

    parts.append('<h2 id="results">Results</h2>')
    parts.append(f'<p class="headline">{escape(headline(d))}</p>')
    for text in schedule_flag_texts(d):
        parts.append(f'<div class="banner incomplete">{escape(text)}</div>')
    parts.append(table_html(results_table(d)))
    if d.next_step:
        parts.append(f'<p class="note"><b>Next:</b> {escape(d.next_step)}</p>')
    parts += [figure_html(s, png) for s, png in by_section.get("results", [])]

    parts.append('<h2 id="training">Training curves</h2>')
    parts += [figure_html(s, png) for s, png in by_section.get("training", [])] or [
        '<p class="note">No epoch has been written yet.</p>']

    parts.append('<h2 id="inside">Inside the networks</h2>')
    parts += [figure_html(s, png) for s, png in by_section.get("inside", [])] or [
        '<p class="note">analysis.npz is not there yet (it is written when training ends).</p>']

    parts.append('<h2 id="comparisons">Paired comparisons</h2>')
    paired = paired_table(d)
    parts.append(table_html(paired) if paired.rows else
                 '<p class="note">Paired comparisons need at least two seeds shared by two methods.</p>')

    parts.append(_setup(d))
    parts.append(PAGE_END)
    return "\n".join(parts) + "\n"


PAGE_END = "</main></body></html>"


def page_head(title: str) -> list[str]:
    """The lines of every reglab page up to ``<main>``: charset, a CSP that allows no network access
    (figures are inline data URIs), viewport, title and the shared style sheet."""
    return ["<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}</style></head><body><main>"]


def figure_html(spec: FigureSpec, png: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{spec.name}"><h3>{escape(spec.title)}</h3>'
            f'<img src="{uri}" alt="{escape(spec.title)}">'
            f"<figcaption>{escape(spec.caption)} "
            f'<a href="figures/{spec.name}.svg">SVG</a> · <a href="figures/{spec.name}.png">PNG</a>'
            "</figcaption></figure>")


def table_html(t: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    body = []
    for i, row in enumerate(t.rows):
        em = ' class="em"' if i < len(t.emphasis) and t.emphasis[i] else ""
        cells = []
        for j, cell in enumerate(row):
            swatch = ""
            if j == 0 and i < len(t.row_colors) and t.row_colors[i]:
                swatch = f'<span class="swatch" style="background:{t.row_colors[i]}"></span>'
            left = ' class="l"' if j < t.text_columns else ""
            cells.append(f"<td{left}>{swatch}{escape(cell)}</td>")
        body.append(f"<tr{em}>{''.join(cells)}</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in t.notes)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table></div>{notes}")


def _kv(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<div class="scroll"><table class="kv"><tbody>{body}</tbody></table></div>'


def _setup(d: Digest) -> str:
    out = ['<h2 id="setup">Setup</h2>']
    cmd = reproduce_command(d)
    if cmd:
        out.append("<h3>Reproduce this run</h3>")
        out.append(f"<pre>{escape(cmd)}</pre>")
    out.append("<h3>Architecture</h3>")
    out.append(f"<p>{escape(architecture_text(d))}</p>")
    out.append("<h3>Data and split</h3>")
    out.append(f"<p>{escape(data_text(d))}</p>")
    out.append(_kv(data_rows(d)))
    out.append("<h3>Training</h3>")
    out.append(_kv(training_rows(d)))
    out.append("<h3>Methods: regularizers and optimizer</h3>")
    for m in d.methods:
        items = regularizer_formulas(m) + [optimizer_text(d, m)]
        out.append(f'<p><span class="swatch" style="background:{m.color}"></span><b>{escape(m.name)}</b> '
                   f"(seeds {', '.join(map(str, m.seeds))})</p>")
        out.append('<ul class="formulas">' + "".join(f"<li>{escape(x)}</li>" for x in items) + "</ul>")
    out.append("<p>The training objective is the mean cross-entropy of the minibatch plus each method's "
               "penalty terms; constraints (max-norm) are applied after each update.</p>")
    out.append("<h3>Every hyperparameter, per method</h3>")
    out.append(table_html(hyperparameter_table(d)))
    out.append("<h3>Hardware, packages, timing</h3>")
    out.append(_kv(environment_rows(d)))
    return "\n".join(out)


# ----------------------------------------------------------------------------
# Markdown

def render_markdown(d: Digest, figure_names: list[str]) -> str:
    lines = [f"# reglab report: {d.study}", ""]
    lines.append(f"Dataset {d.dataset}, {len(d.methods)} methods, {d.epochs_done} of {d.n_epochs} epochs, "
                 f"status {d.run.manifest.get('status', '?')}.")
    if not d.complete:
        lines += ["", "**This run is incomplete: the numbers below are not final.**"]
    lines += ["", headline(d), ""] + [f"**{t}**\n" for t in schedule_flag_texts(d)]
    lines += ["## Results", "", table_markdown(results_table(d))]
    if d.next_step:
        lines += [f"**Next:** {d.next_step}", ""]
    paired = paired_table(d)
    if paired.rows:
        lines += ["## Paired comparisons", "", table_markdown(paired)]
    lines += ["## Setup", "", architecture_text(d), "", data_text(d), ""]
    for m in d.methods:
        lines.append(f"- **{m.name}**: " + " ".join(regularizer_formulas(m) + [optimizer_text(d, m)]))
    cmd = reproduce_command(d)
    if cmd:
        lines += ["", "Reproduce:", "", "```", cmd, "```"]
    if figure_names:
        lines += ["", "## Figures", ""] + [f"- figures/{n}.png (and .svg)" for n in figure_names]
    return "\n".join(lines) + "\n"


def table_markdown(t: Table) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    rows = ["| " + " | ".join(cell(c) for c in t.columns) + " |",
            "|" + "|".join("---" if i < t.text_columns else "---:" for i in range(len(t.columns))) + "|"]
    for i, r in enumerate(t.rows):
        bold = i < len(t.emphasis) and t.emphasis[i]
        rows.append("| " + " | ".join(f"**{cell(c)}**" if bold and j == 0 else cell(c)
                                      for j, c in enumerate(r)) + " |")
    return "\n".join(rows) + "\n\n" + "\n".join(f"_{n}_\n" for n in t.notes)
