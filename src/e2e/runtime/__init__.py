"""Where a model runs: the device and its settings, batches densified there, batched prediction."""
