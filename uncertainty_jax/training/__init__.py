"""Pair state, optimizers, sharding, train-step builders, the loop, checkpoints and run outputs."""
