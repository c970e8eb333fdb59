"""Stage 3, the networks: layers, blocks, attention, the U-Net and its builder, and the
fused CPU kernels (kernels/). Each config-group option registers itself on import."""

from ddpm.nn import attention, blocks  # noqa: F401  (populate the registries)
from ddpm.nn.attention import ATTENTIONS
from ddpm.nn.blocks import BLOCKS
from ddpm.nn.unet import UNet

__all__ = ["ATTENTIONS", "BLOCKS", "UNet"]
