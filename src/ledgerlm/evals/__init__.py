"""Evaluation harnesses: how well the runtime rooms work, measured on generated data; nothing here runs in a node."""
