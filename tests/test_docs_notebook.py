"""docs/notebook.ipynb runs top to bottom in a fresh Jupyter kernel and shows what it promises."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra is not installed (pip install 'reglab[test]')")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"


def test_the_committed_notebook_is_valid_and_has_its_outputs_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_notebook_runs_a_smoke_study_loads_dataframes_plots_and_links_the_report(data_dir, tmp_path,
                                                                                     monkeypatch):
    pytest.importorskip("ipykernel", reason="the test extra is not installed (pip install 'reglab[test]')")
    from nbclient import NotebookClient

    monkeypatch.setenv("REGLAB_DATA_DIR", str(data_dir))  # the kernel inherits this environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "<reglab run 'mnist-quick-smoke'" in text and ": complete, 6 methods x 2 seeds>" in text
    assert "best val error" in text and "IProgress not found" not in text  # the progress bar, no warning
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert html.count("dropout+max_norm") >= 1 and "test_error" in html  # the summary DataFrame
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1  # the one figure
    (run_dir,) = (tmp_path / "runs").iterdir()
    report = run_dir / "report.html"
    assert report.is_file() and f"href='{report.relative_to(tmp_path)}'" in html  # the link to the report
