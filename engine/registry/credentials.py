"""Registry credentials in Docker's config.json format.

The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
`auths` maps a registry to `{"auth": base64("user:password")}`. A registry
listed in `credHelpers`, or every registry when `credsStore` is set, is
delegated to the program `docker-credential-<name>` as the docker CLI
does: it runs `get`, `store` and `erase` with JSON on stdin and stdout.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass

from layerlab.engine.errors import InvalidArgumentError, LayerlabError
from layerlab.engine.registry.hosts import auth_key

log = logging.getLogger(__name__)

HELPER_TIMEOUT = 60


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _read_config() -> dict:
    path = config_path()
    try:
        with open(path, encoding="utf-8") as config:
            document = json.load(config)
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise InvalidArgumentError(f"{path} is not valid JSON ({error}): fix or remove it") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError(f"{path} must contain a JSON object: fix or remove it")
    return document


def _write_config(document: dict) -> None:
    path = config_path()
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".config-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(document, tmp, indent="\t")
            tmp.write("\n")
        os.chmod(tmp_path, 0o600)
        os.rename(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def _helper_for(document: dict, key: str) -> str | None:
    helpers = document.get("credHelpers") or {}
    return helpers.get(key) or document.get("credsStore") or None


def _run_helper(helper: str, action: str, payload: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run([program, action], input=payload, capture_output=True, text=True,
                                timeout=HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise LayerlabError(
            f"credential helper {program} (named in {config_path()}) is not on PATH: install it or remove it "
            "from credHelpers/credsStore"
        ) from None
    except subprocess.TimeoutExpired:
        raise LayerlabError(f"credential helper {program} {action} timed out after {HELPER_TIMEOUT} s") from None
    if result.returncode != 0:
        message = (result.stdout.strip() or result.stderr.strip())
        if action == "get" and "credentials not found" in message.lower():
            return ""
        raise LayerlabError(f"credential helper {program} {action} failed: {message}")
    return result.stdout


def get_credentials(registry: str) -> Credentials | None:
    """Return the stored credentials for `registry`, or None."""
    key = auth_key(registry)
    document = _read_config()
    helper = _helper_for(document, key)
    if helper:
        output = _run_helper(helper, "get", key)
        if not output.strip():
            return None
        answer = json.loads(output)
        return Credentials(answer.get("Username", ""), answer.get("Secret", ""))

    entry = (document.get("auths") or {}).get(key)
    if not entry:
        return None
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgumentError(
                f"auths[{key!r}].auth in {config_path()} is not base64 of user:password: run `layerlab login {registry}`"
            ) from None
        return Credentials(username, password)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""))
    return None


def store_credentials(registry: str, credentials: Credentials) -> str:
    """Save credentials for `registry`; return where they went (a file path or a helper name)."""
    key = auth_key(registry)
    document = _read_config()
    helper = _helper_for(document, key)
    if helper:
        payload = json.dumps({"ServerURL": key, "Username": credentials.username, "Secret": credentials.password})
        _run_helper(helper, "store", payload)
        return f"docker-credential-{helper}"

    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    document.setdefault("auths", {})[key] = {"auth": token}
    _write_config(document)
    return config_path()


def erase_credentials(registry: str) -> bool:
    """Remove stored credentials for `registry`; return whether there were any."""
    key = auth_key(registry)
    document = _read_config()
    helper = _helper_for(document, key)
    if helper:
        _run_helper(helper, "erase", key)
        return True
    auths = document.get("auths") or {}
    if key not in auths:
        return False
    del auths[key]
    _write_config(document)
    return True
