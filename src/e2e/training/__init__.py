"""Training: the epoch loop, optimisers and schedules, augmentation, ensembles, DDP and resume."""
