"""Errors shoal reports to its users: each one is a single line naming the problem and the fix."""


class ShoalError(Exception):
    """Base class; the CLI prints str(error) on one line and exits with `exit_code`."""

    exit_code = 1


class InvalidArgument(ShoalError):
    """The user gave a value shoal cannot accept."""

    exit_code = 2


class NotFound(ShoalError):
    """A named network or container does not exist."""


class Conflict(ShoalError):
    """The request clashes with existing state (a duplicate name, an address in use...)."""


class KernelError(ShoalError):
    """The kernel refused an operation; `errno` is the kernel's error number (compare it with
    the `errno` module's names), or None where the kernel gave none."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class FirewallError(ShoalError):
    """A firewall tool or library (nft, libnftables, iptables-restore...) refused shoal's
    rules or is missing."""
