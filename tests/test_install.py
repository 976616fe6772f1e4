"""Installing beside a researcher's own torch keeps it: pip plans no torch (and no DeepSpeed,
an extra) for a venv that already holds another torch release within our range."""

import json
import sys

import pytest

import betavae_dist
from helpers import ROOT, run

pytestmark = pytest.mark.integration  # launches real processes


def test_install_keeps_an_existing_torch(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    site = next((venv / "lib").glob("python3*/site-packages"))
    dist = site / "torch-2.11.0.dist-info"  # what pip sees of an installed torch (the GPU image's release)
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\n")
    (dist / "INSTALLER").write_text("pip\n")
    (dist / "RECORD").write_text("")
    report = tmp_path / "report.json"
    run([str(venv / "bin" / "pip"), "install", "--dry-run", "--quiet", "--report", str(report), "-e", str(ROOT)])
    installs = json.loads(report.read_text())["install"]
    planned = {item["metadata"]["name"].lower() for item in installs}
    assert "betavae-dist" in planned
    assert "torch" not in planned and not any(name.startswith("nvidia") for name in planned), sorted(planned)
    assert "deepspeed" not in planned and "transformers" not in planned
    ours = next(item["metadata"] for item in installs if item["metadata"]["name"].lower() == "betavae-dist")
    assert ours["version"] == betavae_dist.__version__, ours


def test_the_package_says_its_version_license_and_types():
    from importlib.metadata import metadata
    installed = metadata("betavae-dist")
    assert installed["Version"] == betavae_dist.__version__ and installed["License-Expression"] == "Apache-2.0"
    assert (ROOT / "betavae_dist" / "py.typed").is_file() and "Apache License" in (ROOT / "LICENSE").read_text()
    assert f"## {betavae_dist.__version__} (" in (ROOT / "CHANGELOG.md").read_text()
