"""The benchmark's PyTorch twin must be the same network as ddpm.nn, or ratios mean nothing."""

import pytest

from ddpm.build import build_network, section
from ddpm.nn import ATTENTIONS, BLOCKS
from tests.conftest import compose_config

torch = pytest.importorskip("torch", reason="the PyTorch twin needs `pip install -e .[bench]`")


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("attention", ATTENTIONS.names())
def test_twin_has_the_same_parameters(block, attention):
    from ddpm.torch_twin import UNet

    cfg = compose_config(f"block={block}", f"attention={attention}", "attention.levels=[1]")
    sections = [section(cfg, g) for g in ("model", "block", "attention")]
    ms_net = build_network(*sections, 1, 28)
    pt_net = UNet(*sections, 1)
    ms_shapes = sorted(tuple(p.shape) for p in ms_net.trainable_params())
    pt_shapes = sorted(tuple(p.shape) for p in pt_net.parameters())
    # MindSpore stores Dense weights [out, in] like PyTorch; transposed-conv weights are
    # [in, out, k, k] in both.
    assert ms_shapes == pt_shapes
    out = pt_net(torch.randn(2, 1, 28, 28), torch.tensor([0, 5]))
    assert out.shape == (2, 1, 28, 28)
