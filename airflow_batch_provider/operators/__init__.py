"""Operators: thin wrappers that resolve parameters, open storage, drive the engine and report."""
