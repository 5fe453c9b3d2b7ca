"""The engine: runs a built Nengo model's operators on torch tensors.

It sits below tensor nodes and the module tree, above the neuron, synapse and
kernel math (docs/architecture.md, "Layers").
"""
