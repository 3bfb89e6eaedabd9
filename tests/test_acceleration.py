"""Run options for speed (mistnet.acceleration): bf16 autocast keeps losses in float32 and close
to fp32; neither option renames parameters. (``--compile`` is checked on CUDA in test_cuda.py:
compiling even the tiny networks takes ~35 s on the 2-core CPU; by hand there it gave the fp32
step's task losses to 6 digits.)"""

import pytest
import torch

from mistnet.acceleration import accelerate
from mistnet.config import load_preset
from mistnet.data.runs import adopt_data, open_data
from mistnet.data.sampling import loader
from mistnet.engine import Batch
from mistnet.models.build import build_model
from mistnet.trainer import build_trainer


def _steps(precision: str, n: int = 2):
    cfg = load_preset("tiny-cpu")
    _, train_set = open_data(cfg, None, "train")
    adopt_data(cfg, train_set, None)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.train.method)
    keys = list(model.state_dict())
    trainer = build_trainer(model, cfg.train)
    accelerate([model.heatmap_net, model.task_net], torch.device("cpu"), precision)
    assert list(model.state_dict()) == keys
    batches = list(loader(train_set, cfg.train.batch_size, 0))[:n]
    return model, [trainer.step(Batch.from_dict(raw, "cpu")) for raw in batches]


def test_bf16_forward_gives_float32_losses_close_to_fp32():
    _, fp32 = _steps("fp32")
    model, bf16 = _steps("bf16")
    images = torch.rand(2, 1, 80, 80)
    assert model.heatmap_net(images).dtype == torch.float32  # handed back in float32
    for a, b in zip(fp32, bf16, strict=True):
        assert b.task.dtype == b.heatmap.dtype == torch.float32
        # bfloat16 keeps 8 bits of mantissa; measured: 0.3 % (task), 2 % (heatmap) apart.
        assert float(b.task) == pytest.approx(float(a.task), rel=2e-2)
        assert float(b.heatmap) == pytest.approx(float(a.heatmap), rel=1e-1)
        assert float(b.task) != float(a.task)  # autocast did run in bfloat16


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        accelerate([torch.nn.Linear(1, 1)], torch.device("cpu"), "fp16")


@pytest.mark.parametrize(
    ("nets", "compile", "message"),
    [
        ([torch.nn.Linear(1, 1)], "no", "compile must be True or False, got 'no'"),
        (torch.nn.Linear(1, 1), False, "nets must be a list or tuple of torch modules, got Linear"),
        ([torch.nn.Linear(1, 1), 3], False, "nets must be a list or tuple of torch modules, got"),
    ],
)
def test_accelerate_checks_its_arguments(nets, compile, message):
    """Before: ``compile="no"`` compiled (a non-empty string is true) and one module failed
    with "'Linear' object is not iterable"."""
    with pytest.raises(TypeError, match=message):
        accelerate(nets, "cpu", compile=compile)
