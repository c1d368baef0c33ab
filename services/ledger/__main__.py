"""``python -m services.ledger``: run the ledger service (same as ``ecosphere run ledger``)."""

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ledger", *sys.argv[1:]]))
