"""The nftables backend: shoal's tables `ip shoal` and `bridge shoal`, written through
libnftables in this process (one long-lived context, no `nft` process per change), or through
`nft -f -` where the library is missing."""

from __future__ import annotations

import ctypes
import os

from .. import systools
from ..errors import FirewallError
from . import Backend
from . import nftables_rules as render
from .nftables_rules import TABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..rules import Elements

NFT_CTX_OUTPUT_HANDLE = 1 << 3  # libnftables.h


class LibContext:
    """A libnftables context with its output and errors captured."""

    def __init__(self) -> None:
        # SHOAL_LIBNFTABLES names another library file (a system with another soname)
        lib = ctypes.CDLL(os.environ.get("SHOAL_LIBNFTABLES", "libnftables.so.1"),
                          use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def close(self) -> None:
        """Free the context (and its netlink socket)."""
        if self.ctx:
            self.lib.nft_ctx_free(self.ctx)
            self.ctx = None

    def run(self, script: str) -> tuple[int, str, str]:
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, script.encode())
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        return rc, out, err


class Nftables(Backend):
    name = "nftables"

    def __init__(self) -> None:
        self._lib: LibContext | None = None
        self._nft: str | None = None
        try:
            self._lib = LibContext()
        except OSError:
            self._nft = systools.find("nft")  # never through the caller's PATH
            if self._nft is None:
                raise FirewallError(
                    "the nftables backend needs nft or libnftables: apt-get install nftables "
                    "(or choose --firewall-backend iptables)"
                ) from None

    def run(self, script: str, what: str) -> str:
        """Run an nft script; its output, or FirewallError naming `what` failed."""
        if self._lib is not None:
            rc, out, err = self._lib.run(script)
        else:
            assert self._nft is not None
            res = systools.run(self._nft, ["-f", "-"], script)
            rc, out, err = res.returncode, res.stdout, res.stderr
        if rc != 0:
            first = next((line for line in err.splitlines() if "Error" in line), err.strip())
            raise FirewallError(f"nftables refused to {what}: {first}")
        return out

    def apply_full(self, elements: Elements) -> None:
        self.run(render.full(elements), "apply shoal's ruleset")

    def apply_delta(self, added: Elements, removed: Elements,
                    present: Elements | None = None) -> bool:
        if render.needs_full(added, removed):
            return False  # the VXLAN guard turned on or off: its rule is in the skeleton
        if added or removed:
            self.run(render.delta(added, removed, present), "update shoal's ruleset")
        return True

    def remove(self) -> None:
        self.run(render.remove(), "remove shoal's tables")

    def run_with_handles(self, script: str, what: str) -> str:
        """Run a listing with each rule's handle shown (`nft -a`)."""
        if self._lib is None:
            assert self._nft is not None
            res = systools.run(self._nft, ["-a", "-f", "-"], script)
            if res.returncode != 0:
                raise FirewallError(f"nftables refused to {what}: {res.stderr.strip()}")
            return res.stdout
        lib = self._lib
        flags = lib.lib.nft_ctx_output_get_flags(lib.ctx)
        lib.lib.nft_ctx_output_set_flags(lib.ctx, flags | NFT_CTX_OUTPUT_HANDLE)
        try:
            return self.run(script, what)
        finally:
            lib.lib.nft_ctx_output_set_flags(lib.ctx, flags)

    def show(self) -> str:
        out = []
        for family in ("ip", "bridge"):
            try:
                out.append(self.run(f"list table {family} {TABLE}\n", "list shoal's tables"))
            except FirewallError:
                continue
        return "".join(out)
