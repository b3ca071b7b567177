"""Which addresses REST and POLL tasks may reach: the decision over the networks of `ROLLWAY_EGRESS_DENY`.

Pure: given the addresses a host resolved to, it says whether a connection may be made and, if not, why. The
I/O (resolving the host, then connecting to exactly the address that was checked) is in `workers/http.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from orchestrator.errors import EndpointError
from orchestrator.settings import Network

VARIABLE = "ROLLWAY_EGRESS_DENY"

Address = IPv4Address | IPv6Address


class EgressDenied(EndpointError):
    """A REST or POLL task's host is, or resolves to, an address in a network `ROLLWAY_EGRESS_DENY` denies."""


def denied_by(address: Address, deny: Sequence[Network]) -> Network | None:
    """The denied network that holds `address`, if any.

    An IPv4 address written as IPv6 (`::ffff:169.254.169.254`) is checked as itself too: a dual-stack socket
    connects to the IPv4 address it maps.
    """
    candidates: list[Address] = [address]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return next((network for network in deny for candidate in candidates if candidate in network), None)


def refusal(host: str, addresses: Iterable[str], deny: Sequence[Network]) -> str | None:
    """Why no connection to `host` may be made, naming the denied address; None when every address is allowed.

    Every address counts, not only the one connected to first: a host that resolves to one allowed and one
    denied address would otherwise reach the denied one whenever the allowed one does not answer.
    """
    for text in addresses:
        try:
            address = ip_address(text)
        except ValueError:
            # getaddrinfo answers addresses; anything else is not something this check can vouch for.
            return f"{host} resolves to {text!r}, which is not an IP address"
        network = denied_by(address, deny)
        if network is None:
            continue
        named = str(address) if str(address) == host.strip("[]") else f"{host} resolves to {address}, which"
        return f"{named} is denied by {VARIABLE} ({network})"
    return None
