"""The image's HEALTHCHECK: is /healthz answering 200 on this container's service port?

A validator serves its admin endpoints on ECOSPHERE_ADMIN_PORT, the gateway on
ECOSPHERE_GATEWAY__PORT; the image does not know which service it runs (that is
the argument), so it asks both on the loopback and is healthy if either answers.
Standard library only: the runtime image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def main() -> int:
    ports = {os.environ.get("ECOSPHERE_GATEWAY__PORT", "8080"),
             os.environ.get("ECOSPHERE_ADMIN_PORT", "9100")}
    return 0 if any(healthy(p) for p in sorted(ports) if p and p != "0") else 1


if __name__ == "__main__":
    sys.exit(main())
