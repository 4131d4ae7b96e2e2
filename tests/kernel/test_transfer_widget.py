"""The live pull and push widget: its rows, its nbval-neutral mime bundle, and a real kernel pulling."""

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.registry.progress import LayerProgress, TransferDone, TransferStarted
from layerlab.engine.registry.push import push
from layerlab.kernel import presenter as presenter_module
from layerlab.kernel.presenter import NotebookPresenter
from layerlab.kernel.transfer_widget import WIDGET_VIEW, TransferWidget
from tests.engine.registry.conftest import import_busybox, start_registry
from tests.kernel.conftest import needs_engine_cli

LAYER = "a1b2c3d4e5f6"
CACHED = "0123456789ab"

PULL_EVENTS = [
    TransferStarted("1: Pulling from lab/app"),
    LayerProgress(CACHED, "Already exists"),
    LayerProgress(LAYER, "Pulling fs layer"),
    LayerProgress(LAYER, "Downloading", 1_000_000, 4_000_000),
    LayerProgress(LAYER, "Downloading", 4_000_000, 4_000_000),
    LayerProgress(LAYER, "Pull complete"),
    TransferDone(("Digest: sha256:" + "0" * 64, "Status: Downloaded newer image for 127.0.0.1:5000/lab/app:1",
                  "127.0.0.1:5000/lab/app:1")),
]

PULL_TEXT = (
    "1: Pulling from lab/app\n"
    f"{CACHED}: Already exists\n"
    f"{LAYER}: Pulling fs layer\n"
    f"{LAYER}: Pull complete\n"
    f"Digest: sha256:{'0' * 64}\n"
    "Status: Downloaded newer image for 127.0.0.1:5000/lab/app:1\n"
    "127.0.0.1:5000/lab/app:1\n"
)


class RecordedWidget(TransferWidget):
    created = []

    def __init__(self):
        super().__init__()
        self.created.append(self)


@pytest.fixture
def displayed(monkeypatch):
    """The bundles the presenter displays; the widgets it made are in `RecordedWidget.created`."""
    shown = []
    RecordedWidget.created = []
    monkeypatch.setattr(presenter_module, "TransferWidget", RecordedWidget)
    monkeypatch.setattr(presenter_module, "display", lambda bundle, raw: shown.append(bundle))
    return shown


def test_presenter_streams_plain_lines(displayed, capsys):
    presenter = NotebookPresenter()

    for event in PULL_EVENTS:
        presenter.transfer_event(event)

    assert capsys.readouterr().out == PULL_TEXT
    assert len(RecordedWidget.created) == 1
    assert RecordedWidget.created[0].text() == PULL_TEXT


def test_presenter_displays_only_widget_view(displayed, capsys):
    presenter = NotebookPresenter()

    for event in PULL_EVENTS:
        presenter.transfer_event(event)

    assert len(displayed) == 1
    assert set(displayed[0]) == {WIDGET_VIEW}
    assert displayed[0][WIDGET_VIEW]["model_id"] == RecordedWidget.created[0].model_id


def test_widget_rows_end_full():
    widget = TransferWidget()

    for event in PULL_EVENTS[:4]:
        widget.handle(event)
    halfway = widget.rows[LAYER].bar.value
    for event in PULL_EVENTS[4:]:
        widget.handle(event)

    assert halfway == 1_000_000
    assert list(widget.rows) == [CACHED, LAYER]
    assert widget.children[0] is widget.header
    assert widget.children[-1] is widget.footer
    for row in widget.rows.values():
        assert row.bar.value == row.bar.max
        assert row.bar.bar_style == "success"
    assert "Pull complete" in widget.rows[LAYER].label.value
    assert widget.rows[LAYER].counts.value == "4MB/4MB"
    assert "Status: Downloaded newer image" in widget.footer.value


def test_widget_escapes_html():
    widget = TransferWidget()

    widget.handle(LayerProgress(LAYER, "Mounted from <lab>/app"))

    assert "&lt;lab&gt;" in widget.rows[LAYER].label.value


def test_presenter_shows_new_widget_per_transfer(displayed, capsys):
    presenter = NotebookPresenter()

    for event in PULL_EVENTS + PULL_EVENTS:
        presenter.transfer_event(event)

    assert len(displayed) == 2
    assert displayed[0] != displayed[1]


@pytest.fixture
def pushed_image(tmp_path_factory, busybox_rootfs_tar, tmp_path, monkeypatch):
    """The name of a busybox image pushed to a local registry that runs until the test ends."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    server = start_registry(tmp_path_factory)
    try:
        source = Engine(str(tmp_path / "source"))
        import_busybox(source, busybox_rootfs_tar)
        name = f"{server.host}/lab/kernel-pull:1"
        source.tag("busybox", name)
        push(source, name)
        yield name
    finally:
        server.stop()


@needs_engine_cli
def test_kernel_pull_shows_widget_and_lines(pushed_image, layerlab_kernel):
    result = layerlab_kernel.run(f"%docker pull {pushed_image}")

    assert result.status == "ok", result.stream("stderr")
    stdout = result.stream("stdout")
    assert ": Pull complete\n" in stdout
    assert f"Status: Downloaded newer image for {pushed_image}\n" in stdout
    displays = result.of_type("display_data")
    assert len(displays) == 1
    assert set(displays[0]["data"]) == {WIDGET_VIEW}
    assert result.of_type("comm_msg"), "the widget was never updated through its state"
