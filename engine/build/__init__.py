"""The Dockerfile builder: `Builder(engine).build(BuildRequest(...), on_event)`.

The names are imported on first use, so that importing `build.events`
(as every CLI command's presenter does) does not load the whole builder.
"""

_LAZY = {
    "Builder": "layerlab.engine.build.builder",
    "BuildResult": "layerlab.engine.build.builder",
    "BuildRequest": "layerlab.engine.build.state",
}


def __getattr__(name):
    import importlib

    if name not in _LAZY:
        raise AttributeError(name)
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = list(_LAZY)
