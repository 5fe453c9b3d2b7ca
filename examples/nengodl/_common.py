"""What the NengoDL tutorial twins in this folder share: their command line (a
folder for plots, ``--quick`` for the test suite) and saving plots to files.

The twins run as scripts (``python examples/nengodl/lmu.py``), which puts this
folder first on ``sys.path``: that is how their ``from _common import ...`` finds
this module from any working directory.
"""

import argparse
import warnings
from pathlib import Path

import matplotlib

# plots only go to files; the switch also holds where a twin imported pyplot
# before this module, as long as no figure exists yet
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def setup(doc, dpi=80):
    """Parse a twin's command line; return its arguments and its ``save``.

    ``doc`` is the twin's docstring, whose first line ``--help`` shows. The
    arguments' ``out`` is the plot folder as a ``Path``, made if missing, and
    ``quick`` asks for less training. ``save(name)`` writes the current figure
    to ``out / name`` at ``dpi``, closes all figures and says where it went.
    """
    # the twins print their results; nengo's and torch's warnings would bury them
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("out", nargs="?", default="outputs/nengodl", help="folder for plots")
    parser.add_argument("--quick", action="store_true", help="less training, for tests")
    args = parser.parse_args()
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)

    def save(name):
        plt.savefig(args.out / name, dpi=dpi, bbox_inches="tight")
        plt.close("all")
        print(f"saved {args.out / name}")

    return args, save
