"""Facial emotion recognition on FER2013: a DVC + MLflow pipeline around small Keras CNNs."""

__version__ = "0.1.0"
