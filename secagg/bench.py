"""``secagg bench``: secagg against the NVIDIA FLARE-style TenSEAL path and plaintext FedAvg.

One run measures three systems side by side on the same random client vectors:

(a) secagg: local dealerless key generation, encryption under the joint public key,
    the serialized upload (``EncryptedVector.to_bytes``), weighted aggregation with
    integer weights, one partial decryption per key holder of a ``t``-member quorum, and
    the combination.
(b) TenSEAL CKKS as NVIDIA FLARE configures it (``poly_modulus_degree=8192``,
    ``coeff_mod_bit_sizes=[60, 40, 40]``, scale ``2^40``, no Galois keys): clients encrypt
    with a public-key-only context, the server multiplies each ciphertext by its float
    weight ``w_i / sum(w)`` and adds; the holder of the single secret key decrypts. FLARE's
    default flow (clients pre-weight in plaintext; the server adds and multiplies the sum
    once by ``1 / sum(w)``) is measured too.
(c) plaintext FedAvg with ``numpy.average``.

Every timed phase runs ``--repeats`` times; the report quotes medians (``time.perf_counter``)
and the ratios secagg / (b). The process is pinned to one CPU while it measures.

Notes
-----
The systems do not give the same protection: (b) decrypts with one secret key, whose
holder can decrypt every client's upload, while (a) needs ``t`` key holders and only
ever decrypts the aggregate. Throughputs count model parameters: encryption and
aggregation count ``clients x parameters`` per run, decryption counts ``parameters``.
Vectors come from ``numpy.random.default_rng`` (benchmark data, not secrets).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import tenseal as ts

from . import __version__
from .aggregate import EncryptedAggregate, aggregate
from .ciphertext import EncryptedVector, encrypt
from .dkg import dealerless_keygen
from .errors import SecAggError
from .keys import JointPublicKey, KeySet
from .params import Parameters
from .seal_backend import backend_for
from .threshold import PartialDecryption, combine, partial_decrypt

S = TypeVar("S")
R = TypeVar("R")
F64 = npt.NDArray[np.float64]
Json = dict[str, Any]

#: TenSEAL CKKS settings of NVIDIA FLARE's HE examples.
CKKS_POLY_MODULUS_DEGREE = 8192
CKKS_COEFF_MOD_BIT_SIZES = (60, 40, 40)
CKKS_SCALE_BITS = 40
VALUE_RANGE = 8.0
MAX_CLIENT_WEIGHT = 1000
#: Acceptance targets, checked at the largest size.
TARGET_ENCRYPT_RATIO = 2.0
TARGET_AGGREGATE_RATIO = 2.0
TARGET_BYTES_RATIO = 0.6
TARGET_DECRYPT_PER_KEYHOLDER = 1e6


@dataclass(frozen=True)
class Phase:
    """Repeated wall-clock timings of one phase that processes ``parameters`` values per run."""

    samples: tuple[float, ...]
    parameters: int

    @property
    def seconds(self) -> float:
        """Median seconds per run."""
        return statistics.median(self.samples)

    @property
    def throughput(self) -> float:
        """Parameters per second at the median."""
        return self.parameters / self.seconds

    def to_json(self) -> Json:
        """JSON form: median, throughput and every sample."""
        return {
            "seconds_median": self.seconds,
            "parameters_per_second": self.throughput,
            "parameters_per_run": self.parameters,
            "samples_seconds": list(self.samples),
        }


@dataclass
class SystemResult:
    """What one system achieved at one size."""

    phases: dict[str, Phase] = field(default_factory=dict)
    bytes_per_parameter: float | None = None
    upload_bytes_per_client: int | None = None
    max_abs_error: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> Json:
        """JSON form."""
        return {
            "phases": {name: phase.to_json() for name, phase in self.phases.items()},
            "bytes_per_parameter": self.bytes_per_parameter,
            "upload_bytes_per_client": self.upload_bytes_per_client,
            "max_abs_error": self.max_abs_error,
            "notes": self.notes,
        }


@dataclass
class SizeResult:
    """The three systems at one vector size."""

    size: int
    weights: list[int]
    secagg: SystemResult
    ckks: SystemResult
    plaintext: SystemResult

    def ratios(self) -> dict[str, float]:
        """secagg divided by (b), per metric (throughputs: higher is better for secagg)."""
        a, b = self.secagg.phases, self.ckks.phases
        assert self.secagg.bytes_per_parameter and self.ckks.bytes_per_parameter
        return {
            "encrypt_throughput": a["encrypt"].throughput / b["encrypt"].throughput,
            "encrypt_and_serialize_throughput": _chain_throughput(a, "encrypt", "serialize")
            / _chain_throughput(b, "encrypt", "serialize"),
            "parse_throughput": a["parse"].throughput / b["parse"].throughput,
            "aggregate_throughput": a["aggregate"].throughput
            / b["aggregate_server_weighted"].throughput,
            "aggregate_throughput_vs_flare_default": a["aggregate"].throughput
            / b["aggregate_flare_default"].throughput,
            "bytes_per_parameter": self.secagg.bytes_per_parameter / self.ckks.bytes_per_parameter,
        }

    def to_json(self) -> Json:
        """JSON form."""
        return {
            "parameters": self.size,
            "weights": self.weights,
            "secagg": self.secagg.to_json(),
            "ckks": self.ckks.to_json(),
            "plaintext": self.plaintext.to_json(),
            "ratios_secagg_over_ckks": self.ratios(),
        }


def _chain_throughput(phases: dict[str, Phase], *names: str) -> float:
    """Throughput of phases run one after the other."""
    return phases[names[0]].parameters / sum(phases[n].seconds for n in names)


# --- measurement helpers ------------------------------------------------------------------
def _timed_with_setup(
    setup: Callable[[], S], run: Callable[[S], R], repeats: int
) -> tuple[list[float], R]:
    """Time ``run(setup())`` ``repeats`` times; setup is untimed. Returns samples, last result."""
    samples: list[float] = []
    result: R | None = None
    for _ in range(repeats):
        result = None  # free the previous repetition's output before the next one
        arg = setup()
        gc.collect()
        start = time.perf_counter()
        result = run(arg)
        samples.append(time.perf_counter() - start)
    assert result is not None
    return samples, result


def _timed(run: Callable[[], R], repeats: int) -> tuple[list[float], R]:
    """Time ``run()`` ``repeats`` times. Returns the samples and the last result."""
    return _timed_with_setup(lambda: None, lambda _: run(), repeats)


@contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null (TenSEAL prints a warning per long vector)."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextmanager
def _one_core(pin: bool) -> Iterator[Json]:
    """Pin this thread (and threads it starts) to one CPU and BLAS pools to one thread."""
    info: Json = {"pinned_cpu": None, "tenseal_n_threads": 1, "blas_threads_limited_to_1": False}
    with ExitStack() as stack:
        if pin and hasattr(os, "sched_setaffinity"):
            original = os.sched_getaffinity(0)
            cpu = min(original)
            os.sched_setaffinity(0, {cpu})
            stack.callback(os.sched_setaffinity, 0, original)
            info["pinned_cpu"] = cpu
            info["affinity_before"] = sorted(original)
        try:
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
        except ImportError:
            pass
        else:
            if pin:
                stack.enter_context(threadpool_limits(limits=1))
                info["blas_threads_limited_to_1"] = True
        info["how"] = (
            "sched_setaffinity pins the measuring thread to one CPU (threads started later "
            "inherit it); TenSEAL contexts use n_threads=1; SEAL runs single-threaded; "
            "threadpoolctl limits BLAS/OpenMP pools to 1 thread (numpy's elementwise "
            "kernels use none)"
            if pin
            else "not pinned (--no-pin)"
        )
        yield info


def machine_info() -> Json:
    """Platform, CPU model, core counts and library versions of this machine."""
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "tenseal": ts.__version__,
        "secagg": __version__,
        "secagg_seal_glue": (
            "direct memory" if backend_for(Parameters.default()).direct_memory else "files"
        ),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- (a) secagg ---------------------------------------------------------------------------
def _fresh_vector(vec: EncryptedVector) -> EncryptedVector:
    """A new view of the same residues, without cached payload or digest."""
    return EncryptedVector(vec.params, vec.public_key_id, vec.length, vec.residues)


def _fresh_views(vecs: Sequence[EncryptedVector]) -> list[EncryptedVector]:
    return [_fresh_vector(v) for v in vecs]


def _fresh_aggregate(agg: EncryptedAggregate) -> EncryptedAggregate:
    """A new view of an aggregate, as a key holder that just received it would hold."""
    return EncryptedAggregate(
        _fresh_vector(agg.vector), agg.total_weight, agg.weight_scale, agg.contributors
    )


def _encrypt_all(public_key: JointPublicKey, vectors: F64) -> list[EncryptedVector]:
    return [encrypt(public_key, x) for x in vectors]


def _serialize_all(vecs: Sequence[EncryptedVector]) -> list[bytes]:
    return [v.to_bytes() for v in vecs]


def _parse_all(blobs: Sequence[bytes], params: Parameters) -> list[EncryptedVector]:
    return [EncryptedVector.from_bytes(b, params) for b in blobs]


def _bench_secagg(
    vectors: F64, weights: list[int], keys: KeySet, repeats: int, reference: F64
) -> SystemResult:
    clients, size = vectors.shape
    params = keys.public_key.params
    quorum = list(range(1, keys.public_key.threshold + 1))
    res = SystemResult()
    phases = res.phases

    samples, cts = _timed(partial(_encrypt_all, keys.public_key, vectors), repeats)
    phases["encrypt"] = Phase(tuple(samples), clients * size)
    # to_bytes caches the packed payload and digest: serialize fresh views every time.
    samples, blobs = _timed_with_setup(partial(_fresh_views, cts), _serialize_all, repeats)
    phases["serialize"] = Phase(tuple(samples), clients * size)
    res.upload_bytes_per_client = len(blobs[0])
    res.bytes_per_parameter = len(blobs[0]) / size
    samples, parsed = _timed(partial(_parse_all, blobs, params), repeats)
    phases["parse"] = Phase(tuple(samples), clients * size)
    del parsed, blobs

    samples, agg = _timed(partial(aggregate, cts, weights=weights), repeats)
    phases["aggregate"] = Phase(tuple(samples), clients * size)
    del cts
    gc.collect()

    per_keyholder: list[float] = []
    parts: list[PartialDecryption] = []
    for _ in range(repeats):
        parts = []
        for index in quorum:
            view = _fresh_aggregate(agg)
            gc.collect()
            start = time.perf_counter()
            parts.append(partial_decrypt(keys.shares[index - 1], view, quorum=quorum))
            per_keyholder.append(time.perf_counter() - start)
    phases["partial_decrypt_per_keyholder"] = Phase(tuple(per_keyholder), size)
    samples, mean = _timed_with_setup(
        partial(_fresh_aggregate, agg), partial(combine, partials=parts), repeats
    )
    phases["combine"] = Phase(tuple(samples), size)
    res.max_abs_error["weighted_mean"] = float(np.max(np.abs(mean - reference)))
    res.notes.append(
        f"threshold decryption by key holders {quorum} of {keys.public_key.keyholders}; "
        "partial_decrypt is timed per key holder (each computes the aggregate digest); "
        "key holders work in parallel, so end-to-end decryption is one partial plus combine"
    )
    return res


# --- (b) TenSEAL CKKS, NVIDIA FLARE style ---------------------------------------------
def _ckks_context() -> Any:
    """The FLARE-style secret context (no Galois keys; one thread)."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=CKKS_POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(CKKS_COEFF_MOD_BIT_SIZES),
        n_threads=1,
    )
    ctx.global_scale = float(2**CKKS_SCALE_BITS)
    return ctx


def _public_copy(ctx: Any) -> Any:
    """What clients and the server hold: the context without the secret key."""
    pub = ctx.copy()
    pub.make_context_public()
    return pub


def _ckks_encrypt_all(ctx: Any, vectors: F64) -> list[Any]:
    with _native_stdout_silenced():  # once per batch: no per-vector cost
        return [ts.ckks_vector(ctx, x) for x in vectors]


def _ckks_serialize_all(vecs: Sequence[Any]) -> list[bytes]:
    return [v.serialize() for v in vecs]


def _ckks_parse_all(ctx: Any, blobs: Sequence[bytes]) -> list[Any]:
    return [ts.ckks_vector_from(ctx, b) for b in blobs]


def _ckks_server_weighted(vecs: Sequence[Any], fractions: Sequence[float]) -> Any:
    """``sum_i (w_i / W) * ct_i``: one plaintext multiply (and rescale) per client."""
    total = vecs[0] * fractions[0]
    for vec, fraction in zip(vecs[1:], fractions[1:], strict=True):
        total = total + vec * fraction
    return total


def _ckks_flare_default(preweighted: Sequence[Any], total_weight: float) -> Any:
    """FLARE's default: add client-pre-weighted ciphertexts, scale the sum by ``1/W`` once."""
    total = preweighted[0]
    for vec in preweighted[1:]:
        total = total + vec
    return total * (1.0 / total_weight)


def _bench_ckks(
    vectors: F64, weights: list[int], secret_ctx: Any, repeats: int, reference: F64
) -> SystemResult:
    clients, size = vectors.shape
    pub = _public_copy(secret_ctx)
    secret_key = secret_ctx.secret_key()
    total_weight = float(sum(weights))
    fractions = [w / total_weight for w in weights]
    res = SystemResult()
    phases = res.phases

    samples, encrypted = _timed(partial(_ckks_encrypt_all, pub, vectors), repeats)
    phases["encrypt"] = Phase(tuple(samples), clients * size)
    samples, blobs = _timed(partial(_ckks_serialize_all, encrypted), repeats)
    phases["serialize"] = Phase(tuple(samples), clients * size)
    res.upload_bytes_per_client = len(blobs[0])
    res.bytes_per_parameter = len(blobs[0]) / size
    samples, parsed = _timed(partial(_ckks_parse_all, pub, blobs), repeats)
    phases["parse"] = Phase(tuple(samples), clients * size)
    del parsed, blobs

    samples, agg = _timed(partial(_ckks_server_weighted, encrypted, fractions), repeats)
    phases["aggregate_server_weighted"] = Phase(tuple(samples), clients * size)
    del encrypted
    samples, decrypted = _timed(partial(agg.decrypt, secret_key), repeats)
    phases["decrypt"] = Phase(tuple(samples), size)
    res.max_abs_error["server_weighted"] = float(np.max(np.abs(np.asarray(decrypted) - reference)))
    del agg, decrypted
    gc.collect()

    # Clients pre-weight before encrypting (untimed: the same cost as "encrypt").
    preweighted = _ckks_encrypt_all(pub, vectors * np.asarray(weights, dtype=np.float64)[:, None])
    samples, agg = _timed(partial(_ckks_flare_default, preweighted, total_weight), repeats)
    phases["aggregate_flare_default"] = Phase(tuple(samples), clients * size)
    del preweighted
    decrypted = np.asarray(agg.decrypt(secret_key))
    res.max_abs_error["flare_default"] = float(np.max(np.abs(decrypted - reference)))
    res.notes += [
        "single-key decryption: whoever holds the secret key can decrypt every upload",
        "aggregate_server_weighted multiplies each ciphertext by w_i/sum(w) and adds; "
        "aggregate_flare_default adds client-pre-weighted ciphertexts and multiplies the "
        "sum by 1/sum(w) once (FLARE's default: HEModelEncryptor weigh_by_local_iter=True)",
        "FLARE's server-side weighting followed by its separate 1/sum(w) multiply needs two "
        "rescales, which [60, 40, 40] does not have ('scale out of bounds'): the "
        "server-weighted variant folds 1/sum(w) into each weight",
        "decrypt times CKKSVector.decrypt() with the secret key (returns a Python list)",
    ]
    return res


# --- (c) plaintext ------------------------------------------------------------------------
def _bench_plaintext(vectors: F64, weights: list[int], repeats: int) -> tuple[SystemResult, F64]:
    clients, size = vectors.shape
    w = np.asarray(weights, dtype=np.float64)
    samples, mean = _timed(lambda: np.average(vectors, axis=0, weights=w), repeats)
    res = SystemResult(bytes_per_parameter=8.0, upload_bytes_per_client=8 * size)
    res.phases["aggregate"] = Phase(tuple(samples), clients * size)
    res.notes.append("numpy.average over float64 vectors; it is also the reference mean")
    return res, np.asarray(mean, dtype=np.float64)


# --- orchestration --------------------------------------------------------------------------
def _client_data(seed: int, size: int, clients: int, max_weight: int) -> tuple[F64, list[int]]:
    rng = np.random.default_rng([seed, size])
    vectors = rng.uniform(-VALUE_RANGE, VALUE_RANGE, size=(clients, size))
    weights = [int(w) for w in rng.integers(1, max_weight + 1, size=clients)]
    return vectors, weights


def _bench_size(
    size: int, args: argparse.Namespace, keys: KeySet, secret_ctx: Any, max_weight: int
) -> SizeResult:
    vectors, weights = _client_data(args.seed, size, args.clients, max_weight)
    _log(f"{size:,} parameters x {args.clients} clients: plaintext")
    plaintext, reference = _bench_plaintext(vectors, weights, args.repeats)
    _log(f"{size:,} parameters: secagg")
    secagg_result = _bench_secagg(vectors, weights, keys, args.repeats, reference)
    gc.collect()
    _log(f"{size:,} parameters: TenSEAL CKKS")
    ckks_result = _bench_ckks(vectors, weights, secret_ctx, args.repeats, reference)
    gc.collect()
    return SizeResult(size, weights, secagg_result, ckks_result, plaintext)


def _verdicts(result: SizeResult) -> list[Json]:
    ratios = result.ratios()
    a, b = result.secagg.phases, result.ckks.phases
    decrypt = a["partial_decrypt_per_keyholder"].throughput
    rows = [
        (
            "encrypt throughput >= 2x (b)",
            ratios["encrypt_throughput"] >= TARGET_ENCRYPT_RATIO,
            ratios["encrypt_throughput"],
            f"{_si(a['encrypt'].throughput)} vs {_si(b['encrypt'].throughput)} params/s "
            f"= {ratios['encrypt_throughput']:.2f}x",
        ),
        (
            "aggregate throughput >= 2x (b) [server weights each ciphertext]",
            ratios["aggregate_throughput"] >= TARGET_AGGREGATE_RATIO,
            ratios["aggregate_throughput"],
            f"{_si(a['aggregate'].throughput)} vs "
            f"{_si(b['aggregate_server_weighted'].throughput)} params/s "
            f"= {ratios['aggregate_throughput']:.2f}x",
        ),
        (
            "extra, not an issue target: aggregate >= 2x FLARE default (clients pre-weight)",
            ratios["aggregate_throughput_vs_flare_default"] >= TARGET_AGGREGATE_RATIO,
            ratios["aggregate_throughput_vs_flare_default"],
            f"{_si(a['aggregate'].throughput)} vs "
            f"{_si(b['aggregate_flare_default'].throughput)} params/s "
            f"= {ratios['aggregate_throughput_vs_flare_default']:.2f}x",
        ),
        (
            "bytes per parameter <= 0.6x (b)",
            ratios["bytes_per_parameter"] <= TARGET_BYTES_RATIO,
            ratios["bytes_per_parameter"],
            f"{result.secagg.bytes_per_parameter:.2f} vs {result.ckks.bytes_per_parameter:.2f} "
            f"bytes = {ratios['bytes_per_parameter']:.3f}x",
        ),
        (
            "threshold decryption >= 1M params/s per key holder",
            decrypt >= TARGET_DECRYPT_PER_KEYHOLDER,
            decrypt,
            f"{_si(decrypt)} params/s (one partial_decrypt of {result.size:,} parameters)",
        ),
    ]
    return [
        {"target": t, "pass": bool(ok), "value": v, "detail": d, "parameters": result.size}
        for t, ok, v, d in rows
    ]


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}"
    return f"{value:.2f}"


def _rate(phases: dict[str, Phase], name: str) -> str:
    return _si(phases[name].throughput) if name in phases else "-"


def _table(r: SizeResult) -> list[str]:
    """Rows of one size's table: metric, (a), (b), (c)."""
    a, b, c = r.secagg.phases, r.ckks.phases, r.plaintext.phases
    e2e = "partial_decrypt_per_keyholder", "combine"
    rows = [
        ("upload bytes/param", f"{r.secagg.bytes_per_parameter:.2f}", "", "8.00 (f64)"),
        ("encrypt params/s", _rate(a, "encrypt"), _rate(b, "encrypt"), "-"),
        ("serialize params/s", _rate(a, "serialize"), _rate(b, "serialize"), "-"),
        ("encrypt+serialize params/s", _si(_chain_throughput(a, "encrypt", "serialize")), "", "-"),
        ("parse upload (server) params/s", _rate(a, "parse"), _rate(b, "parse"), "-"),
        ("aggregate params/s", _rate(a, "aggregate"), "", _rate(c, "aggregate")),
        ("  (b) FLARE default, pre-weighted", "-", _rate(b, "aggregate_flare_default"), "-"),
        ("decrypt params/s (a: 1 key holder)", _rate(a, e2e[0]), _rate(b, "decrypt"), "-"),
        ("combine s", f"{a['combine'].seconds:.4f}", "-", "-"),
        ("decrypt end-to-end params/s", _si(_chain_throughput(a, *e2e)), "", "-"),
        ("max abs error", f"{r.secagg.max_abs_error['weighted_mean']:.2e}", "", "0 (reference)"),
    ]
    b_values = {
        "upload bytes/param": f"{r.ckks.bytes_per_parameter:.2f}",
        "encrypt+serialize params/s": _si(_chain_throughput(b, "encrypt", "serialize")),
        "aggregate params/s": _rate(b, "aggregate_server_weighted"),
        "decrypt end-to-end params/s": _rate(b, "decrypt") + " (1 key)",
        "max abs error": f"{r.ckks.max_abs_error['server_weighted']:.2e}",
    }
    head = f"{'metric':<36}{'(a) secagg BFV':>18}{'(b) TenSEAL CKKS':>20}{'(c) numpy':>16}"
    return [head] + [f"{m:<36}{x:>18}{y or b_values[m]:>20}{z:>16}" for m, x, y, z in rows]


def format_report(report: Json, results: Sequence[SizeResult]) -> str:
    """The human-readable tables and verdicts of a finished run."""
    cfg, keygen = report["config"], report["keygen"]
    lines = [
        f"secagg bench | {report['machine']['cpu_model']} | pinned to one CPU: "
        f"{report['threading']['pinned_cpu'] is not None} | medians of {cfg['repeats']} runs",
        f"command: {report['command']}",
        f"keygen: secagg dealerless {cfg['threshold']}-of-{cfg['keyholders']} (every party in "
        f"this process) {keygen['secagg']['seconds_median']:.3f} s; "
        f"TenSEAL CKKS context (single key) {keygen['ckks']['seconds_median']:.3f} s",
    ]
    for r in results:
        q = r.ratios()
        lines += [
            "",
            f"== {r.size:,} parameters x {cfg['clients']} clients, weights 1..{cfg['max_weight']}",
            *_table(r),
            f"secagg / (b): encrypt {q['encrypt_throughput']:.2f}x, "
            f"encrypt+serialize {q['encrypt_and_serialize_throughput']:.2f}x, "
            f"aggregate {q['aggregate_throughput']:.2f}x "
            f"({q['aggregate_throughput_vs_flare_default']:.2f}x vs FLARE default), "
            f"bytes/param {q['bytes_per_parameter']:.3f}x",
        ]
    lines += ["", f"verdicts at {results[-1].size:,} parameters (largest size):"]
    for v in report["verdicts"]:
        lines.append(f"  {'PASS' if v['pass'] else 'FAIL'}  {v['target']}: {v['detail']}")
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (used by ``secagg bench``).

    Parameters
    ----------
    parser
        The parser (or sub-command parser) to extend.
    """
    parser.add_argument(
        "--sizes",
        type=_positive_int,
        nargs="+",
        default=[100_000, 1_000_000],
        metavar="N",
        help="vector lengths (model parameters) to measure (default: 100000 1000000)",
    )
    parser.add_argument("--clients", type=_positive_int, default=10, help="clients (default: 10)")
    parser.add_argument(
        "--keyholders", type=_positive_int, default=5, help="key holders n (default: 5)"
    )
    parser.add_argument(
        "--threshold", type=_positive_int, default=3, help="decryption threshold t (default: 3)"
    )
    parser.add_argument(
        "--repeats", type=_positive_int, default=3, help="runs per timed phase (default: 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random vectors")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the process to one CPU while measuring",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; print the table, optionally the JSON.

    Parameters
    ----------
    args
        Options from :func:`add_arguments`.

    Returns
    -------
    int
        0 on completion (failed targets are reported, not signalled), 2 for invalid
        options, 1 if secagg raised or the JSON could not be written.

    Notes
    -----
    Key generation runs every key holder in this process: benchmark keys, never real ones.
    """
    params = Parameters.default()
    if not 1 <= args.threshold <= args.keyholders <= params.max_keyholders:
        print(
            f"secagg bench: need 1 <= threshold <= keyholders <= {params.max_keyholders}",
            file=sys.stderr,
        )
        return 2
    max_weight = min(MAX_CLIENT_WEIGHT, params.max_total_weight // args.clients)
    if max_weight < 1:
        print("secagg bench: too many clients for the weight budget", file=sys.stderr)
        return 2
    sizes = sorted(set(args.sizes))
    report: Json = {
        "benchmark": "secagg bench",
        "schema_version": 1,
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
        "config": {
            "sizes": sizes,
            "clients": args.clients,
            "keyholders": args.keyholders,
            "threshold": args.threshold,
            "repeats": args.repeats,
            "seed": args.seed,
            "max_weight": max_weight,
            "value_range": [-VALUE_RANGE, VALUE_RANGE],
            "statistic": "median",
        },
        "machine": machine_info(),
        "secagg_parameters": params.describe(),
        "ckks_parameters": {
            "poly_modulus_degree": CKKS_POLY_MODULUS_DEGREE,
            "coeff_mod_bit_sizes": list(CKKS_COEFF_MOD_BIT_SIZES),
            "global_scale": f"2^{CKKS_SCALE_BITS}",
            "galois_keys": False,
            "slots_per_ciphertext": CKKS_POLY_MODULUS_DEGREE // 2,
        },
    }
    try:
        with _one_core(args.pin) as threading_info:
            report["threading"] = threading_info
            _log(f"key generation ({args.threshold}-of-{args.keyholders})")
            samples, keys = _timed(
                lambda: dealerless_keygen(n=args.keyholders, t=args.threshold, params=params),
                args.repeats,
            )
            ckks_samples, secret_ctx = _timed(_ckks_context, args.repeats)
            report["keygen"] = {
                "secagg": Phase(tuple(samples), 1).to_json(),
                "ckks": Phase(tuple(ckks_samples), 1).to_json(),
            }
            results = [_bench_size(s, args, keys, secret_ctx, max_weight) for s in sizes]
    except SecAggError as exc:
        print(f"secagg bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report["results"] = [r.to_json() for r in results]
    report["verdicts"] = _verdicts(results[-1])
    print(format_report(report, results))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"secagg bench: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
        _log(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m secagg.bench``.

    Parameters
    ----------
    argv
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        The exit status (see :func:`run`).
    """
    parser = argparse.ArgumentParser(
        prog="secagg bench",
        description="Benchmark secagg against TenSEAL CKKS (NVIDIA FLARE style) and numpy.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
