"""Learning rule operators (PES, BCM, Oja, Voja, RLS) in torch."""
