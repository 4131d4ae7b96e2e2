"""Registry endpoints: the API host, the scheme (HTTPS or plain HTTP) and TLS trust.

Plain HTTP is allowed only for loopback registries (`localhost`,
`127.0.0.1`, `::1`) and for registries listed as insecure, in
`LAYERLAB_INSECURE_REGISTRIES` (comma-separated `host:port`) or in
`$LAYERLAB_ROOT/registries.json` (`{"insecure-registries": [...]}`, the key
that Docker's daemon.json uses). Those are tried over HTTPS first and fall
back to HTTP, as Docker does. Extra CA certificates and client certificates
are read from `/etc/docker/certs.d/<host:port>/` (Docker's layout: `*.crt`
CAs, `client.cert` plus `client.key`) and from `$LAYERLAB_ROOT/certs.d/`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import ssl

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.paths import default_root

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
# Docker keeps Hub credentials under this key in config.json, not under docker.io.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DOCKER_CERTS_DIR = "/etc/docker/certs.d"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def api_host(registry: str) -> str:
    """Return the host[:port] that serves the registry API for a reference's registry."""
    return DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry


def auth_key(registry: str) -> str:
    """Return the config.json `auths` key for a registry."""
    return DOCKER_HUB_AUTH_KEY if registry in (DOCKER_HUB, DOCKER_HUB_API_HOST, "index.docker.io") else registry


def normalise_server(server: str | None) -> str:
    """Turn a `login`/`logout` argument (`https://host:5000/`, `host:5000`) into a registry name."""
    if not server:
        return DOCKER_HUB
    server = server.strip()
    for prefix in ("https://", "http://"):
        server = server.removeprefix(prefix)
    server = server.split("/", 1)[0]
    if not server:
        raise InvalidArgumentError("registry server is empty: give a host name such as localhost:5000")
    if server in ("index.docker.io", DOCKER_HUB_API_HOST):
        return DOCKER_HUB
    return server


def host_name(host: str) -> str:
    """Return `host` without its port (brackets of an IPv6 address kept off)."""
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def insecure_registries(root: str | None = None) -> set[str]:
    entries = {item.strip() for item in os.environ.get("LAYERLAB_INSECURE_REGISTRIES", "").split(",") if item.strip()}
    path = os.path.join(root or default_root(), "registries.json")
    try:
        with open(path, encoding="utf-8") as config:
            entries.update(json.load(config).get("insecure-registries", []))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError) as error:
        raise InvalidArgumentError(f"cannot read {path}: {error}: fix it or remove it") from None
    return entries


def allows_plain_http(host: str, root: str | None = None) -> bool:
    """Return whether `host` (host[:port]) may be reached over plain HTTP."""
    # Host names are case-insensitive, so LOCALHOST:5000 is loopback too.
    if host_name(host).lower() in LOOPBACK_HOSTS or host.lower() in LOOPBACK_HOSTS:
        return True
    listed = {entry.lower() for entry in insecure_registries(root)}
    return host.lower() in listed or host_name(host).lower() in listed


def insecure_hint(host: str, root: str | None = None) -> str:
    """Return how to allow plain HTTP to `host`, naming both settings."""
    path = os.path.join(root or default_root(), "registries.json")
    return (f"add {host} to LAYERLAB_INSECURE_REGISTRIES (comma-separated) or to "
            f"\"insecure-registries\" in {path}")


def certs_dirs(host: str, root: str | None = None) -> list[str]:
    return [os.path.join(DOCKER_CERTS_DIR, host), os.path.join(root or default_root(), "certs.d", host)]


def tls_context(host: str, root: str | None = None) -> ssl.SSLContext:
    """Return a TLS context trusting the system CAs plus the host's certs.d CAs, with its client certificate."""
    context = ssl.create_default_context()
    for directory in certs_dirs(host, root):
        for ca_file in sorted(glob.glob(os.path.join(directory, "*.crt"))):
            log.debug("trusting CA %s for %s", ca_file, host)
            try:
                context.load_verify_locations(cafile=ca_file)
            except (ssl.SSLError, OSError) as error:
                raise InvalidArgumentError(
                    f"cannot load CA certificate {ca_file} for {host}: {_ssl_reason(error)}: "
                    "replace it with the registry's PEM CA certificate or remove it"
                ) from None
        cert = os.path.join(directory, "client.cert")
        key = os.path.join(directory, "client.key")
        if os.path.exists(cert) and os.path.exists(key):
            try:
                context.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as error:
                raise InvalidArgumentError(
                    f"cannot load client certificate {cert} with key {key} for {host}: {_ssl_reason(error)}: "
                    "replace them with a matching PEM certificate and key or remove them"
                ) from None
    return context


def _ssl_reason(error: Exception) -> str:
    return getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
