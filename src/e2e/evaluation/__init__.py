"""Evaluation: metrics, performance in bins, plot tables, image views, the headline, ensemble columns."""
