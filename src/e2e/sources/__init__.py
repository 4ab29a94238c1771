"""Where raw data comes from: the dataset registry, the format readers, and the synthetic generator."""
