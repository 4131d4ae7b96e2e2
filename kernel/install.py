"""Install the layerlab kernelspec: `python -m layerlab.kernel install`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

log = logging.getLogger(__name__)

DEFAULT_NAME = "layerlab"
DISPLAY_NAME = "layerlab (Docker)"

# Three stacked layers; JupyterLab shows logo-svg.svg in its launcher.
LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
<rect x="8" y="42" width="48" height="12" rx="2" fill="#1565c0"/>
<rect x="8" y="27" width="48" height="12" rx="2" fill="#1e88e5"/>
<rect x="8" y="12" width="48" height="12" rx="2" fill="#64b5f6"/>
</svg>
"""


def kernel_spec(python: str = sys.executable) -> dict:
    """Return the kernel.json contents that start LayerlabKernel with `python`."""
    return {
        "argv": [python, "-m", "layerlab.kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": importlib.util.find_spec("debugpy") is not None},
    }


def install(name: str = DEFAULT_NAME, *, user: bool = False, prefix: str | None = None) -> str:
    """Write the kernelspec and return the directory it was installed in."""
    with tempfile.TemporaryDirectory(prefix="layerlab-kernelspec-") as staging:
        staging_dir = Path(staging)
        (staging_dir / "kernel.json").write_text(json.dumps(kernel_spec(), indent=1) + "\n")
        (staging_dir / "logo-svg.svg").write_text(LOGO_SVG)

        destination = KernelSpecManager().install_kernel_spec(
            str(staging_dir), kernel_name=name, user=user, prefix=prefix,
        )

    log.info("installed kernelspec %s in %s", name, destination)
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layerlab.kernel install",
                                     description="Install the layerlab Jupyter kernelspec.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user only")
    where.add_argument("--sys-prefix", action="store_true",
                       help="install into this Python's prefix (for a virtualenv or conda env)")
    where.add_argument("--prefix", metavar="PREFIX", help="install into PREFIX/share/jupyter/kernels")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"kernelspec name (default: {DEFAULT_NAME})")
    options = parser.parse_args(argv)

    prefix = sys.prefix if options.sys_prefix else options.prefix
    destination = install(options.name, user=options.user, prefix=prefix)
    print(f"Installed kernelspec {options.name} in {destination}")
    return 0
