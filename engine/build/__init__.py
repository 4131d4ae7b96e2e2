"""The Dockerfile builder: `Builder(engine).build(BuildRequest(...), on_event)`."""

from layerlab.engine.build.builder import Builder, BuildResult
from layerlab.engine.build.state import BuildRequest

__all__ = ["Builder", "BuildRequest", "BuildResult"]
