"""e2e tune: an Optuna study whose trials are DVC experiments (search, space, trial, report)."""
