"""A parsed Dockerfile: directives, build stages and their instructions."""

import logging
from dataclasses import dataclass, field

from layerlab.engine.errors import DockerfileError

from .instructions import ArgInstruction, FromInstruction, Instruction, parse_instruction
from .parser import parse_nodes

logger = logging.getLogger(__name__)


@dataclass
class Stage:
    """One build stage: a FROM and the instructions up to the next FROM.

    `base` is the image text of FROM before expansion (an image reference
    or the name of an earlier stage); `name` is the lower-cased `AS` name.
    """

    index: int
    base: str
    name: str | None
    platform: str | None
    from_instruction: FromInstruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    """The result of `parse`.

    `instructions` lists every instruction in file order, the ARGs before
    the first FROM and each FROM included.
    """

    path: str
    directives: dict[str, str]
    escape: str
    stages: list[Stage]
    args_before_from: list[ArgInstruction]
    instructions: list[Instruction]
    warnings: list[str] = field(default_factory=list)

    def stage(self, reference: str | int) -> Stage:
        """Find a stage by `AS` name (case-insensitive) or index. Raises KeyError if none matches."""
        if isinstance(reference, int) or reference.isdigit():
            index = int(reference)
            if 0 <= index < len(self.stages):
                return self.stages[index]
            raise KeyError(reference)

        for stage in self.stages:
            if stage.name == reference.lower():
                return stage
        raise KeyError(reference)


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text. Raises DockerfileError naming the line and instruction at fault."""
    result = parse_nodes(text, path)
    if not result.nodes:
        raise DockerfileError("the Dockerfile contains no instructions", path=path)

    instructions = [parse_instruction(node, path, result.escape) for node in result.nodes]
    stages, args_before_from = _group_stages(instructions, path)

    logger.debug("%s: %d instructions in %d stages", path, len(instructions), len(stages))
    return Dockerfile(
        path=path,
        directives=result.directives,
        escape=result.escape,
        stages=stages,
        args_before_from=args_before_from,
        instructions=instructions,
        warnings=result.warnings,
    )


def _group_stages(instructions, path):
    stages = []
    args_before_from = []
    names = set()

    for instruction in instructions:
        if isinstance(instruction, FromInstruction):
            stages.append(_new_stage(instruction, len(stages), names, path))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif isinstance(instruction, ArgInstruction):
            args_before_from.append(instruction)
        else:
            raise DockerfileError(
                "no build stage in current context: only ARG may come before the first FROM",
                path=path,
                line=instruction.line,
                instruction=instruction.keyword,
            )

    if not stages:
        raise DockerfileError("the Dockerfile has no FROM instruction, so there is no stage to build", path=path)
    return stages, args_before_from


def _new_stage(instruction, index, names, path):
    if instruction.name is not None:
        if instruction.name in names:
            raise DockerfileError(
                f"duplicate stage name {instruction.name!r}",
                path=path,
                line=instruction.line,
                instruction="FROM",
            )
        names.add(instruction.name)

    return Stage(
        index=index,
        base=instruction.image,
        name=instruction.name,
        platform=instruction.platform,
        from_instruction=instruction,
    )
