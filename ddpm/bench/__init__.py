"""The speed benchmark (`python -m ddpm.bench`) and its PyTorch twin of the U-Net."""
