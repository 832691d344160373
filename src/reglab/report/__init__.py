"""The study report: figures, tables and a self-contained HTML page, built from a run directory's files.

Reads only what :mod:`reglab.results` reads; never imports the engine.
"""

from reglab.report.build import build_report, write_report

__all__ = ["build_report", "write_report"]
