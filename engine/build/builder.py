"""Execute a Dockerfile stage by stage with Docker's classic build cache.

A step hits the cache when an earlier build ran the same instruction text
on the same parent image (and, for COPY and ADD, on sources with the same
content and modes). Every step's result is an image of its own, recorded
in index.json under its cache key with its parent's ID, so the cache
survives restarts and `history` can name each row. Once a step misses, its
new image has a new ID, so every later step misses too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from layerlab.engine.build import events, warnings
from layerlab.engine.build.context import BuildContext
from layerlab.engine.build.state import BuildRequest, StageState
from layerlab.engine.build import records
from layerlab.engine.build.steps import PREDEFINED_ARGS, plan_step
from layerlab.engine.dockerfile import parse
from layerlab.engine.dockerfile.expansion import EXPANDING_KEYWORDS
from layerlab.engine.errors import DockerfileError, InvalidArgumentError, NotFoundError
from layerlab.engine.image import Image, ImageDraft, host_architecture, load_image, write_image
from layerlab.engine.images import SCRATCH
from layerlab.engine.reference import Reference
from layerlab.engine.views import BuildSummary, StepRecord

log = logging.getLogger(__name__)

# A `$NAME` or `${NAME...}` reference in an instruction's text.
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")

@dataclass
class BuildResult:
    image_id: str
    tags: list[str]
    summary: BuildSummary


class Builder:
    """Builds images from Dockerfiles into an Engine's store."""

    def __init__(self, engine):
        self.engine = engine

    def build(self, request: BuildRequest, on_event: Callable | None = None) -> BuildResult:
        # A step's blobs are named in index.json only when the step ends, and
        # its scratch folder lives in tmp/, so prune waits for the build.
        with self.engine.store.gc_shared():
            run = BuildRun(self.engine, request, on_event)
            return run.execute()


class BuildRun:
    """One build in progress; the step handlers call back into it."""

    def __init__(self, engine, request: BuildRequest, on_event):
        self.engine = engine
        self.request = request
        self._on_event = on_event
        self.context = BuildContext(request.context)
        self.dockerfile_path, text = _read_dockerfile(request, self.context.root)
        self.dockerfile = parse(text, path=self.dockerfile_path)
        self.tags = [Reference.parse(tag) for tag in request.tags]
        self.cache = self.engine.images.cache_lookup()
        self.index = 0
        self.layer_sizes: dict[str, int] = {}
        self.stage_set_cmd = False
        self.records: list[StepRecord] = []
        self.meta_args: dict[str, str] = _platform_args()
        self.used_build_args: set[str] = set()
        self.built: dict[str, Image | None] = {}
        self.source_date_epoch = _source_date_epoch()
        self.records_dir = os.path.join(self.engine.root, "build-records")
        self.total = 0
        self.cache_sources = None
        if request.cache_from:
            from layerlab.engine.build.cache_from import CacheSources

            self.cache_sources = CacheSources(engine, request.cache_from)

    def emit(self, event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def write(self, draft: ImageDraft) -> Image:
        return write_image(self.engine.store, draft)

    def arg_value(self, name: str, default: str | None) -> str | None:
        """Return an ARG's value: the --build-arg if given, else its default."""
        if name in self.request.build_args:
            self.used_build_args.add(name)
            value = self.request.build_args[name]
            return value if value is not None else default
        return default

    def stage_image(self, name: str, where: dict) -> Image | None:
        """Return the image of an earlier stage (by name or index) or of an image in the store."""
        if name.lower() in self.built:
            return self.built[name.lower()]
        if name == SCRATCH:
            return None
        if any(stage.name == name.lower() for stage in self.dockerfile.stages):
            raise DockerfileError(f"stage {name!r} is defined later in the Dockerfile: move it above this line",
                                  **where)
        try:
            return self.engine.images.resolve(name)
        except NotFoundError as error:
            raise DockerfileError(str(error), **where) from None

    def execute(self) -> BuildResult:
        started = time.monotonic()
        stages = self._stages_to_build()
        self.total = len(self.dockerfile.args_before_from) + sum(1 + len(stage.instructions) for stage in stages)

        for instruction in self.dockerfile.args_before_from:
            self._step_start(instruction)
            for pair in instruction.pairs:
                value = self.arg_value(pair.key, pair.value)
                if value is not None:
                    self.meta_args[pair.key] = value
            self.emit(events.StepDone(self.index, instruction.original, "", True, 0.0, None))

        state = None
        for stage in stages:
            state = self._build_stage(stage, self.built)
            self.built[str(stage.index)] = state.image
            if stage.name:
                self.built[stage.name.lower()] = state.image

        if state is None or state.image is None:
            raise DockerfileError("the build produced no image: add an instruction after FROM scratch",
                                  path=self.dockerfile_path)
        self._warn_unused_args()
        return self._finish(state, started)

    def _stages_to_build(self):
        stages = self.dockerfile.stages
        if not self.request.target:
            return stages
        try:
            target = self.dockerfile.stage(self.request.target)
        except KeyError:
            names = ", ".join(stage.name for stage in stages if stage.name) or "none"
            raise DockerfileError(f"target stage {self.request.target!r} not found (stages: {names})",
                                  path=self.dockerfile_path) from None
        return stages[: target.index + 1]

    def _build_stage(self, stage, built: dict) -> StageState:
        from_instruction = stage.from_instruction.expanded(self.meta_args, self.dockerfile.escape)
        self._step_start(stage.from_instruction)
        state = StageState(self._base_image(from_instruction, built))
        self.stage_set_cmd = False
        self.emit(events.StepDone(self.index, stage.from_instruction.original, state.image_id, True, 0.0, None))
        self._run_onbuild_triggers(state, stage.from_instruction.line)

        for instruction in stage.instructions:
            self._step_start(instruction)
            self._run_instruction(state, instruction)
        return state

    def _base_image(self, from_instruction, built: dict) -> Image | None:
        name = from_instruction.image
        where = {"path": self.dockerfile_path, "line": from_instruction.line, "instruction": "FROM"}
        if not name.strip():
            raise DockerfileError(_blank_base_message(from_instruction.original, self.meta_args), **where)
        if name.lower() in built:
            return built[name.lower()]
        if name == SCRATCH:
            return None
        try:
            return self.engine.images.resolve(name)
        except (NotFoundError, InvalidArgumentError):
            pass

        # The registry client takes milliseconds to import, so only a base image missing from the store pays for it.
        from layerlab.engine.registry.pull import image_or_pull

        def show_pull(text: str) -> None:
            self.emit(events.OutputLine(self.index, text.rstrip("\n")))

        try:
            return image_or_pull(self.engine, name, progress=show_pull)
        except (NotFoundError, InvalidArgumentError) as error:
            raise DockerfileError(str(error), **where) from None

    def _run_onbuild_triggers(self, state: StageState, from_line: int) -> None:
        """Run the base image's ONBUILD triggers right after FROM, as Docker does, each as a step of its own."""
        triggers = list(state.settings().get("OnBuild") or [])
        if not triggers:
            return
        state.clear_onbuild = True
        self.total += len(triggers)
        self.emit(events.OutputLine(self.index, f"# Executing {len(triggers)} build trigger"
                                                f"{'s' if len(triggers) > 1 else ''}"))
        for trigger in triggers:
            parsed = parse(f"FROM scratch\n{trigger}\n", path=f"{self.dockerfile_path} (ONBUILD of the base image)")
            # The trigger's errors and notes point at the FROM line that ran it.
            instruction = dataclasses.replace(parsed.stages[0].instructions[0], line=from_line)
            if instruction.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
                raise DockerfileError(f"the base image has the trigger {trigger!r}, but {instruction.keyword} is "
                                      "not allowed as an ONBUILD trigger: rebuild the base image without it",
                                      path=self.dockerfile_path, line=from_line, instruction="FROM")
            self._step_start(instruction, prefix="ONBUILD ")
            self._run_instruction(state, instruction)

    def _run_instruction(self, state: StageState, instruction) -> None:
        started = time.monotonic()
        original = instruction.original
        if instruction.keyword in EXPANDING_KEYWORDS:
            instruction = instruction.expanded(state.expansion_env(), self.dockerfile.escape)
        if instruction.keyword == "CMD":
            self.stage_set_cmd = True

        step = plan_step(self, state, instruction)
        try:
            key = _cache_key(state.image_id, step.created_by, step.cache_extra)
            cached = None if self.request.no_cache else self.cache.get(key)
            image = None
            if cached is not None:
                image = load_image(self.engine.store, cached.digest)
                if self.cache_sources is not None and not self.cache_sources.allows(image.id):
                    cached = image = None
            if image is None and self.cache_sources is not None and not self.request.no_cache:
                image = self.cache_sources.restore(self, state, step)
                if image is not None:
                    cached = image
                    self.engine.images.cache_put(key, image, parent=state.image.id if state.image else None)
            record_key = records.step_key(self.context.root, self.dockerfile_path, self.index)
            record = dict(step.record, parent=state.image_id, instruction=instruction.text)

            if cached is not None:
                self.emit(events.StepCached(self.index, image.id))
                reason = ""
            else:
                reason = self._miss_reason(state, records.load(self.records_dir, record_key), record)
                state.missed = True
                image = step.execute()
                self.engine.images.cache_put(key, image, parent=state.image.id if state.image else None)
            records.save(self.records_dir, record_key, record)
        finally:
            if step.cleanup is not None:
                step.cleanup()

        grew = len(image.layers) > len(state.image.layers if state.image else [])
        layer_size = image.layers[-1].size if grew else None
        layer_digest = image.layers[-1].digest if grew else None
        state.image = image
        state.clear_onbuild = False
        seconds = time.monotonic() - started
        self.records.append(StepRecord(self.index, original, cached is not None, seconds, layer_size,
                                       image.id, reason))
        self.emit(events.StepDone(self.index, original, image.id, cached is not None, seconds,
                                  layer_size, reason, layer_digest))

    def _miss_reason(self, state: StageState, previous: dict | None, current: dict) -> str:
        if self.request.no_cache:
            return "--no-cache"
        if state.missed:
            return "parent changed: an earlier step ran, so the parent image is new"
        return records.explain_miss(previous, current)

    def _step_start(self, instruction, prefix: str = "") -> None:
        self.index += 1
        self.emit(events.StepStarted(self.index, self.total, prefix + _display(instruction)))
        for note in warnings.step_notes(instruction):
            self.emit(events.BuildWarning(self.index, f"{self.dockerfile_path}:{instruction.line}: {note}"))

    def _warn_unused_args(self) -> None:
        unused = sorted(set(self.request.build_args) - self.used_build_args - PREDEFINED_ARGS)
        if unused:
            self.emit(events.BuildWarning(None, f"One or more build-args {unused} were not consumed"))

    def _finish(self, state: StageState, started: float) -> BuildResult:
        image = state.image
        if self.tags:
            for reference in self.tags:
                self.engine.images.tag(image, reference, parent=self.engine.images.parent_of(image.id))
        elif not self.engine.images.references_to(image.id):
            self.engine.images.add_untagged(image, parent=self.engine.images.parent_of(image.id))
        seconds = time.monotonic() - started
        tags = [reference.familiar for reference in self.tags]
        self.emit(events.BuildDone(image.id, tags, seconds))
        return BuildResult(image.id, tags, BuildSummary(image.id, tags, self.records, seconds))


def _platform_args() -> dict[str, str]:
    """Return the automatic platform ARGs; a stage sees them after `ARG NAME`, as in BuildKit."""
    platform = f"linux/{host_architecture()}"
    values = {}
    for prefix in ("BUILD", "TARGET"):
        values[f"{prefix}PLATFORM"] = platform
        values[f"{prefix}OS"] = "linux"
        values[f"{prefix}ARCH"] = host_architecture()
        values[f"{prefix}VARIANT"] = ""
    return values


def _source_date_epoch() -> int | None:
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(text) if text.isdigit() else None


def _blank_base_message(original: str, meta_args: dict[str, str]) -> str:
    """Explain a FROM whose image name expanded to nothing, naming the ARGs without a value."""
    names = [name for name in dict.fromkeys(_VARIABLE.findall(original)) if not meta_args.get(name)]
    if not names:
        return f"{original.strip()!r} gives an empty image name: name a base image"
    listed = ", ".join(names)
    example = names[0]
    return (f"{original.strip()!r} gives an empty image name because ARG {listed} has no value: give it a "
            f"default before FROM (ARG {example}=busybox) or pass --build-arg {example}=IMAGE")


def _cache_key(parent_id: str, created_by: str, extra: str) -> str:
    material = json.dumps([parent_id, created_by, extra], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()


def _display(instruction) -> str:
    """Return the instruction as `Step N/M :` prints it: one line, continuations joined."""
    return " ".join(instruction.original.split()) if "\n" in instruction.original else instruction.original.strip()


def _read_dockerfile(request: BuildRequest, context_root: str) -> tuple[str, str]:
    if request.dockerfile_text is not None:
        return "Dockerfile", request.dockerfile_text
    path = request.dockerfile or os.path.join(context_root, "Dockerfile")
    if request.dockerfile and not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(context_root, request.dockerfile)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise NotFoundError(
            f"Cannot locate specified Dockerfile: {path}: create it, or name another with -f"
        ) from None
    except IsADirectoryError:
        raise DockerfileError(f"this is a directory, not a Dockerfile: name the file itself, for example "
                              f"-f {os.path.join(path, 'Dockerfile')}", path=path) from None
    except UnicodeDecodeError as error:
        raise DockerfileError(f"the Dockerfile is not UTF-8 text ({error.reason} at byte {error.start})",
                              path=path) from None
    display = os.path.relpath(path, context_root) if path.startswith(context_root) else path
    return display, text
