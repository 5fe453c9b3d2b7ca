"""Torch implementations of Nengo synapse (filter) steps."""

from snntorch_nengo.synapses.linear import (
    ScanForm,
    is_native_synapse,
    linear_filter_scan_form,
    linear_filter_step,
    synapse_step,
    triangle_step,
)

__all__ = [
    "synapse_step",
    "is_native_synapse",
    "linear_filter_step",
    "triangle_step",
    "ScanForm",
    "linear_filter_scan_form",
]
