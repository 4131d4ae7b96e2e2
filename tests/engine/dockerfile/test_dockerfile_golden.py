"""Golden-file tests: each folder under testdata/ contains a Dockerfile and what parsing it gives.

Set LAYERLAB_UPDATE_GOLDEN=1 to rewrite expected.json from the current
parser; review the diff before committing it.
"""

import dataclasses
import json
import os
from pathlib import Path

import pytest

from layerlab.engine.dockerfile import parse
from layerlab.engine.errors import DockerfileError


_SKIPPED_FIELDS = {"original", "source"}


def instruction_data(instruction):
    data = {"keyword": instruction.keyword}
    for field in dataclasses.fields(instruction):
        if field.name in _SKIPPED_FIELDS:
            continue
        value = getattr(instruction, field.name)
        data[field.name] = _plain(value)
    data["text"] = instruction.text
    return data


def _plain(value):
    if dataclasses.is_dataclass(value) and hasattr(value, "keyword") and hasattr(value, "line"):
        return instruction_data(value)
    if dataclasses.is_dataclass(value):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def dockerfile_data(dockerfile):
    return {
        "directives": dockerfile.directives,
        "escape": dockerfile.escape,
        "args_before_from": [instruction.line for instruction in dockerfile.args_before_from],
        "stages": [
            {
                "base": stage.base,
                "name": stage.name,
                "platform": stage.platform,
                "lines": [instruction.line for instruction in stage.instructions],
            }
            for stage in dockerfile.stages
        ],
        "instructions": [instruction_data(instruction) for instruction in dockerfile.instructions],
    }


TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(path.name for path in TESTDATA.iterdir() if path.is_dir() and path.name != "errors")
ERROR_CASES = sorted(path.name for path in (TESTDATA / "errors").iterdir() if path.is_dir())


def _read_dockerfile(folder):
    return (folder / "Dockerfile").read_bytes().decode("utf-8")


@pytest.mark.parametrize("case", CASES)
def test_golden_parse(case):
    folder = TESTDATA / case
    actual = dockerfile_data(parse(_read_dockerfile(folder)))
    expected_path = folder / "expected.json"

    if os.environ.get("LAYERLAB_UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")

    expected = json.loads(expected_path.read_text())
    assert actual == expected


@pytest.mark.parametrize("case", ERROR_CASES)
def test_golden_error(case):
    folder = TESTDATA / "errors" / case
    expected = (folder / "expected-error.txt").read_text().strip()

    with pytest.raises(DockerfileError) as caught:
        parse(_read_dockerfile(folder))

    assert expected in str(caught.value)
