"""The model zoo: architectures, checkpoint formats and their errors."""

from __future__ import annotations

import pytest
import torch

from edgeres import models
from edgeres.errors import EdgeresError


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_cifar_resnets_match_the_paper():
    # He et al. 2016, table 6: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M parameters
    assert round(n_params(models.build("resnet20", 10, 3)) / 1e6, 2) == 0.27
    assert round(n_params(models.build("resnet56", 10, 3)) / 1e6, 2) == 0.85
    assert round(n_params(models.build("resnet110", 10, 3)) / 1e6, 1) == 1.7


def test_option_a_shortcut_pads_channels_evenly():
    from edgeres.cifar_resnet import ShortcutA

    x = torch.ones(1, 16, 8, 8)
    y = ShortcutA(8)(x)
    assert y.shape == (1, 32, 4, 4)
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0 and (y[:, 8:24] == 1).all()


@pytest.mark.parametrize("name,channels,size", [("resnet18", 1, 32), ("resnet50", 3, 64), ("resnet20", 1, 28)])
def test_models_run_with_the_input_adaptation(name, channels, size):
    model = models.build(name, 10, channels).eval()
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 10)


def test_unknown_model_suggests_close_names():
    with pytest.raises(EdgeresError) as err:
        models.get_spec("resnet19")
    assert "resnet18" in str(err.value)


def test_list_models_filters_by_pattern():
    assert models.list_models("resnet1*") == ["resnet18", "resnet101", "resnet152", "resnet110"]


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_user_checkpoint_formats_load(tmp_path, wrap):
    source = models.build("resnet20", 10, 1)
    state = source.state_dict()
    if wrap == "module_prefix":
        obj = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "plain":
        obj = state
    else:
        obj = {wrap: state, "epoch": 3}
    torch.save(obj, tmp_path / "ckpt.pt")
    model = models.create("resnet20", 10, 1, str(tmp_path / "ckpt.pt"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path):
    torch.save(models.build("resnet20", 100, 1).state_dict(), tmp_path / "c100.pt")
    with pytest.raises(EdgeresError) as err:
        models.create("resnet20", 10, 1, str(tmp_path / "c100.pt"))
    assert "linear.weight" in str(err.value) and "(100, 64)" in str(err.value)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(EdgeresError, match="corrupt"):
        models.read_state_dict(tmp_path / "bad.pt")


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(EdgeresError, match="arbitrary code") as info:
        models.read_state_dict(tmp_path / "evil.pt")
    assert "--trust-pickle" in str(info.value)  # the explicit opt-in is named
    assert not marker.exists()


def test_trust_pickle_is_an_explicit_opt_in(tmp_path):
    """A whole pickled model (not just tensors) loads only with --trust-pickle, through the CLI."""
    from conftest import run_cli

    torch.save(models.build("resnet20", 10, 1), tmp_path / "whole-model.pt")
    args = ("train", "resnet20", "--epochs", "0", "--eval-limit", "20", "--weights", str(tmp_path / "whole-model.pt"))
    refused = run_cli(*args, workspace=tmp_path / "ws")
    assert refused.returncode == 1 and "arbitrary code" in refused.stderr and "Traceback" not in refused.stderr
    trusted = run_cli(*args, "--trust-pickle", workspace=tmp_path / "ws")
    assert trusted.returncode == 0, trusted.stderr


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(EdgeresError) as err:
        models.create("resnet18", 1000, 3, "imagenet")
    assert "resnet18-f37072fd.pth" in str(err.value) and str(tmp_path) in str(err.value)


def test_imagenet_weights_load_from_the_hub_cache_into_a_grey_stem(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = models.build("resnet18", 1000, 3)
    path = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    grey = models.create("resnet18", 10, 1, "imagenet")
    assert torch.allclose(grey.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(grey.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


@pytest.mark.parametrize("layout", ["lightning", "net", "ema", "no_bn_counters", "fc_named", "nested_twice"])
def test_checkpoints_from_the_wild_load(layout, tmp_path):
    source = models.build("resnet20", 10, 3)
    state = source.state_dict()
    if layout == "lightning":
        obj = {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 9, "global_step": 100}
    elif layout == "net":
        obj = {"net": state, "acc": 91.7}
    elif layout == "ema":
        obj = {"state_dict_ema": state, "args": "namespace"}
    elif layout == "no_bn_counters":  # saved by a torch older than 0.4.1
        obj = {"state_dict": {f"module.{k}": v for k, v in state.items() if "num_batches_tracked" not in k},
               "best_prec1": 91.7}
    elif layout == "fc_named":  # a CIFAR ResNet whose classifier is called fc
        obj = {k.replace("linear.", "fc."): v for k, v in state.items()}
    else:
        obj = {"state_dict": {"model": {f"module.{k}": v for k, v in state.items()}}}
    torch.save(obj, tmp_path / "ckpt.pt", _use_new_zipfile_serialization=layout != "no_bn_counters")
    model = models.create("resnet20", 10, 3, str(tmp_path / "ckpt.pt"))
    for key, value in state.items():
        if "num_batches_tracked" not in key:
            assert torch.equal(model.state_dict()[key], value), key


def test_torchvision_checkpoint_fine_tunes_with_a_new_head(tmp_path):
    imagenet = models.build("resnet18", 1000, 3)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    with pytest.raises(EdgeresError) as err:  # as it is, a 1000-class model does not classify 10 classes
        models.create("resnet18", 10, 3, str(tmp_path / "resnet18-f37072fd.pth"))
    assert "classifies 1000 classes" in err.value.hint and "edgeres train --weights" in err.value.hint
    tuned = models.create("resnet18", 10, 1, str(tmp_path / "resnet18-f37072fd.pth"), adapt=True)
    assert tuned.fc.out_features == 10
    assert torch.allclose(tuned.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(tuned.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)


@pytest.mark.parametrize("saved,loaded,needle", [
    (("resnet56", 10, 3), ("resnet20", 10, 3), "the checkpoint is a resnet56"),
    (("resnet50", 10, 3), ("resnet18", 10, 3), "the checkpoint is a resnet50"),
    (("resnet18", 10, 3), ("resnet20", 10, 3), "the checkpoint is a resnet18"),
    (("resnet20", 100, 3), ("resnet20", 10, 3), "classifies 100 classes, the model 10"),
    (("resnet20", 10, 1), ("resnet20", 10, 3), "takes 1-channel images, the dataset has 3"),
])
def test_a_real_mismatch_gets_the_hint_that_applies(saved, loaded, needle, tmp_path):
    torch.save(models.build(*saved).state_dict(), tmp_path / "ckpt.pt")
    with pytest.raises(EdgeresError) as err:
        models.create(*loaded, str(tmp_path / "ckpt.pt"))
    assert needle in err.value.hint
    assert "--num-classes" not in err.value.hint or "classes" in needle


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    state = models.build("resnet20", 10, 1).state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(EdgeresError, match="NaN or infinite values in conv1.weight"):
        models.read_state_dict(tmp_path / "nan.pt")
