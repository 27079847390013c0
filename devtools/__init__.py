"""Tools for running the system on a developer's machine: a mail sink, the local stack, the demo."""
