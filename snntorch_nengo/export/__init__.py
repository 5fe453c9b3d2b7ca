"""Getting trained networks out: parameters to files and back into Nengo objects,
onto Loihi (`check_loihi`, `to_loihi`) and to/from NIR (`export_nir`,
`import_nir`).

The Loihi and NIR helpers are imported on first use: ``nengo_loihi`` and
``nir`` are optional.
"""

import importlib

_LAZY = {
    "check_loihi": "loihi",
    "to_loihi": "loihi",
    "LoihiReport": "loihi",
    "export_nir": "nir",
    "import_nir": "nir",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
