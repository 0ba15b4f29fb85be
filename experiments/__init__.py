"""Experiment entry points and their configs (`experiments.configs`)."""
