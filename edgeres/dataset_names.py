"""The datasets edgeres reads (``edgeres.data``), by name: importable without torch, so the command line and
recipes offer them as a closed choice."""

DATASETS = ("fashion-mnist", "cifar10", "imagefolder")
