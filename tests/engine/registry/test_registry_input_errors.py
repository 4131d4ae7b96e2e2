"""Registry settings and replies that are wrong: config.json, credential helpers, certs, timeouts, names."""

import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.errors import InvalidArgumentError, LayerlabError, NotFoundError
from layerlab.engine.registry import client as registry_client
from layerlab.engine.registry.client import RegistryError, UnreachableError
from layerlab.engine.registry.credentials import get_credentials
from layerlab.engine.registry.hosts import allows_plain_http
from layerlab.engine.registry.login import login
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import push


def layerlab(*args, env=None, input=None, timeout=120):
    """Run the CLI with extra environment variables (the `cli` fixture copies the environment too early)."""
    return subprocess.run([sys.executable, "-m", "layerlab", *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, **(env or {})))


def write_helper(directory, name, output, exit_status=0):
    """Write `docker-credential-NAME` that prints `output` for every action."""
    helper = directory / f"docker-credential-{name}"
    helper.write_text(f"#!/bin/sh\ncat > /dev/null\nprintf '%s' '{output}'\nexit {exit_status}\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    return helper


# config.json


@pytest.mark.parametrize("document, key", [
    ({"auths": {"127.0.0.1:5001": "x"}}, "auths['127.0.0.1:5001']"),
    ({"auths": {"h": {"auth": 5}}}, "auths['h'].auth"),
    ({"auths": ["h"]}, "auths"),
    ({"credHelpers": ["x"]}, "credHelpers"),
    ({"credHelpers": {"h": 1}}, "credHelpers['h']"),
    ({"credsStore": {"name": "x"}}, "credsStore"),
])
def test_malformed_config_named(docker_config, document, key):
    config = docker_config / "config.json"
    config.write_text(json.dumps(document))

    with pytest.raises(InvalidArgumentError) as caught:
        get_credentials("127.0.0.1:5001")

    message = str(caught.value)
    assert str(config) in message
    assert key in message
    assert "edit or remove that entry" in message


def test_malformed_config_fails_login(cli, registry, docker_config):
    config = docker_config / "config.json"
    config.write_text('{"auths": {"127.0.0.1:5001": "x"}}')

    result = cli("login", "-u", "student", "--password-stdin", registry.host, input="secret\n")

    assert result.returncode != 0
    assert result.stderr.startswith(f"layerlab: {config}: auths['127.0.0.1:5001'] must be")
    assert "Traceback" not in result.stderr
    assert config.read_text() == '{"auths": {"127.0.0.1:5001": "x"}}'


def test_config_directory_named(docker_config):
    (docker_config / "config.json").mkdir()

    with pytest.raises(InvalidArgumentError, match="config.json: it is a directory"):
        get_credentials("127.0.0.1:5001")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_named(docker_config):
    config = docker_config / "config.json"
    config.write_text("{}")
    config.chmod(0)

    with pytest.raises(InvalidArgumentError, match="fix its permissions"):
        get_credentials("127.0.0.1:5001")


# Credential helpers


@pytest.mark.parametrize("output", ["not json", "[1]", '{"Username": 1, "Secret": "x"}'])
def test_helper_wrong_output_named(docker_config, tmp_path, monkeypatch, output):
    write_helper(tmp_path, "broken", output)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (docker_config / "config.json").write_text('{"credsStore": "broken"}')

    with pytest.raises(LayerlabError) as caught:
        get_credentials("127.0.0.1:5001")

    message = str(caught.value)
    assert "docker-credential-broken get returned" in message
    assert "not a JSON object with string Username and Secret" in message
    assert output not in message


def test_login_with_broken_helper_fails(registry, docker_config, tmp_path):
    write_helper(tmp_path, "broken", "[1]")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "broken"}}))

    result = layerlab("login", "-u", "student", "--password-stdin", registry.host, input="secret\n",
                      env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})

    assert result.returncode != 0
    assert "Login Succeeded" not in result.stdout
    assert "docker-credential-broken get returned" in result.stderr
    assert "Traceback" not in result.stderr


# Hosts and TLS


def test_uppercase_localhost_is_loopback(engine):
    assert allows_plain_http("LOCALHOST:5000", engine.root)
    assert allows_plain_http("LocalHost", engine.root)
    assert not allows_plain_http("registry.example:5000", engine.root)


def test_garbage_ca_certificate_named(engine, busybox, registry):
    ca_file = os.path.join(engine.root, "certs.d", registry.host, "ca.crt")
    os.makedirs(os.path.dirname(ca_file))
    with open(ca_file, "w") as garbage:
        garbage.write("this is not a certificate\n")

    with pytest.raises(InvalidArgumentError) as caught:
        pull(engine, f"{registry.host}/lab/anything:1")

    assert f"cannot load CA certificate {ca_file}" in str(caught.value)


def test_plain_http_registry_hints_insecure_setting(engine, registry, monkeypatch):
    # Treat the loopback registry like a remote one, which layerlab reaches over HTTPS only.
    monkeypatch.setattr(registry_client, "allows_plain_http", lambda host, root=None: False)

    with pytest.raises(RegistryError) as caught:
        pull(engine, f"{registry.host}/lab/anything:1")

    message = str(caught.value)
    assert "WRONG_VERSION_NUMBER" in message
    assert f"add {registry.host} to LAYERLAB_INSECURE_REGISTRIES" in message
    assert os.path.join(engine.root, "registries.json") in message


def test_silent_registry_times_out(engine, monkeypatch):
    monkeypatch.setenv("LAYERLAB_REGISTRY_TIMEOUT", "0.5")
    # The kernel completes connections into the backlog, so the client connects and then hears nothing.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"127.0.0.1:{listener.getsockname()[1]}"

        with pytest.raises(UnreachableError) as caught:
            pull(engine, f"{host}/lab/silent:1")

    message = str(caught.value)
    assert f"https://{host} did not respond to GET /v2/ within 0.5 s" in message
    assert "LAYERLAB_REGISTRY_TIMEOUT" in message


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_invalid_timeout_setting(engine, monkeypatch, value):
    monkeypatch.setenv("LAYERLAB_REGISTRY_TIMEOUT", value)

    with pytest.raises(InvalidArgumentError, match=f"invalid LAYERLAB_REGISTRY_TIMEOUT '{value}'"):
        pull(engine, "127.0.0.1:1/lab/any:1")


# Names and digests


def test_missing_tag_reports_manifest_unknown(engine, registry):
    with pytest.raises(NotFoundError) as caught:
        pull(engine, f"{registry.host}/lab/missing:nope")

    assert str(caught.value) == f"manifest for {registry.host}/lab/missing:nope not found: manifest unknown"


def test_pull_by_digest_adds_no_tag(engine, busybox, registry, tmp_path):
    name = f"{registry.host}/lab/bydigest:1"
    engine.tag("busybox", name)
    digest = push(engine, name).manifest_digest
    other = Engine(str(tmp_path / "other"))

    pull(other, name)
    pull(other, f"{registry.host}/lab/bydigest@{digest}")

    entries = other.images.entries()
    assert [str(entry.reference) for entry in entries] == [f"{registry.host}/lab/bydigest:1"]
    assert other.images.repo_digests(busybox.id) == [f"{registry.host}/lab/bydigest@{digest}"]


def test_pull_tag_and_digest_stores_no_tag(engine, busybox, registry, tmp_path):
    name = f"{registry.host}/lab/pinned:1"
    engine.tag("busybox", name)
    digest = push(engine, name).manifest_digest
    other = tmp_path / "other"

    pulled = layerlab("pull", f"{name}@{digest}", env={"LAYERLAB_ROOT": str(other)})
    listed = layerlab("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}",
                      env={"LAYERLAB_ROOT": str(other)})

    assert pulled.returncode == 0, pulled.stderr
    assert f"Status: Downloaded newer image for {registry.host}/lab/pinned@{digest}" in pulled.stdout
    assert listed.stdout == f"{registry.host}/lab/pinned <none> {digest}\n", listed.stderr
    assert [entry.reference for entry in Engine(str(other)).images.entries()] == [None]


# Stale temporary files


def test_pull_removes_stale_tmp_files(engine, busybox, registry):
    name = f"{registry.host}/lab/stale:1"
    engine.tag("busybox", name)
    push(engine, name)
    long_ago = time.time() - 365 * 24 * 3600
    stale = os.path.join(engine.store.tmp_dir, "blob-999999-killed")
    with open(stale, "wb") as killed:
        killed.write(b"\0" * 4096)
    os.utime(stale, (long_ago, long_ago))

    with engine.store.blob_writer() as live:
        live.write(b"still being written")
        live_path = next(os.path.join(engine.store.tmp_dir, entry) for entry in os.listdir(engine.store.tmp_dir)
                         if entry != "blob-999999-killed")
        os.utime(live_path, (long_ago, long_ago))

        pull(engine, name)

        assert not os.path.exists(stale)
        assert os.path.exists(live_path)


# Search


def test_search_index_setting_checked(store_root):
    result = layerlab("search", "bb", env={"LAYERLAB_SEARCH_INDEX": "notaurl", "LAYERLAB_ROOT": str(store_root)})

    assert result.returncode != 0
    assert result.stderr == ("layerlab: invalid LAYERLAB_SEARCH_INDEX 'notaurl': expected an http:// or https:// "
                             "URL such as https://index.docker.io, or unset it to search Docker Hub\n")


# Offline classroom


@pytest.fixture
def offline_namespace():
    """A network namespace with only lo up, so every name outside /etc/hosts fails to resolve."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"layerlab-offline-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True, timeout=30)


@pytest.mark.parametrize("image, command", [
    ("busybox", "layerlab bootstrap busybox"),
    ("debian:bookworm", "layerlab bootstrap debian:bookworm"),
])
def test_offline_pull_suggests_bootstrap(offline_namespace, store_root, image, command):
    result = subprocess.run(
        ["ip", "netns", "exec", offline_namespace, sys.executable, "-m", "layerlab", "pull", image],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, LAYERLAB_ROOT=str(store_root), LAYERLAB_REGISTRY_TIMEOUT="5"),
    )

    assert result.returncode != 0
    assert "cannot reach https://registry-1.docker.io" in result.stderr
    assert f"without a registry, run `{command}`" in result.stderr
    assert "Traceback" not in result.stderr


def test_offline_pull_of_other_name_has_no_hint(offline_namespace, store_root):
    result = subprocess.run(
        ["ip", "netns", "exec", offline_namespace, sys.executable, "-m", "layerlab", "pull", "alpine"],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, LAYERLAB_ROOT=str(store_root), LAYERLAB_REGISTRY_TIMEOUT="5"),
    )

    assert result.returncode != 0
    assert "layerlab bootstrap" not in result.stderr
