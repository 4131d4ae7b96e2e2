"""Where the engine keeps its state."""

import os


def default_root() -> str:
    """Return `LAYERLAB_ROOT`, else /var/lib/layerlab for root, else the user's XDG data folder."""
    explicit = os.environ.get("LAYERLAB_ROOT")
    if explicit:
        return os.path.abspath(explicit)
    if os.geteuid() == 0:
        return "/var/lib/layerlab"
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "layerlab")
