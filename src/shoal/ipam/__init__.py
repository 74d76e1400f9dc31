"""IP address management, in two parts:

- `addresses`: address allocation per network (default pools, subnet choice, static and
  next-free addresses, MACs; `StoreAddresses`, the local allocator);
- `hostports`: host-port allocation for published ports (`HostPorts`: free ports, clashes,
  the sockets that hold them).

`protocol` has the allocators' protocols. The pure functions of `addresses` are re-exported
here (`from shoal import ipam; ipam.parse_subnet(...)`)."""

from .addresses import (
    DEFAULT_POOLS,
    MAX_PREFIX,
    UNUSABLE,
    StoreAddresses,
    allocate,
    candidate_subnets,
    check_static,
    check_usable,
    choose_subnet,
    mac_for,
    network_config,
    parse_address,
    parse_subnet,
)
from .hostports import HostPorts

__all__ = ["DEFAULT_POOLS", "MAX_PREFIX", "UNUSABLE", "HostPorts", "StoreAddresses", "allocate",
           "candidate_subnets", "check_static", "check_usable", "choose_subnet", "mac_for",
           "network_config", "parse_address", "parse_subnet"]
