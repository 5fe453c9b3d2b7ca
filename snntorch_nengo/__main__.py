"""``python -m snntorch_nengo [--build]``: what runs on this machine (`snntorch_nengo.info`)."""

import sys

from .sysinfo import main

if __name__ == "__main__":
    sys.exit(main())
