"""An HTTP client for one registry's distribution API, with its auth handshake.

After a 401, the client reads the `WWW-Authenticate` challenge and sends
the request once more with an Authorization header. For a `Bearer`
challenge it sends the stored credentials (if any) to the token server
named in `realm` and uses the token that server returns. For a `Basic`
challenge it sends the credentials themselves. The client keeps one
token for the union of the scopes requested so far (its own and those the
registry's challenges name), with the actions of one resource merged, so
every later request reuses it. A new scope or action drops that token, and
the next request fetches one that covers everything. Redirects (blob downloads served
from object storage) are followed, and the Authorization header is dropped
when a redirect leaves the registry's host.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field

from layerlab.engine.errors import InvalidArgumentError, LayerlabError, NotFoundError
from layerlab.engine.registry.credentials import Credentials, get_credentials
from layerlab.engine.registry.hosts import allows_plain_http, api_host, insecure_hint, tls_context

log = logging.getLogger(__name__)

# Seconds that one socket operation (connect, TLS handshake, a read) may wait, as Docker's 30 s dial timeout.
DEFAULT_TIMEOUT = 30.0
TIMEOUT_VARIABLE = "LAYERLAB_REGISTRY_TIMEOUT"
MAX_REDIRECTS = 5
USER_AGENT = "layerlab"


class RegistryError(LayerlabError):
    """A registry that cannot be reached or that returned an error."""


class CertificateError(RegistryError):
    """A registry whose TLS certificate is not trusted: never a reason to fall back to plain HTTP."""


class AuthenticationError(RegistryError):
    """Credentials that the registry or its token server rejected, or none where some are needed."""


class UnreachableError(RegistryError):
    """A registry whose host could not be resolved, connected to, or that did not respond in time."""


def registry_timeout() -> float:
    """Return the socket timeout in seconds: `LAYERLAB_REGISTRY_TIMEOUT`, else `DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise InvalidArgumentError(
            f"invalid {TIMEOUT_VARIABLE} {text!r}: expected a number of seconds from 0.1 to 3600, such as 30"
        )
    return seconds


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
                 use_stored_credentials: bool = True, checking_login: bool = False):
        self.registry = registry
        self.host = api_host(registry)
        self.root = root
        self._credentials = credentials
        # `login` checks the credentials as typed, so a rejection must not suggest running it again.
        self._checking_login = checking_login
        self._use_stored = use_stored_credentials and credentials is None
        self._timeout = registry_timeout()
        self._scheme: str | None = None
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        # (type, name) -> actions, for example ("repository", "lab/app") -> {"pull", "push"}.
        self._scopes: dict[tuple[str, str], set[str]] = {}
        self._authorization: str | None = None

    # Public surface

    def add_scope(self, name: str, actions: str, kind: str = "repository") -> None:
        """Ask for `actions` ("pull", "pull,push", "*") on `kind:name` in the next token request."""
        if self._merge_scope(kind, name, actions.split(",")):
            # A token for fewer scopes would fail the new request, so ask again.
            if self._authorization and self._authorization.startswith("Bearer "):
                self._authorization = None

    def _merge_scope(self, kind: str, name: str, actions) -> bool:
        """Add actions on one resource to the token's scopes; return whether any was new."""
        granted = self._scopes.setdefault((kind, name), set())
        new = set(actions) - granted
        granted.update(new)
        return bool(new)

    def _scope_params(self) -> list[str]:
        return [f"{kind}:{name}:{','.join(sorted(actions))}" for (kind, name), actions in sorted(self._scopes.items())]

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
            raise AuthenticationError(self._denial(method, url, response, message))
        raise RegistryError(f"{method} {_display(url)} on {self.registry} failed: {message}")

    def _denial(self, method: str, url: str, response, message: str) -> str:
        """Return the error message for a 401 or 403 that remained after the retry with fresh credentials."""
        challenge = parse_challenge(response.getheader("WWW-Authenticate", ""))
        scopes = [_parse_scope(scope) for scope in challenge.params.get("scope", "").split()]
        if challenge.params.get("error") == "insufficient_scope" and scopes:
            # A token was issued but lacks an action, as token servers grant only what the user may do.
            holder = f"user {self._credentials.username!r}" if self._credentials else "anonymous access"
            needed = " ".join(f"{kind}:{name}:{','.join(sorted(actions))}" for kind, name, actions in scopes)
            message = f"the token server did not grant {holder} {needed}"
        return f"{self.registry} denied {method} {_display(url)}: {message}: {self._login_hint()}"

    def _login_hint(self) -> str:
        if self._checking_login:
            return "check the user name and password"
        return f"run `layerlab login {self.registry}`"

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
        realm_parts = urllib.parse.urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.netloc:
            raise AuthenticationError(f"{self.registry} sent a Bearer challenge whose realm {realm!r} is not an HTTP URL")
        # The challenge names what the failed request needs, "type:name:actions" with
        # several scopes separated by spaces. Keeping it means later requests reuse the token.
        for kind, name, actions in map(_parse_scope, challenge.params.get("scope", "").split()):
            if kind and name and actions:
                self._merge_scope(kind, name, actions)
        query = [("service", challenge.params["service"])] if challenge.params.get("service") else []
        query += [("scope", scope) for scope in self._scope_params()]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)

        headers = {}
        if credentials is not None:
            headers["Authorization"] = "Basic " + _basic(credentials)
        response = self._send("GET", url, headers, None)
        content = response.read()
        log.debug("token server %s for %s returned HTTP %d", _display(url), self.registry, response.status)
        if response.status in (401, 403) and credentials is None:
            raise AuthenticationError(
                f"the token server for {self.registry} requires a login: run `layerlab login {self.registry}`"
            )
        if response.status in (401, 403):
            raise AuthenticationError(
                f"the token server for {self.registry} rejected the credentials of {credentials.username!r}: "
                f"{self._login_hint()}"
            )
        if response.status != 200:
            raise AuthenticationError(
                f"the token server {_display(url)} for {self.registry} failed: {error_message(response.status, content)}"
            )
        return self._token_from(content, url)

    def _token_from(self, content: bytes, url: str) -> str:
        """Return the token from a token server's JSON reply (`token`, else OAuth2's `access_token`)."""
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            # Only the size is shown: a broken reply may still hold part of a token.
            problem = f"the reply ({len(content)} bytes) is not a JSON object"
            token = None
        else:
            token = answer.get("token") or answer.get("access_token")
            token = token.strip() if isinstance(token, str) else None
            problem = "the reply has no \"token\" or \"access_token\" string"
        # The token goes into an HTTP header, so it must be visible ASCII with no spaces.
        if token is not None and not re.fullmatch(r"[\x21-\x7e]+", token):
            problem = "the token contains spaces or characters that cannot go in an HTTP header"
            token = None
        if token is None:
            raise AuthenticationError(f"the token server {_display(url)} for {self.registry} returned no usable token: {problem}")
        return token

    # Transport

    def _probe_scheme(self) -> str:
        if not allows_plain_http(self.host, self.root):
            return "https"
        # Docker tries HTTPS first for insecure registries too, and falls back to HTTP.
        try:
            response = self._send("GET", f"https://{self.host}/v2/", {}, None)
            response.read()
            return "https"
        except (CertificateError, UnreachableError):
            # A registry that does not respond over HTTPS in time would not respond over plain HTTP either.
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
                connection = http.client.HTTPSConnection(netloc, timeout=self._timeout,
                                                         context=tls_context(netloc, self.root))
            elif allows_plain_http(netloc, self.root):
                connection = http.client.HTTPConnection(netloc, timeout=self._timeout)
            else:
                raise RegistryError(f"refusing plain HTTP to {netloc}: {insecure_hint(netloc, self.root)}")
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
            except ssl.SSLError as error:
                self._drop_connection(scheme, netloc)
                if error.reason == "WRONG_VERSION_NUMBER":
                    # The usual reply of a plain-HTTP server to a TLS handshake.
                    raise RegistryError(
                        f"{netloc} does not speak HTTPS (TLS failed with WRONG_VERSION_NUMBER): if it serves "
                        f"plain HTTP, {insecure_hint(netloc, self.root)}"
                    ) from None
                raise RegistryError(f"TLS connection to {netloc} failed: {error}") from None
            except TimeoutError:
                self._drop_connection(scheme, netloc)
                raise UnreachableError(
                    f"{scheme}://{netloc} did not respond to {method} {_display(target)} within {self._timeout:g} s: "
                    f"check that a registry runs there, or set {TIMEOUT_VARIABLE} to wait longer"
                ) from None
            except OSError as error:
                self._drop_connection(scheme, netloc)
                raise UnreachableError(f"cannot reach {scheme}://{netloc}: {error}") from None
            except http.client.HTTPException as error:
                self._drop_connection(scheme, netloc)
                raise RegistryError(f"cannot reach {scheme}://{netloc}: {error}") from None
        raise AssertionError("unreachable")


def _parse_scope(scope: str) -> tuple[str, str, list[str]]:
    """Split a token scope, `type:name:actions` (`repository:lab/app:pull,push`), into its parts."""
    resource, _, actions = scope.rpartition(":")
    kind, _, name = resource.partition(":")
    return kind, name, [action for action in actions.split(",") if action]


def _basic(credentials: Credentials) -> str:
    return base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def _same_host(url: str, host: str) -> bool:
    return urllib.parse.urlsplit(url).netloc == host


def _display(url: str) -> str:
    """Return the URL without its query, which may carry upload state."""
    return url.split("?", 1)[0]


__all__ = ["RegistryClient", "RegistryError", "AuthenticationError", "CertificateError", "UnreachableError",
           "parse_challenge", "registry_timeout"]
