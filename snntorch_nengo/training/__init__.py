"""Training Nengo networks: Lightning module, losses, metrics, Keras-style API."""
