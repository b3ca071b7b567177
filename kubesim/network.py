"""Address allocation: service cluster IPs (10.96.0.0/12), node ports and pod IPs (10.244.0.0/16)."""

from __future__ import annotations

import ipaddress
import threading

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
NODE_PORTS = range(30000, 32768)
NODE_NAME = "kubesim-node"
NODE_IP = "10.0.0.10"


class AddressPool:
    """Hands out unused addresses of a network in order; released addresses are reused."""

    def __init__(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, first_offset: int = 1):
        self._network = network
        self._next = first_offset
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def allocate(self) -> str:
        """A free address."""
        with self._lock:
            for _ in range(self._network.num_addresses):
                candidate = str(self._network[self._next])
                self._next = self._next + 1 if self._next + 2 < self._network.num_addresses else 1
                if candidate not in self._used:
                    self._used.add(candidate)
                    return candidate
            raise RuntimeError(f"address pool {self._network} is exhausted")

    def reserve(self, address: str) -> bool:
        """Claim a specific address; false if it is taken or outside the network."""
        with self._lock:
            if address in self._used or ipaddress.ip_address(address) not in self._network:
                return False
            self._used.add(address)
            return True

    def release(self, address: str) -> None:
        """Return an address to the pool."""
        with self._lock:
            self._used.discard(address)


class PortPool:
    """Hands out node ports."""

    def __init__(self, ports: range = NODE_PORTS):
        self._ports = ports
        self._used: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> int:
        """A free port."""
        with self._lock:
            for port in self._ports:
                if port not in self._used:
                    self._used.add(port)
                    return port
            raise RuntimeError("node ports are exhausted")

    def release(self, port: int) -> None:
        """Return a port to the pool."""
        with self._lock:
            self._used.discard(port)


class Network:
    """The emulated cluster's address pools."""

    def __init__(self) -> None:
        self.service_ips = AddressPool(SERVICE_CIDR)
        self.pod_ips = AddressPool(POD_CIDR, first_offset=2)
        self.node_ports = PortPool()
