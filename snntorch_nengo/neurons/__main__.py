"""``python -m snntorch_nengo.neurons --header``: print csrc/neuron_specs.h.

The header is generated from the spec table (`snntorch_nengo.neurons.specs`);
regenerate it after changing the table::

    python -m snntorch_nengo.neurons --header > csrc/neuron_specs.h
"""

import sys

from snntorch_nengo.neurons.specs import cpp_header


def main(argv: list[str]) -> int:
    """Print the generated header for ``--header``; usage otherwise."""
    if argv != ["--header"]:
        print("usage: python -m snntorch_nengo.neurons --header", file=sys.stderr)
        return 2
    sys.stdout.write(cpp_header())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
