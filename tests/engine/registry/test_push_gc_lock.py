"""A push holds the gc lock shared, so `system prune -a` waits for it instead of deleting the blobs it sends."""

import os
import signal
import subprocess
import sys

from layerlab.engine.api import Engine
from layerlab.engine.pruning import WAITING_MESSAGE
from layerlab.engine.registry import push as push_module
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import push


def test_system_prune_waits_for_push(engine, busybox, registry, tmp_path, monkeypatch):
    name = f"{registry.host}/gc/push:1"
    engine.tag("busybox", name)
    started = []
    push_layer = push_module._Uploader._push_layer

    def push_layer_after_prune_waits(self, diff_id):
        # The push holds the gc lock from here on, so the prune can only print that it waits.
        prune = subprocess.Popen([sys.executable, "-m", "layerlab", "system", "prune", "-af"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, LAYERLAB_ROOT=engine.root), start_new_session=True)
        started.append(prune)
        started.append(prune.stderr.readline())
        started.append(prune.poll())
        return push_layer(self, diff_id)

    monkeypatch.setattr(push_module._Uploader, "_push_layer", push_layer_after_prune_waits)
    try:
        pushed = push(engine, name)
        prune, waiting_line, returncode_while_pushing = started
        stdout, stderr = prune.communicate(timeout=120)
    finally:
        if started and started[0].poll() is None:
            os.killpg(started[0].pid, signal.SIGKILL)
            started[0].communicate()

    assert waiting_line == WAITING_MESSAGE
    assert returncode_while_pushing is None
    assert prune.returncode == 0, stderr
    # The prune ran after the push: it removed the image, whose blobs had all reached the registry.
    assert not engine.store.has_blob(busybox.id)
    assert pull(Engine(str(tmp_path / "fresh")), name).manifest_digest == pushed.manifest_digest
