"""Packed Paillier for fedids: keys, codec, vector encryption, wire format, client facade.

No torch and no flwr here: the server-side strategy and the devices both import it.
See docs/paillier.md.
"""
