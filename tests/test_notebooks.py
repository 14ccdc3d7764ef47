"""Every teaching notebook runs top to bottom (quick setting: a tiny model, a few steps), and is stored clean."""
import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert "00_quickstart" in names and len(names) >= 5, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_idea_marked_new(path):
    if path.stem.startswith("00_"):
        return
    src = "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    assert "# NEW" in src, f"{path.name}: mark the lines of the one new idea with # NEW"


# Each in a fresh kernel, as a student opens it: about 8 s a notebook on one core, most of it the
# kernel importing torch.
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("HFT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HFT_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(path.parents[1]), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    if path.stem == "00_quickstart":  # a notebook's run is in the lab's store, like any other (Live shows it)
        from hft_core.store import RunStore

        with RunStore(tmp_path / "home") as store:
            runs = store.list_runs()
            assert [r.status for r in runs] == ["finished"]
            assert not store.metrics(runs[0].id, names=["loss"]).empty
