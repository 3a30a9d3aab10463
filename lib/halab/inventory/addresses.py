"""Address ranges as the MetalLB pool writes them: "a.b.c.d-e.f.g.h" or a CIDR."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError


@dataclass(frozen=True)
class AddressRange:
    first: IPv4Address
    last: IPv4Address

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and self.first <= address <= self.last

    def overlaps(self, other: AddressRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def parse_range(text: str) -> AddressRange:
    """Parse "192.168.1.150-192.168.1.200" or "192.168.1.128/26"."""
    try:
        if "-" in text:
            left, right = (part.strip() for part in text.split("-", 1))
            first, last = IPv4Address(left), IPv4Address(right)
            if last < first:
                raise ValueError(f"range {text!r} ends before it starts")
            return AddressRange(first, last)
        net = IPv4Network(text.strip(), strict=False)
        return AddressRange(net.network_address, net.broadcast_address)
    except (AddressValueError, NetmaskValueError) as exc:
        raise ValueError(
            f"{text!r} is not an address range; write first-last "
            "(192.168.1.150-192.168.1.200) or a CIDR (192.168.1.128/26)"
        ) from exc
