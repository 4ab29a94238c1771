"""e2e: reproducible end-to-end deep learning on CMS detector images."""

__version__ = "0.1.0"
