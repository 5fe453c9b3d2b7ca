"""TensorNode operators: torch code inside a Nengo network."""
