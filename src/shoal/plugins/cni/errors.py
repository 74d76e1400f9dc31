"""The CNI spec's error result: a code, a one-line `msg` and longer `details`."""

from __future__ import annotations

# the spec's well-known codes (0-99 are reserved)
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
# shoal-cni's own (100 and up)
REFUSED = 100  # shoal refused the request: an address or port in use, a network full...
NOT_AS_ADDED = 101  # CHECK: the attachment is missing or differs from what ADD made
UNKNOWN = 999  # anything else (the kernel or the firewall failed): as the reference plugins


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details
        self.version: str | None = None  # the config's cniVersion, once known

    def result(self, version: str) -> dict[str, object]:
        return {"cniVersion": version, "code": self.code, "msg": self.msg,
                "details": self.details}
