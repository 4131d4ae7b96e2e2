"""Notes printed beside a step whose instruction another builder drops or rejects.

layerlab builds every construct below. The notes tell a user which of the
builders they may meet elsewhere would not: Docker 20.10's classic builder
(DOCKER_BUILDKIT=0) rejects BuildKit-only syntax, and buildah writing the
OCI image format drops the settings that only Docker's format has.
"""

from __future__ import annotations

from layerlab.engine.dockerfile import instructions as ins

CLASSIC = "Docker's classic builder (DOCKER_BUILDKIT=0) does not support"
# buildah 1.28 prints "HEALTHCHECK is not supported for OCI image format and will be ignored" for these.
DOCKER_FORMAT_ONLY = ("HEALTHCHECK", "SHELL", "ONBUILD")


def step_notes(instruction) -> list[str]:
    """Return the notes for one instruction, in the order of its flags."""
    notes = []
    if instruction.keyword in DOCKER_FORMAT_ONLY:
        notes.append(f"{instruction.keyword} is not part of the OCI image format: layerlab keeps it in the config "
                     f"as Docker does, but buildah --format oci drops it; use --format docker there")
    for feature in _buildkit_features(instruction):
        notes.append(f"{CLASSIC} {feature}: build with BuildKit (DOCKER_BUILDKIT=1) or layerlab")
    return notes


def _buildkit_features(instruction) -> list[str]:
    features = []
    if getattr(instruction, "heredocs", None):
        features.append("heredocs (<<EOF)")
    if isinstance(instruction, ins.RunInstruction):
        if instruction.mounts:
            features.append("RUN --mount")
        if instruction.network is not None:
            features.append("RUN --network")
    if isinstance(instruction, ins.CopyInstruction):
        keyword = instruction.keyword
        for flag, used in (("--link", instruction.link), ("--chmod", instruction.chmod is not None),
                           ("--exclude", bool(instruction.excludes)), ("--parents", instruction.parents)):
            if used:
                features.append(f"{keyword} {flag}")
    if isinstance(instruction, ins.AddInstruction) and instruction.checksum is not None:
        features.append("ADD --checksum")
    return features
