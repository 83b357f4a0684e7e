"""Model families autocompress can rebuild from a shape spec (no pickle, ever)."""

from autocompress.models.mlp import MLPClassifier

__all__ = ["MLPClassifier"]
