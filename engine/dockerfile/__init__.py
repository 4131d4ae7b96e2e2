"""The Dockerfile front end: parser, typed instructions, variable expansion and .dockerignore."""

from .dockerfile import Dockerfile, Stage, parse
from .expansion import EXPANDING_KEYWORDS, ExpansionError, expand, expand_words
from .ignore import IgnoreMatcher
from .instructions import (
    KEYWORDS,
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CommandInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    Instruction,
    KeyValue,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
)
from .parser import Heredoc
from .ports import PortSpec, parse_port
from .substitution import expand_instruction

__all__ = [
    "EXPANDING_KEYWORDS",
    "KEYWORDS",
    "AddInstruction",
    "ArgInstruction",
    "CmdInstruction",
    "CommandInstruction",
    "CopyInstruction",
    "Dockerfile",
    "EntrypointInstruction",
    "EnvInstruction",
    "ExpansionError",
    "ExposeInstruction",
    "FromInstruction",
    "HealthcheckInstruction",
    "Heredoc",
    "IgnoreMatcher",
    "Instruction",
    "KeyValue",
    "LabelInstruction",
    "MaintainerInstruction",
    "OnbuildInstruction",
    "PortSpec",
    "RunInstruction",
    "ShellInstruction",
    "Stage",
    "StopsignalInstruction",
    "UserInstruction",
    "VolumeInstruction",
    "WorkdirInstruction",
    "expand",
    "expand_instruction",
    "expand_words",
    "parse",
    "parse_port",
]
