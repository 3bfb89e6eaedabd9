import os

import pytest
import torch

# Two cores on CI: keep intra-op threads at one per pytest-xdist worker.
torch.set_num_threads(max(1, int(os.environ.get("MIST_TEST_THREADS", "1"))))


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _private_data_cache(monkeypatch, tmp_path_factory):
    """Point the data cache (``--digits mnist``) at a folder of the test's own, not made yet, so
    no test reads or fills the user's ``~/.cache/mistnet``."""
    monkeypatch.setenv("MISTNET_DATA", str(tmp_path_factory.mktemp("data-cache") / "mistnet"))
