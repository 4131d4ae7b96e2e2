"""Content digests in the OCI form `sha256:<64 hex digits>`."""

import hashlib
import re

from layerlab.engine.errors import InvalidArgumentError

ALGORITHM = "sha256"
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


def sha256_digest(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def check_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest, else raise."""
    if not _SHA256.fullmatch(digest):
        raise InvalidArgumentError(f"invalid digest {digest!r}: expected sha256: and 64 lowercase hex digits")
    return digest


def hex_part(digest: str) -> str:
    return check_digest(digest).split(":", 1)[1]


def short_id(digest: str) -> str:
    """Return the 12-digit form that Docker prints in tables."""
    return digest.split(":", 1)[-1][:12]


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Compute the chain ID of each layer prefix, as the OCI image spec defines it.

    ChainID(L0) = DiffID(L0); ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
    """
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append(sha256_digest(f"{chain[-1]} {diff_id}".encode()))
    return chain
