"""`login` and `logout`: check credentials against a registry, then keep or forget them."""

from __future__ import annotations

import logging

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.registry.client import RegistryClient
from layerlab.engine.registry.credentials import Credentials, erase_credentials, store_credentials
from layerlab.engine.registry.hosts import normalise_server

log = logging.getLogger(__name__)


def login(server: str | None, username: str, password: str, *, root: str | None = None) -> str:
    """Check `username`/`password` with `GET /v2/` on the registry, store them; return where they went."""
    registry = normalise_server(server)
    if not username:
        raise InvalidArgumentError("login needs a user name: pass -u NAME")
    if not password:
        raise InvalidArgumentError("login needs a password: pass --password-stdin and write it to standard input")
    credentials = Credentials(username, password)
    client = RegistryClient(registry, root=root, credentials=credentials, checking_login=True)
    try:
        client.check_login()
    finally:
        client.close()
    where = store_credentials(registry, credentials)
    log.info("stored credentials of %s for %s in %s", username, registry, where)
    return where


def logout(server: str | None) -> tuple[str, bool]:
    """Forget the credentials for a registry; return its name and whether any were stored."""
    registry = normalise_server(server)
    return registry, erase_credentials(registry)
