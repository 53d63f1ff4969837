"""Encryption as a Service (EaaS): Paillier-encrypt a device's update on a nearby machine.

Why: some IIoT devices (PLCs, small gateways) are too slow for thousands of 2048-bit modular
exponentiations per round. EaaS lets such a device send its plaintext update to a trusted
machine on its own site, which holds only the federation's *public* key and returns exactly
the wire arrays :meth:`fedids.crypto.update.UpdateEncryptor.encrypt_model` (or
``encrypt_counts``) would have produced on the device.

Trust model: the service sees that device's plaintext update (so it must be run by the
device's owner, on the device's side of the network); the aggregator still sees only
ciphertexts, and the service can decrypt nothing.

* :mod:`fedids.eaas.server` -- the HTTP service (``fedids eaas``)
* :mod:`fedids.eaas.client` -- :func:`~fedids.eaas.client.remote_encrypt_v2` and
  :func:`~fedids.eaas.client.encrypt_v2` (with optional local fallback)
* :mod:`fedids.eaas.wire` -- the ``.npz`` body format both sides use
"""
