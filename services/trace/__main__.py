"""``python -m services.trace``: run the trace service (same as ``ecosphere run trace``)."""

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "trace", *sys.argv[1:]]))
