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
    except IsADirectoryError:
        raise InvalidArgumentError(f"cannot read {path}: it is a directory: remove it or point DOCKER_CONFIG "
                                   "at another directory") from None
    except OSError as error:
        raise InvalidArgumentError(f"cannot read {path}: {error.strerror}: fix its permissions or remove it") from None
    except ValueError as error:
        raise InvalidArgumentError(f"{path} is not valid JSON ({error}): fix or remove it") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError(f"{path} must contain a JSON object: fix or remove it")
    _check_config(document, path)
    return document


def _check_config(document: dict, path: str) -> None:
    """Raise InvalidArgumentError naming the first key of config.json whose value has the wrong JSON type."""
    def wrong(key: str, expected: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{path}: {key} must be {expected}: edit or remove that entry")

    auths = document.get("auths")
    if auths is not None and not isinstance(auths, dict):
        raise wrong("auths", 'an object that maps registries to {"auth": "..."}')
    for registry, entry in (auths or {}).items():
        if not isinstance(entry, dict):
            raise wrong(f"auths[{registry!r}]", 'an object such as {"auth": "<base64 of user:password>"}')
        for field_name in ("auth", "username", "password", "identitytoken"):
            if field_name in entry and not isinstance(entry[field_name], str):
                raise wrong(f"auths[{registry!r}].{field_name}", "a string")

    helpers = document.get("credHelpers")
    if helpers is not None and not isinstance(helpers, dict):
        raise wrong("credHelpers", 'an object that maps registries to helper names, such as {"host:5000": "pass"}')
    for registry, helper in (helpers or {}).items():
        if not isinstance(helper, str):
            raise wrong(f"credHelpers[{registry!r}]", "a helper name (a string)")
    store = document.get("credsStore")
    if store is not None and not isinstance(store, str):
        raise wrong("credsStore", "a helper name (a string)")


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


def _helper_credentials(helper: str, key: str) -> Credentials | None:
    """Run the helper's `get` for `key`; return its credentials, or None when it has none."""
    output = _run_helper(helper, "get", key)
    if not output.strip():
        return None
    try:
        answer = json.loads(output)
    except ValueError:
        answer = None
    valid = isinstance(answer, dict) and all(isinstance(answer.get(name, ""), str) for name in ("Username", "Secret"))
    if not valid:
        # Only the size is shown, because the output may contain a secret.
        raise LayerlabError(
            f"credential helper docker-credential-{helper} get returned {len(output)} bytes that are not a JSON "
            f"object with string Username and Secret: fix the helper or remove it from {config_path()}"
        )
    return Credentials(answer.get("Username", ""), answer.get("Secret", ""))


def get_credentials(registry: str) -> Credentials | None:
    """Return the stored credentials for `registry`, or None."""
    key = auth_key(registry)
    document = _read_config()
    helper = _helper_for(document, key)
    if helper:
        return _helper_credentials(helper, key)

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
        # A helper that exits 0 but cannot return what it stored would fail every later pull, so read them back.
        if _helper_credentials(helper, key) != credentials:
            raise LayerlabError(
                f"credential helper docker-credential-{helper} store exited 0, but its get did not return the "
                f"stored credentials for {key}: fix the helper or remove it from {config_path()}"
            )
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
