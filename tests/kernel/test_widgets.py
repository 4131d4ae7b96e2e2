"""Widgets' mime bundles: Docker's text as text/plain, a widget view and HTML."""

import datetime

import pytest

from layerlab.engine.views import (
    BuildSummary,
    Change,
    ContainerRow,
    ContainersView,
    DiffView,
    HistoryRow,
    HistoryView,
    ImageRow,
    ImagesView,
    LayerRow,
    LayerStackView,
    StepRecord,
)
from layerlab.kernel.widgets import (
    BuildWidget,
    ContainersWidget,
    DiffWidget,
    HistoryWidget,
    ImagesWidget,
    LayerStackWidget,
    widget_for,
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
NOW = datetime.datetime.now(datetime.timezone.utc)
IMAGE_ID = "sha256:" + "1" * 64
BASE_ID = "sha256:" + "2" * 64


def build_summary():
    return BuildSummary(IMAGE_ID, ["figlet:latest"], [
        StepRecord(1, "FROM busybox", True, 0.0, None, BASE_ID),
        StepRecord(2, "RUN echo '<b>' > /x", False, 0.42, 1234, IMAGE_ID, "instruction changed"),
    ], 0.5)


def layer_stack():
    return LayerStackView("figlet:latest", IMAGE_ID, [
        LayerRow("sha256:" + "3" * 64, 2_140_000, "/bin/sh -c #(nop) ADD file:busybox in /", None),
        LayerRow("sha256:" + "4" * 64, 1234, "/bin/sh -c apt-get install figlet", True),
        LayerRow("sha256:" + "5" * 64, 99, "/bin/sh -c echo <b> > /x", False),
    ])


VIEWS = {
    "build": (build_summary(), BuildWidget),
    "layer stack": (layer_stack(), LayerStackWidget),
    "diff": (DiffView([Change("A", "/x"), Change("C", "/etc"), Change("D", "/tmp/<old>")]), DiffWidget),
    "images": (ImagesView([ImageRow("figlet", "latest", IMAGE_ID, NOW, 2_141_234)]), ImagesWidget),
    "ps": (ContainersView([ContainerRow("c" * 64, "figlet", "sh -c 'figlet hello world'", NOW,
                                        "Up 2 seconds", "", "happy_turing")]), ContainersWidget),
    "history": (HistoryView([HistoryRow(IMAGE_ID, NOW, "/bin/sh -c echo <b> > /x", 99, ""),
                             HistoryRow(None, None, "/bin/sh -c #(nop) ADD file:busybox in /", 2_140_000, "")]),
                HistoryWidget),
}


@pytest.mark.parametrize("name", VIEWS)
def test_widget_text_plain_is_view_text(name):
    view, widget_class = VIEWS[name]
    widget = widget_for(view)

    assert type(widget) is widget_class
    bundle = widget._repr_mimebundle_()
    assert bundle["text/plain"] == view.text()
    assert WIDGET_VIEW in bundle
    assert bundle["text/html"] == widget.value


@pytest.mark.parametrize("name", VIEWS)
def test_widget_html_escapes_text(name):
    view, _ = VIEWS[name]
    html = widget_for(view).value

    assert "<b>" not in html
    assert "<old>" not in html


def test_build_widget_marks_cached_rows():
    html = widget_for(build_summary()).value

    assert html.count('class="layerlab-cached"') == 1
    assert "CACHED" in html
    assert "RAN" in html
    assert "1.23kB" in html


def test_layer_stack_draws_base_last():
    html = widget_for(layer_stack()).value

    assert html.index("echo &lt;b&gt;") < html.index("apt-get install figlet") < html.index("ADD file:busybox")
    assert html.count("layerlab-layer layerlab-cached") == 1


def test_diff_widget_colours_each_kind():
    html = widget_for(VIEWS["diff"][0]).value

    for kind in "ACD":
        assert f'class="layerlab-diff-{kind}"' in html


def test_quiet_views_have_no_widget():
    view = ImagesView([ImageRow("figlet", "latest", IMAGE_ID, NOW, 1)], quiet=True)

    assert widget_for(view) is None
