"""The closed choices of ``edgeres.data``, importable without torch: the command line and recipes offer them
as choices checked as they are parsed."""

DATASETS = ("fashion-mnist", "cifar10", "imagefolder")

# Where the images that make decisions (accuracy budget, QAT epoch, sensitivity, best epoch) come from,
# and which images are reported on. Decisions never see the reported images.
VALIDATIONS = {
    "holdout": "val: a seeded 1/12 of the training images, held out of training; test: the test split",
    "test-split": "val: a seeded 20 % of the test split (the model may have seen every training image: "
                  "imported weights); test: the other 80 %",
}
