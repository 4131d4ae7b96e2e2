"""Image references, normalised as Docker's reference package does."""

import pytest

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.reference import Reference

DIGEST = "sha256:" + "ab" * 32

# text, str(), familiar, registry, repository, tag, digest
NORMALISED = [
    ("ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "docker.io", "library/ubuntu", "latest", None),
    ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
    ("library/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "docker.io", "library/ubuntu",
     "latest", None),
    ("docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "docker.io", "library/ubuntu",
     "latest", None),
    ("index.docker.io/library/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "docker.io",
     "library/ubuntu", "latest", None),
    ("muellermich/nodejs-hello", "docker.io/muellermich/nodejs-hello:latest", "muellermich/nodejs-hello:latest",
     "docker.io", "muellermich/nodejs-hello", "latest", None),
    ("user/repo:v1.2_rc-3", "docker.io/user/repo:v1.2_rc-3", "user/repo:v1.2_rc-3", "docker.io", "user/repo",
     "v1.2_rc-3", None),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest", "localhost:5000", "x", "latest", None),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest", "localhost", "x", "latest", None),
    ("registry.example.com:5000/a/b", "registry.example.com:5000/a/b:latest",
     "registry.example.com:5000/a/b:latest", "registry.example.com:5000", "a/b", "latest", None),
    ("registry.example.com/a/b:tag", "registry.example.com/a/b:tag", "registry.example.com/a/b:tag",
     "registry.example.com", "a/b", "tag", None),
    (f"name@{DIGEST}", f"docker.io/library/name@{DIGEST}", f"name@{DIGEST}", "docker.io", "library/name", None,
     DIGEST),
    (f"name:1@{DIGEST}", f"docker.io/library/name:1@{DIGEST}", f"name:1@{DIGEST}", "docker.io", "library/name",
     "1", DIGEST),
    ("a__b-c/d.e", "docker.io/a__b-c/d.e:latest", "a__b-c/d.e:latest", "docker.io", "a__b-c/d.e", "latest", None),
]


@pytest.mark.parametrize("text, full, familiar, registry, repository, tag, digest", NORMALISED)
def test_reference_normalised(text, full, familiar, registry, repository, tag, digest):
    reference = Reference.parse(text)

    assert str(reference) == full
    assert reference.familiar == familiar
    assert reference.registry == registry
    assert reference.repository == repository
    assert reference.tag == tag
    assert reference.digest == digest


@pytest.mark.parametrize("text", ["ubuntu", "user/repo:v1", "localhost:5000/x", f"name@{DIGEST}"])
def test_reference_round_trip(text):
    reference = Reference.parse(text)

    assert Reference.parse(str(reference)) == reference


BAD = [
    ("Ubuntu", "Ubuntu"),
    ("user/Repo", "Repo"),
    ("ubuntu:bad!", "bad!"),
    ("ubuntu:", "ubuntu:"),
    ("ubuntu:-dash", "-dash"),
    ("ubuntu:" + "t" * 129, "t" * 40),
    ("a//b", "a//b"),
    ("-leading", "-leading"),
    ("trailing-", "trailing-"),
    ("two words", "two words"),
    ("ubuntu@sha256:zz", "sha256:zz"),
    ("ubuntu@md5", "md5"),
    ("host:notaport/x", "host:notaport"),
    ("a__b.c/x", "a__b.c"),
]


@pytest.mark.parametrize("text, shown", BAD)
def test_reference_rejected(text, shown):
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse(text)

    assert "invalid reference format" in str(caught.value)
    assert shown in str(caught.value)


def test_reference_empty():
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse("")

    assert "''" in str(caught.value)


def test_reference_sha256_digest_length():
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse("ubuntu@sha256:abc")

    assert "sha256:abc" in str(caught.value)


def test_reference_hex_repository():
    # Docker rejects a 64-digit hex repository name, which reads like an image ID.
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse("a" * 64)

    assert "a" * 64 in str(caught.value)


def test_reference_name_too_long():
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse("x" * 256)

    assert "255" in str(caught.value)


def test_reference_with_tag():
    reference = Reference.parse(f"name:1@{DIGEST}").with_tag("2")

    assert str(reference) == "docker.io/library/name:2"


def test_reference_long_name_with_registry():
    # The limit covers the registry part too: 250 characters of path plus "host:5000/" is over it.
    text = "registry.example:5000/" + "a" * 250

    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse(text)

    assert "over the maximum of 255" in str(caught.value)


def test_reference_name_at_length_limit():
    reference = Reference.parse("a" * 255)

    assert reference.repository == "library/" + "a" * 255


@pytest.mark.parametrize("digest", ["md5:" + "ab" * 16, "sha1:" + "ab" * 20, "blake3:" + "ab" * 32])
def test_reference_unsupported_digest_algorithm(digest):
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse(f"busybox@{digest}")

    message = str(caught.value)
    assert "unsupported digest algorithm" in message
    assert digest.split(":")[0] in message


def test_reference_sha512_digest():
    digest = "sha512:" + "cd" * 64

    assert Reference.parse(f"busybox@{digest}").digest == digest
    with pytest.raises(InvalidArgumentError, match="128 lowercase hex digits"):
        Reference.parse("busybox@sha512:" + "cd" * 32)


@pytest.mark.parametrize("port", ["65536", "99999", "0"])
def test_reference_port_out_of_range(port):
    with pytest.raises(InvalidArgumentError) as caught:
        Reference.parse(f"localhost:{port}/app")

    assert f"port {port}" in str(caught.value)


def test_reference_highest_port():
    assert Reference.parse("localhost:65535/app").registry == "localhost:65535"
