"""`python -m layerlab.kernel install` writes a kernelspec that starts this Python."""

import json
import subprocess
import sys


def test_install_command_writes_kernelspec(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "layerlab.kernel", "install", "--prefix", str(tmp_path), "--name", "layerlab-test"],
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert completed.returncode == 0, completed.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "layerlab-test"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"] == [sys.executable, "-m", "layerlab.kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == "layerlab (Docker)"
    assert spec["language"] == "python"
    assert (spec_dir / "logo-svg.svg").read_text().startswith("<svg")


def test_install_rejects_two_destinations(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "layerlab.kernel", "install", "--user", "--prefix", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert completed.returncode == 2
    assert "not allowed with argument" in completed.stderr
