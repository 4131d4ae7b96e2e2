"""layerlab: build and run container images from a notebook, with no daemon."""

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """Register the %docker and %%dockerfile magics in an IPython shell."""
    from layerlab.kernel.magics import load_ipython_extension as load

    load(ipython)
