"""A real layerlab kernel (and a plain IPython one) started by jupyter_client."""

import importlib.util
import os
from dataclasses import dataclass, field

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from layerlab.kernel.install import install

STARTUP_TIMEOUT = 60
CELL_TIMEOUT = 120

ENGINE_CLI_MISSING = importlib.util.find_spec("layerlab.engine.cli.main") is None
needs_engine_cli = pytest.mark.skipif(
    ENGINE_CLI_MISSING, reason="layerlab.engine.cli.main is not importable yet, so no docker command can run",
)


@dataclass
class CellResult:
    """The execute_reply and the IOPub messages of one cell."""

    reply: dict
    messages: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def stream(self, name: str) -> str:
        return "".join(m["content"]["text"] for m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == name)

    def of_type(self, msg_type: str) -> list[dict]:
        return [m["content"] for m in self.messages if m["msg_type"] == msg_type]


class KernelSession:
    """A started kernel and its blocking client; `run(code)` executes one cell."""

    def __init__(self, manager: KernelManager):
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=STARTUP_TIMEOUT)

    def run(self, code: str) -> CellResult:
        messages = []
        reply = self.client.execute_interactive(code, output_hook=messages.append, timeout=CELL_TIMEOUT)
        return CellResult(reply, messages)

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def work_dir(tmp_path):
    """The kernel's working directory."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def kernel_env(tmp_path):
    """The kernel's environment, with a private, empty LAYERLAB_ROOT."""
    root = tmp_path / "store"
    root.mkdir()
    return dict(os.environ, LAYERLAB_ROOT=str(root))


@pytest.fixture
def kernelspecs(tmp_path):
    """A KernelSpecManager that finds the layerlab kernelspec installed into a temporary prefix."""
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix))
    return KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])


def start_kernel(name, kernelspecs, env, cwd):
    manager = KernelManager(kernel_name=name, kernel_spec_manager=kernelspecs)
    manager.start_kernel(env=env, cwd=str(cwd))
    try:
        return KernelSession(manager)
    except Exception:
        manager.shutdown_kernel(now=True)
        raise


@pytest.fixture
def layerlab_kernel(kernelspecs, kernel_env, work_dir):
    """A running layerlab kernel in `work_dir`; shut down after the test."""
    session = start_kernel("layerlab", kernelspecs, kernel_env, work_dir)
    yield session
    session.shutdown()


@pytest.fixture
def ipython_kernel(kernel_env, work_dir):
    """A running plain IPython kernel (ipykernel's python3) in `work_dir`."""
    session = start_kernel("python3", KernelSpecManager(), kernel_env, work_dir)
    yield session
    session.shutdown()
