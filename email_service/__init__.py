"""The email worker: issues verification codes, emails them, and checks submitted codes."""
