"""The tour notebook runs from top to bottom and shows the movie it writes."""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import imageio_ffmpeg
import nbformat
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "notebooks" / "tour.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_tour_notebook_runs_and_shows_the_movie(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    try:
        distribution("pims-videoutils")
    except PackageNotFoundError:
        pytest.skip("pims.open finds our readers only once installed (pip install -e .)")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PROJECT_ROOT), *sys.path]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code_cells:
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert not errors, cell.source

    html = code_cells[-1].outputs[-1]["data"]["text/html"]
    assert html.startswith("<video") and "data:video/mp4;base64," in html
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "tour.mp4"))
    assert n_frames == 50

    texts = "".join(out.get("text", "") for cell in code_cells for out in cell.outputs)
    assert "spots found" in texts
