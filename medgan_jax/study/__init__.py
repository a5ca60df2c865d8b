"""Evaluation reports and the augmentation study: grids of runs, tables, plots."""
