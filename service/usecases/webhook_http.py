"""Sending one delivery over HTTP (httpx): signed with the ``standardwebhooks`` package, to an
address checked first and then pinned, so that a name cannot resolve to a public address for the
check and a private one for the request (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from math import floor
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
import standardwebhooks

from service import __version__
from service.domain.errors import FieldError, InvalidInput
from service.domain.webhooks import ClaimedDelivery, refused_address

_BODY_KEPT = 200  # characters of a failed answer's body kept in last_error


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one request came to: the status (None: no answer), why it failed, whether the
    target is one this service will not call, and the answer's Retry-After."""

    status: int | None
    error: str | None = None
    refused: bool = False
    retry_after: str | None = None


class AddressRefused(Exception):
    pass


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address is itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def public_addresses(host: str, port: int) -> list[str]:
    """``host``'s addresses, all of them public; AddressRefused saying why otherwise."""
    try:
        addresses = resolve(host, port)
    except OSError as error:
        raise AddressRefused(f"{host} does not resolve: {error}") from error
    for address in addresses:
        reason = refused_address(address)
        if reason is not None:
            raise AddressRefused(f"{host}: {reason} (CROSSINGS_WEBHOOK_ALLOW_PRIVATE allows it)")
    return addresses


def check_target(url: str, *, allow_private: bool) -> None:
    """InvalidInput unless the service may send to ``url`` (a subscription being made)."""
    if allow_private:
        return
    parts = urlsplit(url)
    try:
        public_addresses(parts.hostname or "", parts.port or _default_port(parts.scheme))
    except AddressRefused as error:
        raise InvalidInput(
            "the webhook URL is refused", errors=[FieldError("url", str(error))]
        ) from error


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def signed_headers(claimed: ClaimedDelivery, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers: one ``v1,`` signature per active secret (several while a
    secret is rotated out), over ``id.timestamp.body``."""
    d = claimed.delivery
    signatures = " ".join(
        standardwebhooks.Webhook(secret).sign(d.id, now, d.payload) for secret in claimed.secrets
    )
    return {
        "webhook-id": d.id,
        "webhook-timestamp": str(floor(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": f"crossings-webhooks/{__version__}",
    }


class Sender:
    """One httpx client for a worker: no redirects followed (a 3xx is a failed attempt), no
    proxy from the environment, ``timeout_s`` for each of connect, write and read."""

    def __init__(self, *, timeout_s: float, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def send(self, claimed: ClaimedDelivery) -> Attempt:
        if not claimed.secrets:
            return Attempt(None, "the subscription has no active secret", refused=True)
        parts = urlsplit(claimed.url)
        host = parts.hostname or ""
        url, extensions = claimed.url, {}
        if not self.allow_private:
            try:
                address = public_addresses(host, parts.port or _default_port(parts.scheme))[0]
            except AddressRefused as error:
                return Attempt(None, str(error), refused=True)
            url, extensions = _pinned(parts, address), {"sni_hostname": host}
        headers = signed_headers(claimed, datetime.now(UTC))
        headers["host"] = parts.netloc.rpartition("@")[2]
        try:
            with self._client.stream(
                "POST", url, content=claimed.delivery.payload, headers=headers,
                extensions=extensions,
            ) as response:  # fmt: skip
                status, retry_after = response.status_code, response.headers.get("retry-after")
                # Only the start of a failed answer's body is read: a receiver cannot make
                # the worker hold a large one.
                start = b"" if 200 <= status < 300 else _first_bytes(response)
        except httpx.TimeoutException as error:
            return Attempt(None, f"timed out: {type(error).__name__}")
        except httpx.HTTPError as error:
            return Attempt(None, f"{type(error).__name__}: {error}"[:_BODY_KEPT])
        why = None
        if not 200 <= status < 300:
            text = start.decode("utf-8", "replace")[:_BODY_KEPT]
            why = f"the receiver answered {status}: {text}"
        return Attempt(status, why, retry_after=retry_after)


def _first_bytes(response: httpx.Response) -> bytes:
    kept = b""
    for chunk in response.iter_raw():
        kept += chunk
        if len(kept) >= _BODY_KEPT:
            break
    return kept[:_BODY_KEPT]


def _pinned(parts: SplitResult, address: str) -> str:
    """The URL with its host replaced by ``address`` (the Host header and TLS name stay)."""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
