"""One module per flow. The import contracts in pyproject.toml keep them independent of each other."""
