"""A Docker token server on 127.0.0.1, for docker-registry's `auth: token` mode.

The registry responds to unauthenticated requests with 401 and
`WWW-Authenticate: Bearer realm=...,service=...,scope=...`. The client then
sends `GET /token?service=...&scope=...` here, with Basic credentials or
none, and sends the returned JWT to the registry as `Bearer <token>`.

Distribution 2.8 (registry/auth/token/token.go) checks a token like this.
`iss` must be the configured issuer and `aud` the configured service (one
string). `exp` and `nbf` must be met within 60 s of leeway. The signing
key is taken from the header's `x5c` certificate chain, which must verify
against `rootcertbundle`. A `kid` header would instead need the libtrust
fingerprint of a key from that bundle. Here the chain is one self-signed
certificate, which is also the whole bundle. `access` lists what the token
allows, as `{"type", "name", "actions"}` entries.
"""

import base64
import datetime
import http.server
import json
import logging
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

ISSUER = "layerlab-test-token-issuer"
SERVICE = "layerlab-test-registry"
TOKEN_LIFETIME = 300


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_signing_key(common_name: str = "layerlab test token signer"):
    """Return an RSA key and a self-signed certificate for it, valid for two days."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def parse_scope(scope: str):
    """Split `type:name:actions` into (type, name, [actions]); only the type and the actions exclude colons."""
    resource, _, actions = scope.rpartition(":")
    kind, _, name = resource.partition(":")
    return kind, name, [action for action in actions.split(",") if action]


@dataclass
class TokenRequest:
    """One request that reached the token endpoint: who asked (None when anonymous) and for which scopes."""

    username: str | None
    scopes: list[str]
    status: int = 0


@dataclass
class TokenServer:
    """Issues RS256 JWTs to the users in `users`, each allowed the actions in `grants`.

    `grants` maps a user name (or None for anonymous requests) to a list of
    (repository prefix, actions) pairs. `fault` makes the endpoint misbehave:

    - "garbage": a body that is not JSON
    - "500": HTTP 500
    - "no-token": JSON without a token
    - "number-token": a token that is not a string
    - "anonymous-401": HTTP 401 to any request without credentials
    - "untrusted-key": a token signed by a key whose certificate the registry does not trust
    """

    users: dict[str, str]
    grants: dict[str | None, list[tuple[str, set[str]]]]
    fault: str | None = None
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self):
        self.key, self.certificate = make_signing_key()
        self.untrusted_key, self.untrusted_certificate = make_signing_key("layerlab untrusted token signer")
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def reset(self):
        """Forget the recorded requests and clear `fault`, between tests that share the server."""
        with self._lock:
            self.requests.clear()
            self.fault = None

    def registry_config(self, bundle_path) -> str:
        """Return the `auth:` section of a docker-registry config.yml that trusts this server."""
        return (
            "auth:\n"
            "  token:\n"
            f"    realm: {self.realm}\n"
            f"    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n"
            f"    rootcertbundle: {bundle_path}\n"
        )

    # Tokens

    def granted_actions(self, username: str | None, kind: str, name: str, requested: list[str]) -> list[str]:
        if kind != "repository":
            return []
        allowed = set()
        for prefix, actions in self.grants.get(username, []):
            if name.startswith(prefix):
                allowed |= actions
        return [action for action in requested if action in allowed or "*" in allowed]

    def issue(self, username: str | None, scopes: list[str], *, trusted: bool = True) -> str:
        access = []
        for scope in scopes:
            kind, name, requested = parse_scope(scope)
            actions = self.granted_actions(username, kind, name, requested)
            if actions:
                access.append({"type": kind, "name": name, "actions": actions})
        key, certificate = (self.key, self.certificate) if trusted else (self.untrusted_key, self.untrusted_certificate)
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": username or "",
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{base64url(json.dumps(header).encode())}.{base64url(json.dumps(claims).encode())}"
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{base64url(signature)}"

    # HTTP

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                log.debug("token server: " + format, *args)

            def do_GET(self):
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != "/token":
                    return self.reply(404, {"details": "not found"})
                query = urllib.parse.parse_qs(parts.query)
                username, password = self.basic_credentials()
                record = TokenRequest(username, query.get("scope", []))
                with server._lock:
                    server.requests.append(record)
                record.status = self.answer(username, password, query, record.scopes)

            def basic_credentials(self):
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None, None
                try:
                    username, _, password = base64.b64decode(header[len("Basic "):]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return "", ""
                return username, password

            def answer(self, username, password, query, scopes) -> int:
                if username is not None and server.users.get(username) != password:
                    return self.reply(401, {"details": "incorrect username or password"})
                if server.fault == "anonymous-401" and username is None:
                    return self.reply(401, {"details": "a login is required"})
                if server.fault == "500":
                    return self.reply(500, {"details": "token signer unavailable"})
                if server.fault == "garbage":
                    return self.reply(200, b"<html>not a token</html>")
                if server.fault == "no-token":
                    return self.reply(200, {"expires_in": TOKEN_LIFETIME})
                if server.fault == "number-token":
                    return self.reply(200, {"token": 12345})
                if query.get("service") != [SERVICE]:
                    return self.reply(400, {"details": f"unknown service {query.get('service')}"})
                token = server.issue(username, scopes, trusted=server.fault != "untrusted-key")
                return self.reply(200, {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME,
                                        "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()})

            def reply(self, status, body) -> int:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return status

        return Handler
