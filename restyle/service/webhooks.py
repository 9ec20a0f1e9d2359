"""Webhooks: a job (or a batch) that names a URL is told when it ends, signed as the Standard Webhooks spec says.

The message is the spec's envelope ``{"type": "job.succeeded", "timestamp": ISO 8601, "data": {...}}``,
sent as a POST with ``webhook-id`` (one per event: a retry or a replay carries the same, so a
receiver drops what it has seen), ``webhook-timestamp`` (Unix seconds, per attempt) and
``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")). Each tenant
has its own secret (``whsec_`` + base64), derived from the service's link-signing key and the
tenant's name: no table holds it, and ``GET /api/webhook-secret`` shows a tenant its own.

:func:`notify` announces an end: the message goes to the outbox as an object and, when a URL is
named, to a delivery kept in the system store until the notifier (:mod:`.notifier`, in ``restyle
serve``) has made it. Deliveries never block a job: a worker only records the job's end.

Where a webhook may go is checked at the door (:func:`check_url`) and again at each attempt
(:func:`target`): http or https, no credentials in the URL, and a host whose addresses are all
public, unless the admin lists hosts (``webhook_allowed_hosts``): then those alone, internal ones
included. An attempt connects to the address it checked, so a name that resolves differently a
moment later (DNS rebinding) cannot turn a delivery inward; redirects are not followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel

from restyle import __version__
from restyle.config import Settings
from restyle.errors import Invalid
from restyle.service import keys
from restyle.service.context import Context
from restyle.stores.jobs import Job, JobState

MAX_URL_LENGTH = 2000
SECRET_PREFIX = "whsec_"
_DERIVATION = b"restyle webhook secret v1\x00"  # changing it changes every tenant's secret
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
EVENT_TYPES = {JobState.SUCCEEDED: "job.succeeded", JobState.CANCELLED: "job.cancelled"}  # failed and dead: failed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- where a webhook may go ----------------------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    """``webhook_allowed_hosts`` read: names, ``*.domain`` suffixes, and IP addresses or networks."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def names_host(self, host: str) -> bool:
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def permits(self, host: str, address: Address) -> bool:
        """A listed host (by name, or its address in a listed network) whatever its address; with no list, any
        host whose address is public."""
        if self.restricted:
            return self.names_host(host) or any(address in network for network in self.networks)
        return is_public(address)


@lru_cache(maxsize=8)
def host_policy(allowed: str) -> HostPolicy:
    names, suffixes, networks = set(), [], []
    for entry in filter(None, (e.strip().lower().rstrip(".") for e in allowed.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                names.add(entry)
    return HostPolicy(frozenset(names), tuple(suffixes), tuple(networks))


def is_public(address: Address) -> bool:
    """Reachable on the internet: not loopback, private, link-local, multicast, reserved or unspecified
    (an IPv4 address mapped into IPv6 counts as itself)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_link_local)


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: the checked address, with the name for the Host header and TLS."""

    parts: SplitResult
    host: str  # the name in the URL (ASCII), for Host and for the certificate's check
    address: Address

    @property
    def connect_url(self) -> str:
        address = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        port = f":{self.parts.port}" if self.parts.port else ""
        query = f"?{self.parts.query}" if self.parts.query else ""
        return f"{self.parts.scheme}://{address}{port}{self.parts.path or '/'}{query}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.parts.port}" if self.parts.port else host


def check_url(url: Any, settings: Settings) -> str:
    """The webhook URL a door received, as it is stored; :class:`Invalid` with the reason when it may not be used."""
    if not isinstance(url, str):
        raise Invalid("webhook must be a URL (text), e.g. https://hooks.example.com/restyle")
    url = url.strip()
    if not url:
        raise Invalid("webhook must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise Invalid(f"webhook URL is over {MAX_URL_LENGTH} characters")
    if _UNSAFE.search(url):
        raise Invalid("webhook URL must not hold spaces or control characters")
    try:
        target(url, settings)
    except OSError as exc:  # at the door, a name that does not resolve is a typo to fix now
        raise Invalid(str(exc)) from None
    return url


def target(url: str, settings: Settings) -> Target:
    """Where a delivery to ``url`` connects: the first address of its host that the host policy permits.
    :class:`Invalid` when the URL or its host is refused; :class:`OSError` when the name does not resolve."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise Invalid(f"webhook is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Invalid(f"webhook must be an http:// or https:// URL, not {parts.scheme[:20] or 'a bare name'}")
    if parts.username is not None or parts.password is not None:
        raise Invalid("webhook URL must not carry credentials (user:password@): each delivery is signed instead")
    if not parts.hostname:
        raise Invalid("webhook URL has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii").rstrip(".")
    except UnicodeError:
        raise Invalid(f"webhook host {parts.hostname[:80]!r} is not a valid host name") from None
    policy = host_policy(settings.webhook_allowed_hosts)
    addresses = _addresses(host, port)
    for address in addresses:
        if policy.permits(host, address):
            return Target(parts, host, address)
    where = "" if _literal(host) else f" ({addresses[0]})"
    if policy.restricted:
        raise Invalid(f"webhook host {host}{where} is not among the hosts this service allows")
    raise Invalid(
        f"webhook host {host}{where} is an internal address: webhooks go to public hosts "
        "unless an admin allows the host (RESTYLE_WEBHOOK_ALLOWED_HOSTS)"
    )


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _addresses(host: str, port: int) -> list[Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"webhook host {host} does not resolve ({exc})") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in found]


def shown(url: str) -> str:
    """A webhook URL as logs show it: no query string (it may carry a receiver's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


# -- what is sent --------------------------------------------------------------------------------


def tenant_secret(context: Context, owner: str) -> str:
    """``owner``'s signing secret, ``whsec_`` + base64: derived from the link-signing key (home/link.secret),
    so a new key gives every tenant a new secret."""
    derived = hmac.new(context.link_secret.encode(), _DERIVATION + owner.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(derived).decode()


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_summary(job: Job) -> dict[str, Any]:
    """What a job's end says: the ``data`` of its message and of its outbox summary."""
    figures = job.figures or {}
    return {
        "job": job.id,
        "state": str(job.state),
        "reason": job.reason,
        "input": keys.shown_name(job.input_key),  # as the API shows it: an upload's name without its prefix
        "output": job.output_key,
        "label": job.params.label if job.params else None,
        "frames": figures.get("frames", job.frames_done),
        "seconds": figures.get("seconds"),
        "attempts": job.attempts,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
    }


def event_type(state: JobState) -> str:
    return EVENT_TYPES.get(state, "job.failed")


class Delivery(BaseModel):
    """A message on its way to a webhook, as the system store keeps it until it lands or is given up on."""

    id: str  # webhook-id: the same on every attempt
    owner: str  # whose secret signs it
    url: str
    type: str
    body: str  # sent as it is, byte for byte, on every attempt
    log: str | None = None  # the job whose log records each attempt
    attempts: int = 0
    created_at: float
    next_at: float = 0.0
    last: str | None = None  # the last attempt's status or error


def notify(
    context: Context,
    owner: str,
    event: str,
    summary: dict[str, Any],
    webhook: str | None,
    *,
    log: str | None = None,
    key: str | None = None,
    message_id: str | None = None,
) -> Delivery | None:
    """Announce an end, from any process: the message goes to the data store at ``key`` (when given) and, when
    ``webhook`` names a URL, to a delivery that ``restyle serve``'s notifier makes, tried again while the receiver
    is down. ``log``: a job whose log records each attempt. ``message_id``: the ``webhook-id``, the same for one
    event however often it is announced (so a receiver drops a replay); a fresh one if None.
    Returns the delivery, or None without a webhook."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"type": event, "timestamp": iso(time.time()), "data": summary}, default=str)
    delivery = None
    if webhook:
        delivery = Delivery(
            id=message_id, owner=owner, url=webhook, type=event, body=body, log=log, created_at=time.time()
        )
        save(context, delivery)
    if key:  # last: for a job, the summary says its end was announced (and its delivery recorded)
        context.data.put_bytes(body.encode(), key)
    return delivery


def save(context: Context, delivery: Delivery, key: str | None = None) -> None:
    context.system.put_bytes(delivery.model_dump_json().encode(), key or keys.webhook_pending(delivery.id))


def send(context: Context, delivery: Delivery) -> int:
    """One attempt: the body, signed now, POSTed to the checked address; the receiver's status (redirects are
    answers, not followed). Raises :class:`Invalid` (refused: no retry), OSError or httpx.HTTPError (retried)."""
    import httpx
    from standardwebhooks import Webhook

    settings = context.settings
    where = target(delivery.url, settings)
    now = datetime.now(UTC)
    headers = {
        "webhook-id": delivery.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(tenant_secret(context, delivery.owner)).sign(delivery.id, now, delivery.body),
        "content-type": "application/json",
        "user-agent": f"restyle/{__version__}",
        "host": where.host_header,
    }
    timeout = httpx.Timeout(settings.webhook_read_seconds, connect=settings.webhook_connect_seconds)
    extensions = {"sni_hostname": where.host} if where.parts.scheme == "https" else {}
    with (
        httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream(
            "POST", where.connect_url, content=delivery.body.encode(), headers=headers, extensions=extensions
        ) as response,
    ):
        return response.status_code  # the body is not read: a receiver's answer is its status
