"""Talking to the server: pure protocol functions, the REST client and the socket session.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""
