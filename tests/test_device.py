import pytest
import torch

from mistnet.device import check_device, resolve_device
from mistnet.errors import MistError


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_check_device_accepts_the_documented_names(name):
    assert check_device(name) == name


@pytest.mark.parametrize("name", ["tpu", "cuda:", "cuda:x", "CPU", "", "gpu"])
def test_check_device_rejects_anything_else(name):
    with pytest.raises(MistError, match="--device must be"):
        check_device(name)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(want)
    if not torch.cuda.is_available():
        with pytest.raises(MistError, match="no CUDA device"):
            resolve_device("cuda:0")
