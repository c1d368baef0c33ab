"""Where EPCIS webhooks may be delivered (services.trace.edge.epcis.resolver): public
unicast addresses only, whatever the Python version's ``is_global`` says."""

from __future__ import annotations

import pytest

from services.gateway.problems import Problem
from services.trace.edge.epcis.resolver import address_allowed, check_dest

#: refused before this review, and still refused
REFUSED = ["0.0.0.0", "10.0.0.5", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.0.1",
           "192.0.0.1", "192.0.2.1", "192.168.1.1", "198.18.0.1", "224.0.0.1", "240.0.0.1",
           "255.255.255.255", "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
           "::10.0.0.1", "64:ff9b::a00:1", "64:ff9b:1::a00:1", "2001::1", "2001:db8::1",
           "2002:a00:1::1", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "ff02::1"]
#: counted as global by Python 3.11's ``is_global``: found in review (site-local IPv6,
#: the 6to4 relay anycast), and alike (IETF protocol assignments, ranges newer than 3.11)
GLOBAL_YET_NOT_PUBLIC = ["fec0::1", "fec0:1:2::3", "feff:ffff::1", "192.88.99.1",
                         "192.88.99.255", "192.0.0.8", "192.0.0.9", "192.0.0.10", "3fff::1",
                         "5f00::1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "192.88.98.1", "192.88.100.1", "2606:4700:4700::1111",
          "2a00:1450:4001::1", "fe00::1"]


@pytest.mark.parametrize("address", REFUSED + GLOBAL_YET_NOT_PUBLIC)
def test_internal_special_and_relay_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address, loopback_allowed=False)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(Problem) as refused:
        check_dest(f"https://{host}/hook")
    assert refused.value.status == 422 and refused.value.code == "bad_dest"


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address, loopback_allowed=False)
    check_dest(f"https://{f'[{address}]' if ':' in address else address}/hook")


def test_loopback_only_when_allowed() -> None:
    assert address_allowed("127.0.0.1", loopback_allowed=True)
    assert address_allowed("::1", loopback_allowed=True)
    assert not address_allowed("fec0::1", loopback_allowed=True)
    assert not address_allowed("192.88.99.1", loopback_allowed=True)
