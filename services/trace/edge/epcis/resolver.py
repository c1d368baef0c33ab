"""Where EPCIS webhooks may be delivered: public addresses only (SSRF-safe).

``dest`` must be ``https://`` to a public address: the delivery session's resolver
(:class:`PublicResolver`) refuses private, link-local (cloud metadata), site-local,
shared, reserved, relay anycast and multicast addresses at every connection, so a
subscriber cannot make the gateway call the platform's internal services (DNS
rebinding included). Loopback, and plain ``http://`` to it, only when allowed
(``ecosphere up`` and tests).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp.abc
import aiohttp.resolver

from services.gateway.problems import Problem

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_dest(dest: str, *, loopback_allowed: bool = False) -> None:
    """The syntactic rules for a webhook ``dest`` (addresses are checked on resolving)."""
    try:
        parts = urlsplit(dest)
        host = parts.hostname
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise Problem(422, "bad_dest", f"dest is not a URL: {exc}") from exc
    if not host:
        raise Problem(422, "bad_dest", "dest names no host")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback_allowed
                                   and host in LOOPBACK_HOSTS):
        if literal_address(host) is not None and not address_allowed(
                host, loopback_allowed=loopback_allowed):
            raise Problem(422, "bad_dest", f"dest {host} is not a public address")
        return
    raise Problem(422, "bad_dest", "dest must be an https:// URL" + (
        " (http:// only for loopback hosts)" if loopback_allowed else ""))


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def address_allowed(host: str, *, loopback_allowed: bool) -> bool:
    """Whether a webhook may be delivered to IP address ``host``: a public unicast
    address only — never private, link-local (cloud metadata), site-local, shared
    (CGNAT), reserved, anycast relay or multicast ranges, nor loopback unless allowed
    (local development)."""
    address = literal_address(host)
    if address is None:
        return False
    if address.is_loopback:
        return loopback_allowed
    if isinstance(address, ipaddress.IPv6Address) and any(
            address in net for net in _IPV6_EMBEDDING_IPV4):
        return False  # NAT64, 6to4, IPv4-compatible: an IPv4 address inside (maybe private)
    if any(address in net for net in _NOT_PUBLIC_YET_GLOBAL):
        return False
    return address.is_global and not address.is_multicast


_IPV6_EMBEDDING_IPV4 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16"))
#: ranges Python 3.11's ``is_global`` counts as global that are no public unicast
#: destination: site-local IPv6 (deprecated by RFC 3879, still routed inside some
#: sites), the 6to4 relay anycast (RFC 7526: reaches whichever relay is nearest), the
#: IETF protocol assignments beyond 192.0.0.0/29 (dummy address, PCP and TURN anycast),
#: and ranges newer than 3.11's table: IPv6 documentation (RFC 9637), SRv6 SIDs (RFC 9602)
_NOT_PUBLIC_YET_GLOBAL: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.IPv6Network("fec0::/10"), ipaddress.IPv4Network("192.88.99.0/24"),
    ipaddress.IPv4Network("192.0.0.0/24"), ipaddress.IPv6Network("3fff::/20"),
    ipaddress.IPv6Network("5f00::/16"))


class PublicResolver(aiohttp.abc.AbstractResolver):
    """Resolves webhook hosts, keeping only addresses :func:`address_allowed` accepts.

    It sits in the delivery session's connector, so the address checked is the one
    connected to: a name that resolves to an internal address (now, or after a DNS
    rebinding) is refused at every delivery, not only when the subscription was made.
    """

    def __init__(self, *, loopback_allowed: bool) -> None:
        self.loopback_allowed = loopback_allowed
        self._inner = aiohttp.resolver.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[aiohttp.abc.ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found
                   if address_allowed(r["host"], loopback_allowed=self.loopback_allowed)]
        if not allowed:
            raise OSError(f"{host} resolves to no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


__all__ = ["LOOPBACK_HOSTS", "PublicResolver", "address_allowed", "check_dest",
           "literal_address"]
