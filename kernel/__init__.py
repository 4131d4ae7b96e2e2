"""The layerlab Jupyter kernel: Docker magics, widgets and the kernel itself.

`%load_ext layerlab` loads the magics into any IPython shell;
`python -m layerlab.kernel install` installs the kernelspec of
`LayerlabKernel`, which also runs bare `docker ...` cells.
"""
