"""Configs (one `get_config` per chapter) and the command-line entry points."""
