"""Typed events that a build emits while it runs.

The CLI prints them in the words of Docker's classic builder; the kernel
streams the same text and draws a widget from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StepStarted:
    """A step begins: `Step 2/4 : RUN apt-get update`."""

    index: int
    total: int
    instruction: str
    stage: int = 0


@dataclass
class StepCached:
    """A step's result came from the build cache."""

    index: int
    image_id: str


@dataclass
class ContainerStarted:
    """A RUN step started its build container."""

    index: int
    container_id: str


@dataclass
class OutputLine:
    """One line (without its newline) that a RUN step's process wrote."""

    index: int
    text: str


@dataclass
class StepDone:
    """A step finished, from the cache or by running."""

    index: int
    instruction: str
    image_id: str
    cached: bool
    seconds: float
    layer_size: int | None
    cache_miss_reason: str = ""
    layer_digest: str | None = None


@dataclass
class BuildWarning:
    """Something the builder accepted but a user should know."""

    index: int | None
    message: str


@dataclass
class BuildDone:
    """The build produced `image_id` and tagged it."""

    image_id: str
    tags: list[str]
    seconds: float


BuildEvent = StepStarted | StepCached | ContainerStarted | OutputLine | StepDone | BuildWarning | BuildDone
