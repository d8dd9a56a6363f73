"""lrcn: LRCN / Show-and-Tell image and video captioning in PyTorch."""

__version__ = "0.1.0"
