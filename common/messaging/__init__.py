"""RabbitMQ conventions shared by the auth service and the email worker.

Both services declare the same topology from this package, so neither can
fail on a queue-argument mismatch, and both build and parse messages here.
"""
