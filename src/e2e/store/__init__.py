"""Storage: atomic writes, .npy arrays, the sparse format, splits, checkpoints and the DVCLive opener."""
