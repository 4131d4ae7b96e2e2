"""Processes in Linux namespaces on an overlayfs root: `start` for containers, `run_in_rootfs` for builds."""

from layerlab.engine.runtime.container import Container, start
from layerlab.engine.runtime.mountns import run_in_rootfs
from layerlab.engine.runtime.specs import ContainerSpec, Mount, ProcessSpec, Resources, RootfsSpec

__all__ = ["Container", "ContainerSpec", "Mount", "ProcessSpec", "Resources", "RootfsSpec", "run_in_rootfs", "start"]
