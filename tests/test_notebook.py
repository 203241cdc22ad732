"""The worked study in notebooks/ runs end to end (at a small size), so it never rots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dropout_sensitivity.ipynb"


def _kernel(tmp_path: Path) -> KernelManager:
    """A kernel of this very interpreter (never another `python3` on the machine), at the repository root."""
    spec_dir = tmp_path / "kernels" / "ppafl-test"
    spec_dir.mkdir(parents=True)
    env = {"PYTHONPATH": str(ROOT), "PPAFL_NOTEBOOK_SMALL": "1", "PPAFL_NOTEBOOK_OUT": str(tmp_path / "sweep")}
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "ppafl test", "language": "python", "env": env}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="ppafl-test", kernel_spec_manager=ksm)


@pytest.mark.slow
def test_the_dropout_notebook_runs_and_shows_its_plots(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, km=_kernel(tmp_path), timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the study's figure and a device timeline
    assert (tmp_path / "sweep" / "study.csv").is_file()
    assert len((tmp_path / "sweep" / "sweep.csv").read_text().splitlines()) == 1 + 6  # 2 strategies x 3 scenarios
