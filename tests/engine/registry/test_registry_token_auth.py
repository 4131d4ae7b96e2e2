"""Bearer token auth: docker-registry in `auth: token` mode with a token server run by the test."""

import io
import json
import tarfile

import pytest

pytest.importorskip("cryptography", reason="the token server signs with `cryptography`: pip install -e .[test]")

from layerlab.engine.api import Engine  # noqa: E402
from layerlab.engine.image import ImageDraft, write_image  # noqa: E402
from layerlab.engine.reference import Reference  # noqa: E402
from layerlab.engine.registry.client import AuthenticationError, RegistryClient  # noqa: E402
from layerlab.engine.registry.credentials import Credentials  # noqa: E402
from layerlab.engine.registry.pull import pull  # noqa: E402
from layerlab.engine.registry.push import push  # noqa: E402
from tests.engine.registry.conftest import start_token_registry  # noqa: E402
from tests.engine.registry.token_server import TokenServer  # noqa: E402

USER = "student"
PASSWORD = "s3cret-pass"
READER = "reader"
READER_PASSWORD = "read-only-pass"
PULL_PUSH = {"pull", "push"}
GRANTS = {
    USER: [("lab/", PULL_PUSH), ("public/", PULL_PUSH)],
    READER: [("lab/", {"pull"})],
    # Anonymous requests get a token too, but it grants only the public repositories.
    None: [("public/", {"pull"})],
}


@pytest.fixture(scope="module")
def token_server():
    return TokenServer(users={USER: PASSWORD, READER: READER_PASSWORD}, grants=GRANTS)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, token_server):
    server = start_token_registry(tmp_path_factory, token_server)
    yield server
    server.stop()
    token_server.stop()


@pytest.fixture(autouse=True)
def tokens(token_server):
    """The module's token server, with no recorded requests and no fault at the start of each test."""
    token_server.reset()
    return token_server


def client_as(engine, registry, username=USER, password=PASSWORD):
    """Return a client for `registry` (a RegistryServer) that sends these credentials, not stored ones."""
    return RegistryClient(registry.host, root=engine.root, credentials=Credentials(username, password))


def push_as_student(engine, registry, name):
    """Push `name` with the student's credentials, without storing them."""
    return push(engine, name, client=client_as(engine, registry))


def tar_layer(path, text):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = text.encode()
        info = tarfile.TarInfo(path)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def add_layers(engine, image_name, count, name):
    """Tag as `name` a copy of `image_name` with `count` small layers on top; return the image."""
    draft = ImageDraft.from_image(engine.images.resolve(image_name))
    for index in range(count):
        data = tar_layer(f"layer-{index}.txt", f"layer {index} of {name}\n")
        with engine.store.blob_writer() as writer:
            writer.write(data)
            digest = writer.commit()
        draft.add_layer(digest, len(data))
        draft.add_history(f"/bin/sh -c echo {index} > /layer-{index}.txt", empty_layer=False)
    image = write_image(engine.store, draft)
    engine.images.tag(image, Reference.parse(name))
    return image


def scope_sets(tokens):
    return [set(request.scopes) for request in tokens.requests]


# Login, push, pull and run


def test_login_push_pull_run(cli, engine, busybox, token_registry, tokens, docker_config):
    name = f"{token_registry.host}/lab/token:1"
    engine.tag("busybox", name)

    logged_in = cli("login", "-u", USER, "--password-stdin", token_registry.host, input=PASSWORD + "\n")
    pushed = cli("push", name)
    removed = [cli("rmi", name), cli("rmi", "busybox")]
    pulled = cli("pull", name)
    ran = cli("run", "--rm", "--network", "none", name, "echo", "through a token")

    assert logged_in.returncode == 0, logged_in.stderr
    assert "Login Succeeded" in logged_in.stdout
    assert token_registry.host in json.loads((docker_config / "config.json").read_text())["auths"]
    assert pushed.returncode == 0, pushed.stderr
    assert all(result.returncode == 0 for result in removed), [result.stderr for result in removed]
    assert pulled.returncode == 0, pulled.stderr
    assert Engine(engine.root).image(name).id == busybox.id
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "through a token\n"
    assert [request.username for request in tokens.requests] == [USER] * len(tokens.requests)
    assert [request.status for request in tokens.requests] == [200] * len(tokens.requests)
    # One token for login (no scope), one for the push, one for the pull: each command has one client.
    assert scope_sets(tokens) == [set(), {"repository:lab/token:pull,push"}, {"repository:lab/token:pull"}]


def test_anonymous_pull_denied(cli, engine, busybox, token_registry, tokens):
    name = f"{token_registry.host}/lab/private:1"
    engine.tag("busybox", name)
    push_as_student(engine, token_registry, name)
    tokens.reset()

    with pytest.raises(AuthenticationError) as denied:
        pull(Engine(str(engine.root) + "-other"), name)
    result = cli("pull", name)

    message = str(denied.value)
    assert token_registry.host in message
    assert "did not grant anonymous access repository:lab/private:pull" in message
    assert f"layerlab login {token_registry.host}" in message
    assert result.returncode != 0
    assert f"layerlab login {token_registry.host}" in result.stderr
    assert "Traceback" not in result.stderr
    assert {request.username for request in tokens.requests} == {None}


def test_anonymous_pull_of_public_repository(engine, busybox, token_registry, tokens, tmp_path):
    name = f"{token_registry.host}/public/app:1"
    engine.tag("busybox", name)
    push_as_student(engine, token_registry, name)
    tokens.reset()

    result = pull(Engine(str(tmp_path / "anonymous")), name)

    assert result.image.id == busybox.id
    assert [(request.username, request.scopes) for request in tokens.requests] == [
        (None, ["repository:public/app:pull"])
    ]


def test_wrong_password_rejected(cli, token_registry, tokens, docker_config):
    result = cli("login", "-u", USER, "--password-stdin", token_registry.host, input="wrong\n")

    assert result.returncode != 0
    assert f"rejected the credentials of '{USER}'" in result.stderr
    assert "check the user name and password" in result.stderr
    assert "layerlab login" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (docker_config / "config.json").exists()
    assert [(request.username, request.status) for request in tokens.requests] == [(USER, 401)]


def test_wrong_stored_password_rejected_on_pull(engine, busybox, token_registry, tokens, tmp_path):
    name = f"{token_registry.host}/lab/stale:1"
    engine.tag("busybox", name)
    push_as_student(engine, token_registry, name)
    other = Engine(str(tmp_path / "other"))

    with pytest.raises(AuthenticationError, match=f"rejected the credentials of '{USER}'"):
        pull(other, name, client=client_as(other, token_registry, password="stale"))

    assert not other.images.entries()


def test_reader_cannot_push(engine, busybox, token_registry, tokens):
    name = f"{token_registry.host}/lab/read-only:1"
    engine.tag("busybox", name)

    with pytest.raises(AuthenticationError) as denied:
        push(engine, name, client=client_as(engine, token_registry, READER, READER_PASSWORD))

    message = str(denied.value)
    assert "did not grant user 'reader' repository:lab/read-only:pull,push" in message
    assert f"layerlab login {token_registry.host}" in message


# Token reuse and scope changes


def test_token_reused_across_blobs(engine, busybox, token_registry, tokens, tmp_path):
    name = f"{token_registry.host}/lab/layers:1"
    image = add_layers(engine, "busybox", 4, name)

    push_as_student(engine, token_registry, name)
    push_tokens = scope_sets(tokens)
    tokens.reset()
    other = Engine(str(tmp_path / "other"))
    result = pull(other, name, client=client_as(other, token_registry))
    pull_tokens = scope_sets(tokens)

    assert len(image.layers) == 5
    assert result.image.id == image.id
    # Five layers and a config: a HEAD and an upload each on push, a GET each on pull, one token each way.
    assert push_tokens == [{"repository:lab/layers:pull,push"}]
    assert pull_tokens == [{"repository:lab/layers:pull"}]


def test_new_token_for_second_repository(engine, busybox, token_registry, tokens):
    first = f"{token_registry.host}/lab/scope-a:1"
    second = f"{token_registry.host}/lab/scope-b:1"
    engine.tag("busybox", first)
    engine.tag("busybox", second)
    client = client_as(engine, token_registry)
    lines = []

    push(engine, first, client=client)
    push(engine, second, client=client, progress=lines.append)

    assert any("Mounted from lab/scope-a" in line for line in lines), lines
    # The mount needs pull on lab/scope-a, which the first token's pull,push already asked for.
    assert scope_sets(tokens) == [
        {"repository:lab/scope-a:pull,push"},
        {"repository:lab/scope-a:pull,push", "repository:lab/scope-b:pull,push"},
    ]


def test_cross_repository_mount_scope(cli, engine, busybox, token_registry, tokens, docker_config):
    first = f"{token_registry.host}/lab/mount-a:1"
    second = f"{token_registry.host}/lab/mount-b:1"
    engine.tag("busybox", first)
    engine.tag("busybox", second)
    assert cli("login", "-u", USER, "--password-stdin", token_registry.host, input=PASSWORD + "\n").returncode == 0
    assert cli("push", first).returncode == 0
    tokens.reset()

    result = cli("push", second)

    assert result.returncode == 0, result.stderr
    assert "Mounted from lab/mount-a" in result.stdout
    assert scope_sets(tokens) == [{"repository:lab/mount-a:pull", "repository:lab/mount-b:pull,push"}]


# A token server that misbehaves


@pytest.mark.parametrize("fault, message", [
    ("garbage", "returned no usable token: the reply (24 bytes) is not a JSON object"),
    ("500", "failed: HTTP 500"),
    ("no-token", "returned no usable token: the reply has no \"token\""),
    ("number-token", "returned no usable token: the reply has no \"token\""),
])
def test_token_server_fault_is_clear(cli, engine, busybox, token_registry, tokens, docker_config, fault, message):
    name = f"{token_registry.host}/lab/fault-{fault}:1"
    engine.tag("busybox", name)
    tokens.fault = fault

    with pytest.raises(AuthenticationError, match="the token server http://127.0.0.1:") as raised:
        push(engine, name, client=client_as(engine, token_registry))
    result = cli("pull", name)

    assert message in str(raised.value)
    assert token_registry.host in str(raised.value)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_token_server_requiring_login(cli, token_registry, tokens):
    tokens.fault = "anonymous-401"

    result = cli("pull", f"{token_registry.host}/lab/anything:1")

    assert result.returncode != 0
    assert f"requires a login: run `layerlab login {token_registry.host}`" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_from_untrusted_key_rejected(engine, busybox, token_registry, tokens):
    # The registry checks each token's signature against its rootcertbundle, so this proves it verifies them.
    name = f"{token_registry.host}/lab/untrusted:1"
    engine.tag("busybox", name)
    tokens.fault = "untrusted-key"

    with pytest.raises(AuthenticationError, match=f"{token_registry.host} denied") as denied:
        push(engine, name, client=client_as(engine, token_registry))

    assert f"layerlab login {token_registry.host}" in str(denied.value)
    # One token, sent once: a second 401 after a fresh token is final.
    assert [request.status for request in tokens.requests] == [200]
