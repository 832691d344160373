"""Build a run's report from its files: figures/*.png + *.svg, report.html, summary.md.

Re-running it never retrains: it reads only the run directory, through
:mod:`reglab.results`, and rewrites the report files atomically.
"""

from __future__ import annotations

from pathlib import Path

from reglab.report.digest import digest
from reglab.report.figures import all_figures, save
from reglab.report.html import render_html, render_markdown
from reglab.results import FIGURES_DIR, Run, atomic_write_text, load_run


def build_report(run_dir: str | Path) -> Path:
    """Write the report of the run in `run_dir`; returns the path of report.html.

    A missing, empty or foreign directory raises ReglabError (via load_run);
    a partial run gives a partial report that says so. A data-size study's directory
    (``datasize.json``) gets its own report (:mod:`reglab.report.datasize`).
    """
    from reglab.report.datasize import build_datasize_report, is_datasize_dir
    if is_datasize_dir(run_dir):
        return build_datasize_report(run_dir)
    return write_report(load_run(run_dir))


def write_report(run: Run) -> Path:
    d = digest(run)
    fig_dir = run.dir / FIGURES_DIR
    specs = all_figures(d)
    embedded = []
    for spec in specs:
        png, _svg = save(spec, fig_dir)
        embedded.append((spec, png.read_bytes()))
        spec.figure.clear()  # free the figure's memory now; matplotlib keeps no other reference
    _remove_stale_figures(fig_dir, {s.name for s in specs})
    html_path = run.dir / "report.html"
    atomic_write_text(html_path, render_html(d, embedded))
    atomic_write_text(run.dir / "summary.md", render_markdown(d, [s.name for s in specs]))
    return html_path


def _remove_stale_figures(fig_dir: Path, keep: set[str]) -> None:
    """Drop figure files of an earlier build that this build did not draw (e.g. from a partial run)."""
    if not fig_dir.is_dir():
        return
    for p in fig_dir.iterdir():
        if p.suffix in (".png", ".svg") and p.stem not in keep:
            p.unlink()
