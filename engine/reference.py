"""Image references, parsed and normalised as Docker does.

`ubuntu` is `docker.io/library/ubuntu:latest`, and `muellermich/nodejs-hello`
is a user repository on Docker Hub. `localhost:5000/wordpress` names a
self-hosted registry because its first component has a port (a dot or the
word `localhost` works too). `name@sha256:<hex>` pins a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from layerlab.engine.errors import InvalidArgumentError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
OFFICIAL_NAMESPACE = "library"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    r"(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?"
)
_HEX_ID = re.compile(r"[a-f0-9]{64}")
MAX_NAME_LENGTH = 255
MAX_PORT = 65535
# The digest algorithms that Docker's reference parser accepts (go-digest's), with their hex lengths.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A fully qualified image reference: registry, repository, tag, digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse `text` and fill in Docker's defaults (registry, `library/`, `latest`)."""
        if not text or text != text.strip():
            raise InvalidArgumentError(f"invalid reference format: {text!r} is empty or has spaces")
        if _HEX_ID.fullmatch(text):
            raise InvalidArgumentError(
                f"invalid repository name ({text}): a 64-digit hex string is an image ID, not a name"
            )

        name, digest = _split_digest(text)
        name, tag = _split_tag(name, text)
        # Docker limits the name as written, registry included, before any default is filled in.
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidArgumentError(
                f"invalid reference format: repository name {name[:40]}... is {len(name)} characters long, "
                f"over the maximum of {MAX_NAME_LENGTH}: use a shorter name"
            )
        registry, repository = _split_registry(name)
        _check_repository(repository, text)

        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """The registry and repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The repository as Docker prints it (`ubuntu`, `user/app`, `localhost:5000/app`)."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        prefix = OFFICIAL_NAMESPACE + "/"
        if self.repository.startswith(prefix) and "/" not in self.repository[len(prefix):]:
            return self.repository[len(prefix):]
        return self.repository

    @property
    def familiar(self) -> str:
        """The reference as Docker prints it (`ubuntu:latest`)."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def _suffix(self) -> str:
        suffix = f":{self.tag}" if self.tag else ""
        if self.digest:
            suffix += f"@{self.digest}"
        return suffix

    def __str__(self) -> str:
        return self.name + self._suffix()


def looks_like_image_id(text: str) -> bool:
    """Return whether `text` is a full or `sha256:`-prefixed 64-digit hex image ID."""
    return bool(_HEX_ID.fullmatch(text.removeprefix("sha256:")))


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    name, digest = text.split("@", 1)
    if not _DIGEST.fullmatch(digest):
        raise InvalidArgumentError(f"invalid reference format: digest {digest!r} in {text!r} is not algorithm:hex")
    algorithm, _, encoded = digest.partition(":")
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidArgumentError(
            f"invalid reference format: unsupported digest algorithm {algorithm!r} in {text!r}: "
            f"use {', '.join(DIGEST_HEX_LENGTHS)}, such as @sha256:<64 hex digits>"
        )
    if not re.fullmatch(f"[a-f0-9]{{{length}}}", encoded):
        raise InvalidArgumentError(
            f"invalid reference format: digest {digest!r} in {text!r} must have {length} lowercase hex digits "
            f"after {algorithm}:"
        )
    return name, digest


def _split_tag(name: str, text: str) -> tuple[str, str | None]:
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= last_slash:
        return name, None
    tag = name[colon + 1:]
    if not _TAG.fullmatch(tag):
        raise InvalidArgumentError(
            f"invalid reference format: tag {tag!r} in {text!r} must be 1 to 128 letters, digits, '_', '.' or '-'"
        )
    return name[:colon], tag


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    is_domain = sep and ("." in first or ":" in first or first == "localhost")
    if not is_domain:
        registry, repository = DEFAULT_REGISTRY, name
    else:
        if not _DOMAIN.fullmatch(first):
            raise InvalidArgumentError(f"invalid reference format: registry {first!r} is not a host name")
        _check_port(first)
        registry, repository = first, rest

    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"{OFFICIAL_NAMESPACE}/{repository}"
    return registry, repository


def _check_port(domain: str) -> None:
    host, colon, port = domain.rpartition(":")
    if not colon or host.endswith(":") or not port.isdigit():
        return
    if not 0 < int(port) <= MAX_PORT:
        raise InvalidArgumentError(
            f"invalid reference format: port {port} of registry {domain!r} is not between 1 and {MAX_PORT}"
        )


def _check_repository(repository: str, text: str) -> None:
    if repository.lower() != repository:
        raise InvalidArgumentError(
            f"invalid reference format: repository name {repository!r} must be lowercase"
        )
    for component in repository.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise InvalidArgumentError(
                f"invalid reference format: {text!r}: path component {component!r} may contain only "
                "lowercase letters, digits and single separators ('.', '_', '__', '-')"
            )
