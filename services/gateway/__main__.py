"""``python -m services.gateway``: run the gateway service (same as ``ecosphere run gateway``)."""

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "gateway", *sys.argv[1:]]))
