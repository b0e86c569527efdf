"""--device: auto picks what is there; a device this machine lacks is a one-line ValueError naming the option."""

import re

import pytest
import torch

from karmma.devices import resolve_device


def test_auto_is_cuda_when_a_gpu_is_there_else_cpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize(
    "device, named",
    [
        ("gpu0", "--device 'gpu0': not a torch device"),
        (f"cuda:{torch.cuda.device_count() + 7}", "--device cuda:"),
        ("meta", "--device 'meta': unsupported device type 'meta'"),
    ],
)
def test_a_device_this_machine_lacks_is_named(device, named):
    with pytest.raises(ValueError, match="^" + re.escape(named)):
        resolve_device(device)
    with pytest.raises(ValueError, match="^--evaluate-on "):
        resolve_device(device, option="--evaluate-on")
