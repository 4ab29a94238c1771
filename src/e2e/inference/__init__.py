"""Inference beyond the pipeline: e2e predict on raw files, the exported ONNX model."""
