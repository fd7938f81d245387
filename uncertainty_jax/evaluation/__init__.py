"""Evaluators, and pictures of what the models do."""
