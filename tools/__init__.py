"""Operator tools, run from a checkout (not deployed: .funcignore)."""
