"""The auth service: registration, email confirmation, login and tokens over HTTP."""
