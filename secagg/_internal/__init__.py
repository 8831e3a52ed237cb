"""Internal: ring arithmetic, SEAL glue, envelopes, sampling and Shamir sharing.

Nothing here is part of the public API; the HE core (``secagg.params``, ``encoding``,
``ciphertext``, ``aggregate``, ``threshold``, ``dkg``, ``keys``) is built on it.
"""
