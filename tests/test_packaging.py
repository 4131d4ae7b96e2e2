"""The wheel's package list covers every Python package folder in the tree."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = {"layerlab": "layerlab", "layerlab.engine": "engine", "layerlab.kernel": "kernel"}


def _packages_on_disk() -> set[str]:
    found = set()
    for package, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]) if relative.parts else package)
    return found


def test_pyproject_lists_every_package():
    with open(ROOT / "pyproject.toml", "rb") as handle:
        listed = set(tomllib.load(handle)["tool"]["setuptools"]["packages"])
    missing = _packages_on_disk() - listed
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
