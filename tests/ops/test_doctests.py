"""The docstring examples of every op are run, so the documentation cannot drift from the code."""

import doctest
import importlib

import pytest
import torch

# Imported by name: ``mistnet.ops.nms`` is the function, the submodule is shadowed by it.
MODULES = ["boxes", "heatmap", "nms", "sampler", "softmax"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"mistnet.ops.{name}")
    result = doctest.testmod(module, extraglobs={"torch": torch}, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
