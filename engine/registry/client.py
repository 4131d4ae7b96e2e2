"""An HTTP client for one registry's distribution API, with its auth handshake.

After a 401, the client reads the `WWW-Authenticate` challenge and sends
the request once more with an Authorization header. For a `Bearer`
challenge it sends the stored credentials (if any) to the token server
named in `realm` and uses the token that server returns. For a `Basic`
challenge it sends the credentials themselves. Tokens are cached per
set of scopes for the life of the client. Redirects (blob downloads served
from object storage) are followed, and the Authorization header is dropped
when a redirect leaves the registry's host.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field

from layerlab.engine.errors import LayerlabError, NotFoundError
from layerlab.engine.registry.credentials import Credentials, get_credentials
from layerlab.engine.registry.hosts import allows_plain_http, api_host, tls_context

log = logging.getLogger(__name__)

TIMEOUT = 60
MAX_REDIRECTS = 5
USER_AGENT = "layerlab"


class RegistryError(LayerlabError):
    """A registry that cannot be reached or that returned an error."""


class CertificateError(RegistryError):
    """A registry whose TLS certificate is not trusted: never a reason to fall back to plain HTTP."""


class AuthenticationError(RegistryError):
    """Credentials that the registry or its token server rejected, or none where some are needed."""


@dataclass
class Challenge:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge:
    """Parse `Bearer realm="...",service="...",scope="..."` (or `Basic realm="..."`)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', rest)}
    for key, value in re.findall(r'(\w+)=([^",\s]+)', rest):
        params.setdefault(key.lower(), value)
    return Challenge(scheme.lower(), params)


def error_message(status: int, body: bytes) -> str:
    """Return the registry's error text from its `{"errors": [...]}` body, else the status."""
    try:
        errors = json.loads(body).get("errors") or []
        texts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
        if texts:
            return "; ".join(texts)
    except (ValueError, AttributeError):
        pass
    return f"HTTP {status} {http.client.responses.get(status, '')}".strip()


class RegistryClient:
    """Requests to one registry, authenticated as its challenges ask."""

    def __init__(self, registry: str, *, root: str | None = None, credentials: Credentials | None = None,
                 use_stored_credentials: bool = True):
        self.registry = registry
        self.host = api_host(registry)
        self.root = root
        self._credentials = credentials
        self._use_stored = use_stored_credentials and credentials is None
        self._scheme: str | None = None
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._scopes: set[str] = set()
        self._authorization: str | None = None

    # Public surface

    def add_scope(self, name: str, actions: str, kind: str = "repository") -> None:
        """Ask for `actions` ("pull", "pull,push", "*") on `kind:name` in the next token request."""
        scope = f"{kind}:{name}:{actions}"
        if scope not in self._scopes:
            self._scopes.add(scope)
            # A token for fewer scopes would fail the new request, so ask again.
            if self._authorization and self._authorization.startswith("Bearer "):
                self._authorization = None

    @property
    def base_url(self) -> str:
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def request(self, method: str, path: str, *, headers: dict | None = None, body=None,
                expect: tuple[int, ...] = (200,), allow_missing: bool = False) -> http.client.HTTPResponse | None:
        """Send a request to the registry; return the response, whose status is in `expect`.

        A 404 returns None when `allow_missing`, else raises NotFoundError.
        """
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        response = self._send_authenticated(method, url, headers or {}, body)
        if response.status in expect:
            return response
        content = response.read()
        if response.status == 404 and allow_missing:
            return None
        message = error_message(response.status, content)
        if response.status == 404:
            raise NotFoundError(f"{method} {_display(url)} on {self.registry}: {message}")
        if response.status in (401, 403):
            raise AuthenticationError(
                f"{self.registry} denied {method} {_display(url)}: {message}: run `layerlab login {self.registry}`"
            )
        raise RegistryError(f"{method} {_display(url)} on {self.registry} failed: {message}")

    def check_login(self) -> None:
        """Send `GET /v2/`, authenticating as asked; raise AuthenticationError if the credentials fail."""
        response = self.request("GET", "/v2/", expect=(200,))
        response.read()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # Auth

    def _credentials_for_auth(self) -> Credentials | None:
        if self._credentials is None and self._use_stored:
            self._credentials = get_credentials(self.registry)
            self._use_stored = False
        return self._credentials

    def _send_authenticated(self, method, url, headers, body):
        headers = dict(headers)
        if self._authorization and _same_host(url, self.host):
            headers["Authorization"] = self._authorization
        response = self._send(method, url, headers, body)
        if response.status != 401:
            return response

        challenge_header = response.getheader("WWW-Authenticate", "")
        response.read()
        if not challenge_header:
            raise AuthenticationError(f"{self.registry} returned 401 without a WWW-Authenticate challenge")
        self._authorization = self._answer(parse_challenge(challenge_header))
        headers["Authorization"] = self._authorization
        if hasattr(body, "seek"):
            body.seek(0)
        return self._send(method, url, headers, body)

    def _answer(self, challenge: Challenge) -> str:
        credentials = self._credentials_for_auth()
        if challenge.scheme == "basic":
            if credentials is None:
                raise AuthenticationError(
                    f"{self.registry} requires a user name and password: run `layerlab login {self.registry}`"
                )
            return "Basic " + _basic(credentials)
        if challenge.scheme == "bearer":
            return "Bearer " + self._fetch_token(challenge, credentials)
        raise AuthenticationError(f"{self.registry} asks for unsupported authentication {challenge.scheme!r}")

    def _fetch_token(self, challenge: Challenge, credentials: Credentials | None) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthenticationError(f"{self.registry} sent a Bearer challenge without a realm")
        scopes = set(self._scopes)
        if challenge.params.get("scope"):
            scopes.update(challenge.params["scope"].split(" "))
        query = [("service", challenge.params["service"])] if challenge.params.get("service") else []
        query += [("scope", scope) for scope in sorted(scopes)]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)

        headers = {}
        if credentials is not None:
            headers["Authorization"] = "Basic " + _basic(credentials)
        response = self._send("GET", url, headers, None)
        content = response.read()
        if response.status in (401, 403):
            raise AuthenticationError(
                f"the token server for {self.registry} rejected the credentials: run `layerlab login {self.registry}`"
            )
        if response.status != 200:
            raise AuthenticationError(
                f"the token server for {self.registry} failed: {error_message(response.status, content)}"
            )
        try:
            answer = json.loads(content)
            return answer.get("token") or answer["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise AuthenticationError(f"the token server for {self.registry} returned no token") from None

    # Transport

    def _probe_scheme(self) -> str:
        if not allows_plain_http(self.host, self.root):
            return "https"
        # Docker tries HTTPS first for insecure registries too, and falls back to HTTP.
        try:
            response = self._send("GET", f"https://{self.host}/v2/", {}, None)
            response.read()
            return "https"
        except CertificateError:
            raise
        except RegistryError as error:
            log.debug("HTTPS to %s failed (%s), using plain HTTP", self.host, error)
            self._drop_connection("https", self.host)
            return "http"

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        connection = self._connections.get(key)
        if connection is None:
            if scheme == "https":
                connection = http.client.HTTPSConnection(netloc, timeout=TIMEOUT,
                                                         context=tls_context(netloc, self.root))
            elif allows_plain_http(netloc, self.root):
                connection = http.client.HTTPConnection(netloc, timeout=TIMEOUT)
            else:
                raise RegistryError(
                    f"refusing plain HTTP to {netloc}: add it to LAYERLAB_INSECURE_REGISTRIES if it has no TLS"
                )
            self._connections[key] = connection
        return connection

    def _drop_connection(self, scheme: str, netloc: str) -> None:
        connection = self._connections.pop((scheme, netloc), None)
        if connection is not None:
            connection.close()

    def _send(self, method, url, headers, body) -> http.client.HTTPResponse:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"User-Agent": USER_AGENT, **headers}
            response = self._send_once(method, parts.scheme, parts.netloc, target, headers, body)
            if response.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return response
            response.read()
            url = urllib.parse.urljoin(url, response.getheader("Location", ""))
            if not _same_host(url, self.host):
                headers.pop("Authorization", None)
        raise RegistryError(f"{method} {_display(url)}: more than {MAX_REDIRECTS} redirects")

    def _send_once(self, method, scheme, netloc, target, headers, body):
        for attempt in (1, 2):
            connection = self._connection(scheme, netloc)
            try:
                connection.request(method, target, body=body, headers=headers)
                return connection.getresponse()
            except ssl.SSLCertVerificationError as error:
                self._drop_connection(scheme, netloc)
                raise CertificateError(
                    f"TLS certificate of {netloc} is not trusted ({error.verify_message}): put its CA in "
                    f"/etc/docker/certs.d/{netloc}/ca.crt or $LAYERLAB_ROOT/certs.d/{netloc}/ca.crt"
                ) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                # A kept-alive connection that the server closed: reconnect once if the body can be sent again.
                self._drop_connection(scheme, netloc)
                if attempt == 2 or (body is not None and not hasattr(body, "seek") and not isinstance(body, bytes)):
                    raise RegistryError(f"{method} {scheme}://{netloc}{target}: connection lost: {error}") from None
                if hasattr(body, "seek"):
                    body.seek(0)
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection(scheme, netloc)
                raise RegistryError(f"cannot reach {scheme}://{netloc}: {error}") from None
        raise AssertionError("unreachable")


def _basic(credentials: Credentials) -> str:
    return base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def _same_host(url: str, host: str) -> bool:
    return urllib.parse.urlsplit(url).netloc == host


def _display(url: str) -> str:
    """Return the URL without its query, which may carry upload state."""
    return url.split("?", 1)[0]


__all__ = ["RegistryClient", "RegistryError", "AuthenticationError", "CertificateError", "parse_challenge"]
