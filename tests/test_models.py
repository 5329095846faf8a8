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
