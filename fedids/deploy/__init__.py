"""Deployment helpers: TLS certificates, SuperNode keys and the Flower process harness.

These exist so that a real SuperLink/SuperNode federation (TLS + SuperNode authentication)
can be set up with one command per step and exercised end to end in tests on loopback.
"""
