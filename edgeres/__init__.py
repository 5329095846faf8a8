"""edgeres: take a ResNet to an edge device - quantize, prune, export, benchmark."""

# The one place the version is written (pyproject.toml reads it); raise it when behaviour changes.
__version__ = "0.6.0"
