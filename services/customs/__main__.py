"""``python -m services.customs``: run the customs service (same as ``ecosphere run customs``)."""

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "customs", *sys.argv[1:]]))
