"""`LayerlabKernel`: IPython's kernel with the Docker magics and bare `docker` cells."""

from __future__ import annotations

import logging

from ipykernel.ipkernel import IPythonKernel

import layerlab
from layerlab.kernel.cells import install_transformer
from layerlab.kernel.magics import load_ipython_extension

log = logging.getLogger(__name__)


class LayerlabKernel(IPythonKernel):
    """A Python kernel in which `%%dockerfile` and `docker ...` cells run the embedded engine.

    Ordinary Python cells run as in ipykernel. A cell whose non-blank lines
    are all `docker ...` commands (or `#` comments) runs each one as
    `%docker ...`, and the first command that fails fails the cell.
    """

    implementation = "layerlab"
    implementation_version = layerlab.__version__
    banner = f"layerlab {layerlab.__version__}: Python with %docker, %%dockerfile and docker cells"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

        install_transformer(self.shell, bare_docker_lines=True)
        load_ipython_extension(self.shell)
        log.info("layerlab kernel ready")
