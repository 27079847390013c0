"""The account documents (MongoDB's "users" collection), one module per concern of ports.py."""
