"""The auth service's use cases (``flows/``, one module per flow) and the machinery they share.

Flows import the machinery beside this file and ``auth_service.domain``; never each other, never an adapter.
What one flow needs of another (a session opened, a password checked) it names as a protocol of
``capabilities``, and ``bootstrap`` hands it the other flow's object.
"""
