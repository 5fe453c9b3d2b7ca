"""Convolution operators (ConvInc, ConvTransposeInc) in torch."""
