"""Bridges to other tools (each imports its tool only when that tool is installed)."""
