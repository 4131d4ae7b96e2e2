"""The layerlab JupyterLab extension in a real JupyterLab and a headless Chromium.

The module starts one JupyterLab server on 127.0.0.1 with a random token.
The layerlab kernelspec and the repository's prebuilt extension sit in a
private JUPYTER_PATH. The tests open a notebook in Chromium and check what
the extension does to the page: `%%dockerfile` cells switch to Dockerfile
highlighting, and the kernel's widgets take their colours from the theme.
Screenshots go to LAYERLAB_SCREENSHOT_DIR if it is set, else to the test's
temporary directory, and the log names them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.extension.devtools import Chromium

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
PREBUILT_EXTENSION = REPO_ROOT / "layerlab" / "labextension"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

DOCKERFILE_CELL = (
    "%%dockerfile myimage/Dockerfile\n"
    "FROM busybox\n"
    "# the image prints one line\n"
    "RUN echo built > /built\n"
    'CMD ["cat", "/built"]\n'
)
PYTHON_CELL = "from pathlib import Path\nprint(Path('myimage/Dockerfile').read_text())\n"

pytest.importorskip("jupyterlab", reason="jupyterlab is not installed in this Python: "
                    "pip install 'jupyterlab>=4,<5' to run the extension tests")


def _needs_chromium():
    if os.access(CHROMIUM, os.X_OK):
        return
    message = f"chromium not found at {CHROMIUM}: apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _widget_outputs() -> list[dict]:
    """Return display_data outputs drawn by the kernel's real widgets, as nbclient saves them."""
    from layerlab.engine.views import BuildSummary, Change, DiffView, LayerRow, LayerStackView, StepRecord
    from layerlab.kernel.widgets import BuildWidget, DiffWidget, LayerStackWidget

    image_id = "sha256:" + "1" * 64
    base_id = "sha256:" + "2" * 64
    build = BuildSummary(image_id, ["figlet:latest"], [
        StepRecord(1, "FROM busybox", True, 0.0, None, base_id),
        StepRecord(2, "RUN apt-get install -y figlet", False, 3.2, 23_400_000, image_id, "instruction changed"),
    ], 3.4)
    stack = LayerStackView("figlet:latest", image_id, [
        LayerRow("sha256:" + "3" * 64, 4_860_000, "/bin/sh -c #(nop) ADD file:busybox in /", True),
        LayerRow("sha256:" + "4" * 64, 23_400_000, "/bin/sh -c apt-get install -y figlet", False),
    ])
    diff = DiffView([Change("A", "/built"), Change("C", "/etc"), Change("D", "/etc/motd")])

    outputs = []
    for widget in (BuildWidget(build), LayerStackWidget(stack), DiffWidget(diff)):
        bundle = widget._repr_mimebundle_()
        outputs.append({
            "output_type": "display_data",
            "data": {"text/html": bundle["text/html"], "text/plain": bundle["text/plain"]},
            "metadata": {},
        })
    return outputs


def _write_notebook(path: Path, data_dir: Path) -> None:
    import nbformat
    from nbformat.sign import NotebookNotary

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "layerlab", "display_name": "layerlab (Docker)",
                                       "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    widgets = nbformat.v4.new_code_cell("docker build -t figlet myimage")
    widgets.outputs = [nbformat.from_dict(output) for output in _widget_outputs()]
    notebook.cells = [
        nbformat.v4.new_code_cell(DOCKERFILE_CELL),
        nbformat.v4.new_code_cell(PYTHON_CELL),
        widgets,
    ]
    # A trusted notebook keeps the widgets' own <style> blocks, which the
    # extension's styles must outrank.
    NotebookNotary(data_dir=str(data_dir)).sign(notebook)
    nbformat.write(notebook, path)


class Lab:
    """A running JupyterLab server and the environment it was started with."""

    def __init__(self, url: str, token: str, env: dict, root: Path):
        self.url = url
        self.token = token
        self.env = env
        self.root = root

    def page(self, path: str) -> str:
        return f"{self.url}/{path}?token={self.token}"

    def put_settings(self, plugin: str, settings: dict) -> None:
        request = urllib.request.Request(
            f"{self.url}/lab/api/settings/{plugin}", method="PUT",
            data=json.dumps({"raw": json.dumps(settings)}).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204, response.read()


def _wait_for_server(url: str, token: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError(f"jupyter lab did not answer on {url} within 90 s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Start JupyterLab with the layerlab kernelspec and the prebuilt extension, and stop it at the end."""
    _needs_chromium()
    assert (PREBUILT_EXTENSION / "package.json").exists(), \
        f"{PREBUILT_EXTENSION} is missing: run scripts/build-extension.sh"

    root = tmp_path_factory.mktemp("lab")
    prefix = root / "prefix"
    share = prefix / "share" / "jupyter"
    (share / "labextensions").mkdir(parents=True)
    # The committed build is what the wheel ships, so that one is tested,
    # even where an older copy is installed in this Python's prefix.
    (share / "labextensions" / "layerlab").symlink_to(PREBUILT_EXTENSION)

    for name in ("notebooks", "home", "data"):
        (root / name).mkdir()
    notebooks = root / "notebooks"
    home = root / "home"
    env = dict(
        os.environ,
        HOME=str(home),
        JUPYTER_PATH=str(share),
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_DATA_DIR=str(root / "data"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / "lab-workspaces"),
        LAYERLAB_ROOT=str(root / "store"),
    )
    subprocess.run([sys.executable, "-m", "layerlab.kernel", "install", "--prefix", str(prefix)],
                   env=env, check=True, capture_output=True, text=True)
    _write_notebook(notebooks / "course.ipynb", root / "data")
    # No "Would you like to get notified about Jupyter news?" pop-up over
    # the screenshots.
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))

    port = _free_port()
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    log_path = root / "jupyter-lab.log"
    with open(log_path, "w") as server_log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
             f"--notebook-dir={notebooks}", "--allow-root",
             # Nothing may leave 127.0.0.1: no news feed, update check or PyPI search.
             "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.extension_manager=readonly"],
            env=env, cwd=notebooks, stdout=server_log, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_server(url, token, process, log_path)
        log.info("jupyter lab pid %d on %s, log in %s", process.pid, url, log_path)
        yield Lab(url, token, env, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log.warning("jupyter lab pid %d ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait()


@pytest.fixture
def browser(lab):
    chromium = Chromium(CHROMIUM, str(lab.root / f"chromium-{secrets.token_hex(4)}"))
    yield chromium
    chromium.close()


# Page helpers: each returns JSON data about one cell or output.

CELL_LANGUAGES = """
[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .cm-content')]
    .map(content => content.getAttribute('data-language'))
"""

# The status bar reads "layerlab (Docker) | Idle" once the kernel has
# started and replied to the notebook's kernel_info request.
KERNEL_IDLE = """
[...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(item => item.textContent.includes('layerlab (Docker) | Idle'))
"""

# The colour of the `FROM` token in the first editor that SELECTOR matches,
# and the colour that the theme gives keywords, resolved the same way.
KEYWORD_COLOURS = """
(() => {
  const cell = document.querySelector('SELECTOR');
  const token = [...cell.querySelectorAll('.cm-line span')].find(span => span.textContent === 'FROM');
  const probe = document.createElement('span');
  probe.style.color = 'var(--jp-mirror-editor-keyword-color)';
  document.body.appendChild(probe);
  const keyword = getComputedStyle(probe).color;
  probe.remove();
  const magic = [...cell.querySelectorAll('.cm-line span')].find(span => span.textContent === '%%dockerfile');
  return {
    from: token ? getComputedStyle(token).color : null,
    keyword: keyword,
    magicHighlighted: magic !== undefined,
    text: cell.textContent,
  };
})()
"""

WIDGET_STYLES = """
(() => {
  const probe = (variable) => {
    const element = document.createElement('span');
    element.style.color = `var(${variable})`;
    document.body.appendChild(element);
    const colour = getComputedStyle(element).color;
    element.remove();
    return colour;
  };
  const style = (selector, property) => {
    const element = document.querySelector(selector);
    return element ? getComputedStyle(element)[property] : null;
  };
  return {
    themeLight: document.body.dataset.jpThemeLight,
    success: probe('--jp-success-color1'),
    warn: probe('--jp-warn-color1'),
    error: probe('--jp-error-color1'),
    added: style('.layerlab-diff-A', 'color'),
    changed: style('.layerlab-diff-C', 'color'),
    deleted: style('.layerlab-diff-D', 'color'),
    layerBackground: style('.layerlab-layer:not(.layerlab-cached)', 'backgroundColor'),
    cachedBorder: style('.layerlab-layer.layerlab-cached', 'borderTopStyle'),
    cellText: style('.layerlab-table tbody tr:not(.layerlab-cached) td', 'color'),
    cachedCellText: style('.layerlab-table tr.layerlab-cached td', 'color'),
    cellAlign: style('.layerlab-table td', 'textAlign'),
    contentText: probe('--jp-content-font-color1'),
    secondaryText: probe('--jp-content-font-color2'),
    styleBlocks: document.querySelectorAll('.jp-OutputArea style').length,
  };
})()
"""


def _screenshot(browser: Chromium, tmp_path: Path, name: str) -> Path:
    directory = Path(os.environ.get("LAYERLAB_SCREENSHOT_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    browser.screenshot(path)
    log.info("screenshot: %s", path)
    return path


def _open_notebook(lab: Lab, browser: Chromium) -> None:
    browser.navigate(lab.page("lab/tree/course.ipynb"))
    browser.wait_for("document.querySelectorAll('.jp-Notebook .jp-CodeCell .cm-content').length === 3",
                     timeout=90)
    # The notebook resets every code cell's MIME type when the kernel
    # reports its language, so the check waits until the kernel is idle.
    browser.wait_for(KERNEL_IDLE, timeout=90)
    browser.wait_for("document.querySelector('.layerlab-diff-A') !== null")


def _lightness(css_colour: str) -> float:
    """Return the mean of the red, green and blue channels, from 0 to 1.

    Chromium gives `rgb(R, G, B)` with channels from 0 to 255 for most
    colours, and `color(srgb R G B)` with channels from 0 to 1 for the
    result of `color-mix()`.
    """
    inside = css_colour[css_colour.index("(") + 1:css_colour.index(")")]
    if css_colour.startswith("color(srgb"):
        channels = [float(channel) for channel in inside.split()[1:4]]
        return sum(channels) / 3
    channels = [float(channel) for channel in inside.split(",")[:3]]
    return sum(channels) / (3 * 255)


def test_labextension_list_shows_layerlab(lab):
    jupyter = Path(sys.executable).with_name("jupyter")
    result = subprocess.run([str(jupyter), "labextension", "list"], env=lab.env,
                            capture_output=True, text=True, timeout=60, check=True)
    # `labextension list` writes its table to stderr.
    listing = result.stdout + result.stderr
    line = next((line for line in listing.splitlines() if line.split()[:1] == ["layerlab"]), None)

    assert line is not None, listing
    assert "enabled" in line
    assert "OK" in line


def test_page_loads_layerlab_extension(lab, browser):
    browser.navigate(lab.page("lab"))
    config = browser.wait_for("document.getElementById('jupyter-config-data')?.textContent", timeout=60)
    names = [extension["name"] for extension in json.loads(config)["federated_extensions"]]

    assert "layerlab" in names


def test_dockerfile_cell_highlighted(lab, browser, tmp_path):
    _open_notebook(lab, browser)
    languages = browser.wait_for(f"(() => {{ const l = {CELL_LANGUAGES}; return l[0] === 'dockerfile' && l; }})()")
    colours = browser.evaluate(KEYWORD_COLOURS.replace("SELECTOR", ".jp-Notebook .jp-CodeCell .cm-content"))
    _screenshot(browser, tmp_path, "dockerfile-cell.png")

    assert languages[0] == "dockerfile"
    assert languages[1] == "python"
    assert colours["from"] is not None, f"no FROM token in {colours['text']!r}"
    assert colours["from"] == colours["keyword"]
    assert colours["magicHighlighted"]


def test_cell_language_follows_magic(lab, browser):
    _open_notebook(lab, browser)
    browser.wait_for(f"{CELL_LANGUAGES}[0] === 'dockerfile'")

    # Typing `%%dockerfile` on the first line of the Python cell switches it.
    browser.evaluate("""
      (() => {
        const content = document.querySelectorAll('.jp-Notebook .jp-CodeCell .cm-content')[1];
        content.focus();
        const line = content.querySelector('.cm-line');
        const range = document.createRange();
        range.setStart(line, 0);
        range.collapse(true);
        const selection = getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      })()
    """)
    browser.send("Input.insertText", session=browser.session, text="%%dockerfile\n")
    switched = browser.wait_for(f"{CELL_LANGUAGES}[1] === 'dockerfile'", timeout=10)

    assert switched


def test_widget_styles_follow_theme(lab, browser, tmp_path):
    light = None
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        lab.put_settings("@jupyterlab/apputils-extension:themes", {"theme": theme})
        _open_notebook(lab, browser)
        expected_light = "true" if theme == "JupyterLab Light" else "false"
        browser.wait_for(f"document.body.dataset.jpThemeLight === '{expected_light}'")
        styles = browser.evaluate(WIDGET_STYLES)
        _screenshot(browser, tmp_path, f"widgets-{theme.split()[-1].lower()}.png")

        assert styles["styleBlocks"] > 0, "the trusted outputs lost the widgets' <style> blocks"
        assert styles["added"] == styles["success"]
        assert styles["changed"] == styles["warn"]
        assert styles["deleted"] == styles["error"]
        assert styles["cachedBorder"] == "dashed"
        assert styles["cellAlign"] == "left"
        assert styles["cellText"] == styles["contentText"]
        assert styles["cachedCellText"] == styles["secondaryText"]
        if theme == "JupyterLab Light":
            light = styles
            assert _lightness(styles["layerBackground"]) > 0.6
        else:
            assert _lightness(styles["layerBackground"]) < 0.4
            assert styles["added"] != light["added"] or styles["contentText"] != light["contentText"]

    lab.put_settings("@jupyterlab/apputils-extension:themes", {"theme": "JupyterLab Light"})


@pytest.mark.parametrize("name", ["Dockerfile", "build.dockerfile"])
def test_dockerfile_file_highlighted(lab, browser, name):
    path = lab.root / "notebooks" / "files" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("FROM busybox\nRUN echo built > /built\n")

    browser.navigate(lab.page(f"lab/tree/files/{name}"))
    browser.wait_for("document.querySelector('.jp-FileEditor .cm-line span') !== null", timeout=90)
    colours = browser.evaluate(KEYWORD_COLOURS.replace("SELECTOR", ".jp-FileEditor .cm-content"))
    file_type = browser.wait_for(
        f"document.querySelector('.jp-DirListing-item[title^=\"Name: {name}\"]')"
        "?.getAttribute('data-file-type')", timeout=30)

    assert colours["from"] is not None, f"no FROM token in {colours['text']!r}"
    assert colours["from"] == colours["keyword"]
    assert file_type == "dockerfile"
