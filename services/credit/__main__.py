"""``python -m services.credit``: run the credit service (same as ``ecosphere run credit``)."""

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "credit", *sys.argv[1:]]))
