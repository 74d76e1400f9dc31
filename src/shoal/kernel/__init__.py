"""Adapters to the kernel: rtnetlink sockets, namespaces and mounts."""
