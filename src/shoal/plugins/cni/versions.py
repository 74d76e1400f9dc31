"""The CNI spec versions shoal-cni speaks, and VERSION's answer to the config libcni sends.

A runtime runs VERSION often: Podman 4.3 asks every plugin of every configured network
before each ADD and each DEL, twice per `podman run`. So VERSION is answered without the
json module when the config is the one libcni sends (`{"cniVersion":"X"}`, compact): json
brings re and enum with it, which cost this executable more (about 7 ms on the project's
2-core machine, against 15 ms for the interpreter's start) than all of the rest of the
answer. Any other input goes through json (main.py); tests/unit/test_cni_versions.py holds
the two paths to the same answers."""

from __future__ import annotations

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

_LISTED = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)


def version_result(asked: object) -> dict[str, object]:
    """VERSION's result: the version asked for if shoal-cni speaks it, else the latest."""
    version = asked if asked in SUPPORTED_VERSIONS else LATEST
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def quick_answer(data: bytes) -> str | None:
    """VERSION's result as JSON text (json.dumps's, to the byte), for a config that is
    exactly an object with one cniVersion string of a supported version or an empty input;
    None for anything else (the caller parses it with json)."""
    text = data.strip()
    if not text:
        asked = LATEST
    else:
        asked = ""
        for version in SUPPORTED_VERSIONS:
            for sep in (b":", b": "):
                if text == b'{"cniVersion"' + sep + b'"' + version.encode() + b'"}':
                    asked = version
        if not asked:
            return None
    return f'{{"cniVersion": "{asked}", "supportedVersions": [{_LISTED}]}}'
