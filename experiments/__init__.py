"""Experiment entry points and their configs (importable: experiments.configs)."""
