"""edgeres: take a ResNet to an edge device - quantize, prune, export, benchmark."""

__version__ = "0.1.0"
