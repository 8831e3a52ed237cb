"""Constants of secagg, in one place.

Formats, size caps and security defaults. Anything a reviewer may want to audit
(statistical security, default budgets) is here rather than spread across modules.
"""

from __future__ import annotations

from typing import Final

# --- Serialized formats -------------------------------------------------------------
#: Version of the envelope around serialized ciphertexts, aggregates and partials.
FORMAT_VERSION: Final = 1
#: Length in bytes of a parameter-set id (truncated SHA-256 of the canonical description).
PARAMS_ID_BYTES: Final = 16
#: Length in bytes of content digests (SHA-256).
DIGEST_BYTES: Final = 32
#: Upper bound on one serialized object accepted by ``from_bytes`` (bytes). Callers may
#: pass a smaller cap; this one bounds memory for anything read from the network.
MAX_SERIALIZED_BYTES: Final = 2 * 1024**3
#: Upper bound on the number of values in one encrypted vector.
MAX_VECTOR_LENGTH: Final = 200_000_000
#: Ciphertexts per chunk of a chunked envelope (vectors, aggregates, partials): the unit
#: that is streamed, verified, stored and folded on its own. A vector chunk is 2.9 MB at
#: the default parameters (65,536 values), under gRPC's 4 MiB message limit.
CHUNK_CIPHERTEXTS: Final = 8
#: Upper bound on any upload cap a policy may set (bytes): chunked uploads have no
#: message-size limit; this only bounds a typo (200M values are ~9 GB at 45 B each).
MAX_UPLOAD_BYTES: Final = 64 * 1024**3
#: Cap on the head of a chunked envelope (header fields and 32 bytes per chunk): a
#: 200M-value vector has 3,052 chunks, about 100 KB of digests.
MAX_HEAD_BYTES: Final = 1024 * 1024

# --- Parameter defaults (the bit budget they feed: secagg.params, module notes) ---------
DEFAULT_POLY_MODULUS_DEGREE: Final = 8192
#: Bit sizes of the RNS primes: the last one is SEAL's special prime (key level only).
#: Three data primes (158 bits) and the special prime use all 218 bits SEAL's 128-bit
#: table allows for N = 8192; the third data prime pays for the decryption budget.
DEFAULT_COEFF_MODULUS_BITS: Final = (53, 53, 52, 60)
DEFAULT_VALUE_BOUND: Final = 16.0
DEFAULT_MAX_TOTAL_WEIGHT: Final = 2**16
DEFAULT_MAX_KEYHOLDERS: Final = 8
DEFAULT_STATISTICAL_SECURITY: Final = 40
DEFAULT_PRECISION: Final = 1e-7
#: Minimum statistical security (bits) of the flooding noise that the calculator accepts,
#: over a key share's whole lifetime.
MIN_STATISTICAL_SECURITY: Final = 40
#: A key share decrypts at most 2^this many coefficients in its lifetime (2^38 ~ 2.7e11:
#: e.g. 100 rounds of a 10^7-parameter model with 3 cross-checking quorums is ~2^31.5).
#: Each bit costs a bit of flooding, hence of the modulus (secagg.params, module notes).
DEFAULT_DECRYPTION_BUDGET_BITS: Final = 38
#: Largest decryption budget the calculator accepts (bits).
MAX_DECRYPTION_BUDGET_BITS: Final = 63
#: Computational security level targeted (SEAL's HE-standard table).
SECURITY_LEVEL_BITS: Final = 128
#: Largest ``log2 t`` SEAL accepts for BFV: ``t`` must have at most 60 bits, and
#: ``t = 2^60`` has 61.
MAX_PLAIN_MODULUS_BITS: Final = 59

# --- Secret and noise distributions -----------------------------------------------------
#: Centered binomial parameter for key-generation noise: sigma = sqrt(ETA / 2) ~ 3.24,
#: matching SEAL's default noise standard deviation of 3.2.
CBD_ETA: Final = 21
#: Bound on one coefficient of the key-generation noise.
CBD_BOUND: Final = CBD_ETA

# --- Domain separation for hashes -------------------------------------------------------
DOMAIN_PARAMS_ID: Final = b"secagg/params/v1"
DOMAIN_COMMON_POLY: Final = b"secagg/dkg/common-a/v1"
DOMAIN_PUBLIC_KEY_ID: Final = b"secagg/public-key/v1"
DOMAIN_CIPHERTEXT: Final = b"secagg/ciphertext/v2"
DOMAIN_AGGREGATE: Final = b"secagg/aggregate/v1"
DOMAIN_PARTIAL: Final = b"secagg/partial/v2"
#: Digest of one chunk of a chunked envelope (its index and packed residues).
DOMAIN_CHUNK: Final = b"secagg/chunk/v1"
DOMAIN_SEED_COMMIT: Final = b"secagg/dkg/seed-commit/v1"

# --- Service (gRPC) ----------------------------------------------------------------------
#: Size of one streamed chunk; far below gRPC's default 4 MiB message limit.
CHUNK_BYTES: Final = 1024 * 1024
#: Deadline of unary RPCs (seconds).
RPC_TIMEOUT_SECONDS: Final = 30.0
#: Deadline of streaming transfers (seconds).
TRANSFER_TIMEOUT_SECONDS: Final = 600.0
#: A key holder not heard from for this long is treated as unreachable.
KEYHOLDER_LIVENESS_SECONDS: Final = 4.0
#: How often agents poll the server.
POLL_SECONDS: Final = 0.3
#: How often a key holder polls right after a task (a round's lock, decryption and
#: endorsement follow each other within seconds), and for how long after it.
BUSY_POLL_SECONDS: Final = 0.05
BUSY_WINDOW_SECONDS: Final = 3.0
#: Nonce length of an upload.
UPLOAD_NONCE_BYTES: Final = 16
#: Where ``secagg init`` points the roster's server address by default.
DEFAULT_SERVER_ADDRESS: Final = "127.0.0.1:50051"

# --- Key holder storage at rest -------------------------------------------------------------
#: The environment variable a key holder reads its share's passphrase from (unless
#: ``--passphrase-file`` or ``--passphrase-env`` names another source).
KEYHOLDER_PASSPHRASE_ENV: Final = "SECAGG_KEYHOLDER_PASSPHRASE"

# --- Key ceremony: commitments and test decryption (secagg.keycheck) ------------------------
#: Domain of a key holder's commitment to its public-key contribution ``b_i`` (KEY_COMMIT).
DOMAIN_KEY_COMMIT: Final = b"secagg/dkg/key-commit/v2"
#: Domain of a key holder's commitment to the Shamir share it sends one recipient.
DOMAIN_SHARE_COMMIT: Final = b"secagg/dkg/share-commit/v1"
#: Plaintext coefficients of one test ciphertext (random values mod ``t``); partials of
#: test ciphertexts carry only these coefficients. A wrong key or share garbles each one
#: independently, so 16 leave a chance of ``t^-16`` that a failure goes unseen.
CEREMONY_TEST_VALUES: Final = 16
#: While ``C(n, t)`` is at most this, test ciphertexts are decrypted by every t-subset;
#: above it by the ``n`` cyclic windows ``{k, ..., k + t - 1}`` (each key holder in ``t``
#: of them). Consecutive windows differ in one member, so their agreeing implies that
#: every share lies on one polynomial of degree ``t - 1``; but unlike all t-subsets they
#: need not include a subset of honest key holders only (see secagg.keycheck).
CEREMONY_ALL_QUORUMS_MAX: Final = 20

# --- Local DP-SGD randomness (clients.dp_noise) ----------------------------------------------
#: Domain of the round key derived from the demo's ``--insecure-noise-seed`` (no privacy).
DOMAIN_INSECURE_NOISE_SEED: Final = b"secagg/dp/insecure-noise-seed/v1"

# --- Key epochs (server.epochs, clients.keyholder.epochs) ------------------------------------
#: The server opens the next key ceremony once some key holder has decrypted this fraction
#: of :attr:`~secagg.params.Parameters.decryption_budget` under the current key (it counts
#: the partials it accepted); the rest covers the rounds that run while the ceremony does.
KEY_ROTATION_BUDGET_FRACTION: Final = 0.75
#: Exit status of ``secagg keyholder`` when the key ceremony aborted (culprits logged).
EXIT_CEREMONY_ABORTED: Final = 3

# --- Key ceremony: transcript and ephemeral exchange keys (issue 11 review) ------------------
#: Domain of the TRANSCRIPT hash: every message the sealed shares depend on, as one key
#: holder saw them (key holders compare all ``n`` before any share is sealed).
DOMAIN_CEREMONY_TRANSCRIPT: Final = b"secagg/dkg/transcript/v1"
#: Bytes of an EXCHANGE_KEY body (a raw X25519 public key).
EXCHANGE_KEY_BYTES: Final = 32

# --- Operations at model size (issue 13): derived timeouts (secagg.protocol.sizing) ----------
#: Round timeout of small models (seconds): the floor of the derived one.
DEFAULT_ROUND_TIMEOUT_SECONDS: Final = 60.0
#: Seconds one streaming transfer may take per MB (10^6 bytes) of one upload, lock wait
#: included: 1 s/MB is a sustained 8 Mbit/s. ``TRANSFER_TIMEOUT_SECONDS`` is the floor.
TRANSFER_SECONDS_PER_MB: Final = 1.0
#: Seconds a round collects per MB of one upload (clients upload one after another at
#: worst). ``DEFAULT_ROUND_TIMEOUT_SECONDS`` is the floor.
ROUND_SECONDS_PER_MB: Final = 1.0
#: Largest transfer or round timeout a policy accepts (seconds; one day).
MAX_TIMEOUT_SECONDS: Final = 86_400.0
#: Bytes an upload may carry beyond its ciphertexts (the envelope needs < 200).
UPLOAD_ENVELOPE_BYTES: Final = 64 * 1024

# --- Streaming uploads, the client's side (issue 13; clients.client) -------------------------
#: First pause before a client asks a busy server (RESOURCE_EXHAUSTED) again; it doubles.
UPLOAD_BUSY_FIRST_DELAY_SECONDS: Final = 1.0
#: Longest pause between two attempts at a busy server.
UPLOAD_BUSY_MAX_DELAY_SECONDS: Final = 30.0

# --- Streaming uploads, the server's side (issue 13; server.service) -------------------------
#: Threads serving RPCs in ``secagg serve``.
SERVER_WORKERS: Final = 16
#: Threads never given to upload streams: heartbeats, tasks and key holders always find one.
SERVER_RESERVED_WORKERS: Final = 4
#: Memory the server lets concurrent upload streams use (bytes): each holds a few chunks
#: (the received message, its unpacked residues, the fold's accumulator chunk).
UPLOAD_MEMORY_BUDGET_BYTES: Final = 256 * 1024**2
#: Chunk-sized buffers one upload stream holds at a time (message, copy, residues, fold).
UPLOAD_STREAM_BUFFERS: Final = 8

# --- Operations (issue 14, OPS): reaching the server, metrics, log lines ---------------------
#: Seconds a party's first contact (TCP, mTLS handshake, a health check) may take before it
#: reports the server unreachable (``secagg admin``) or says it waits (the agents). The
#: agents double it on every failed attempt, up to ``RPC_TIMEOUT_SECONDS``, so a slow link
#: still connects.
CONNECT_TIMEOUT_SECONDS: Final = 1.0
#: First pause before an agent tries an unreachable server again; it doubles (with jitter).
RECONNECT_FIRST_DELAY_SECONDS: Final = 0.25
#: Longest pause between two attempts to reach the server.
RECONNECT_MAX_DELAY_SECONDS: Final = 30.0
#: A waiting agent repeats its "waiting for server" line after this many attempts with the
#: same reason (at once when the reason changes).
RECONNECT_REPORT_EVERY: Final = 10
#: Exit status of ``secagg admin`` (and of an agent that gave up) when the server cannot
#: be reached.
EXIT_SERVER_UNREACHABLE: Final = 4
#: Interface the metrics endpoint (``secagg serve --metrics-port``) binds by default.
DEFAULT_METRICS_HOST: Final = "127.0.0.1"
#: Environment variable selecting the log format (``text`` or ``json``) when no
#: ``--log-format`` is given.
LOG_FORMAT_ENV: Final = "SECAGG_LOG_FORMAT"
#: Longest pause between two attempts when the server answered "not now" (``UNAVAILABLE``
#: from the server itself: a key ceremony in progress, too few key holders).
RETRY_ANSWERED_MAX_DELAY_SECONDS: Final = 2.0

# --- Flower integration (issue 14, FLOWER: clients/flower) -----------------------------------
#: Seconds the strategy mixin waits for a round's release beyond the round's own timeout
#: (closing, locks, partial decryptions, endorsements).
FLOWER_RELEASE_GRACE_SECONDS: Final = 300.0
#: Largest SecAgg record (a signed contribution) the strategy mixin parses from a reply.
FLOWER_MAX_RECORD_BYTES: Final = 64 * 1024
