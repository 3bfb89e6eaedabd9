"""The docstring examples of every module under src/mistnet run, so documentation cannot drift
from the code. A module without examples is fine; a failing example is not."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import mistnet

# ``mistnet.__main__`` runs the CLI when imported.
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(mistnet.__path__, prefix="mistnet.")
    if info.name != "mistnet.__main__"
)


def test_the_modules_with_examples_are_found():
    for name in (
        "mistnet.ops.nms",
        "mistnet.losses",
        "mistnet.metrics.meters",
        "mistnet.data.dataset",
    ):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    # By name: ``mistnet.ops.nms`` as an attribute is the function that shadows the submodule.
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"torch": torch}, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
