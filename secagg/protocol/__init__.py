"""The protocol layer every party and the auditor share.

Typed signed statements, the decryption and upload policy, the roster, the deployment
layout, the audit log and its verifier. It knows no transport (no gRPC) and no service
state: the server, the key holders, the clients and ``secagg audit verify`` all build
on it.
"""
