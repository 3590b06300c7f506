"""Subcommands of the flashsale CLI, one module each (see simulator.cli)."""
