"""Basic auth with htpasswd, credential helpers, and TLS with a private CA."""

import base64
import json
import os
import shutil
import subprocess

import pytest

from layerlab.engine.registry.client import AuthenticationError, CertificateError
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import push
from tests.engine.registry.conftest import start_registry

USER = "student"
PASSWORD = "s3cret-pass"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd is not installed: apt-get install -y apache2-utils")
    directory = tmp_path_factory.mktemp("htpasswd")
    htpasswd = directory / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
    server = start_registry(tmp_path_factory, f"auth:\n  htpasswd:\n    realm: layerlab-test\n    path: {htpasswd}\n")
    yield server
    server.stop()


def make_ca(directory):
    """Make a CA and a server certificate for 127.0.0.1 signed by it; return (ca.crt, cert, key)."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
            "-days", "2", "-subj", "/CN=layerlab test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
            "-days", "2", "-extfile", ext)
    return ca_crt, crt, key


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("ca")
    ca_crt, crt, key = make_ca(directory)
    server = start_registry(tmp_path_factory, f"  tls:\n    certificate: {crt}\n    key: {key}\n")
    server.ca_crt = ca_crt
    yield server
    server.stop()


def test_push_without_login_rejected(engine, busybox, auth_registry):
    name = f"{auth_registry.host}/lab/private:1"
    engine.tag("busybox", name)

    with pytest.raises(AuthenticationError, match="layerlab login"):
        push(engine, name)


def test_login_wrong_password_rejected(cli, auth_registry, docker_config):
    result = cli("login", "-u", USER, "--password-stdin", auth_registry.host, input="wrong\n")

    assert result.returncode != 0
    assert "check the user name and password" in result.stderr
    assert "layerlab login" not in result.stderr
    assert not (docker_config / "config.json").exists()


def test_login_push_pull_logout(cli, engine, busybox, auth_registry, docker_config, tmp_path):
    name = f"{auth_registry.host}/lab/private:2"
    engine.tag("busybox", name)

    logged_in = cli("login", "-u", USER, "--password-stdin", auth_registry.host, input=PASSWORD + "\n")
    config = json.loads((docker_config / "config.json").read_text())
    pushed = cli("push", name)
    from layerlab.engine.api import Engine
    pulled = pull(Engine(str(tmp_path / "other")), name)
    logged_out = cli("logout", auth_registry.host)

    assert logged_in.returncode == 0, logged_in.stderr
    assert "Login Succeeded" in logged_in.stdout
    assert base64.b64decode(config["auths"][auth_registry.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert pushed.returncode == 0, pushed.stderr
    assert pulled.image.id == busybox.id
    assert logged_out.returncode == 0
    assert auth_registry.host not in json.loads((docker_config / "config.json").read_text())["auths"]


def test_credential_helper_supplies_password(engine, busybox, auth_registry, docker_config, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-layerlabtest"
    helper.write_text(
        "#!/bin/sh\n"
        "read server\n"
        f"[ \"$1\" = get ] && printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {auth_registry.host: "layerlabtest"}}))
    name = f"{auth_registry.host}/lab/helper:1"
    engine.tag("busybox", name)

    result = push(engine, name)

    assert result.manifest_digest.startswith("sha256:")


def test_tls_untrusted_ca_rejected(engine, busybox, tls_registry):
    name = f"{tls_registry.host}/lab/tls:1"
    engine.tag("busybox", name)

    with pytest.raises(CertificateError, match="certs.d"):
        push(engine, name)


def test_tls_with_ca_in_certs_d(engine, busybox, tls_registry, tmp_path):
    certs = os.path.join(engine.root, "certs.d", tls_registry.host)
    os.makedirs(certs)
    shutil.copy(tls_registry.ca_crt, os.path.join(certs, "ca.crt"))
    name = f"{tls_registry.host}/lab/tls:2"
    engine.tag("busybox", name)

    push(engine, name)
    from layerlab.engine.api import Engine
    other = Engine(str(tmp_path / "other"))
    os.makedirs(os.path.join(other.root, "certs.d"))
    shutil.copytree(certs, os.path.join(other.root, "certs.d", tls_registry.host))
    result = pull(other, name)

    assert result.image.id == busybox.id
