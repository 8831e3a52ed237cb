"""The verdicts, tables and text report of a ``secagg bench`` run."""

from __future__ import annotations

from collections.abc import Sequence

from secagg.bench.results import Json, Phase, SizeResult, chain_throughput

#: Acceptance targets, checked at the largest size.
TARGET_ENCRYPT_RATIO = 2.0
TARGET_AGGREGATE_RATIO = 2.0
TARGET_BYTES_RATIO = 0.6
TARGET_DECRYPT_PER_KEYHOLDER = 1e6


def verdicts(result: SizeResult) -> list[Json]:
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
        ("encrypt+serialize params/s", _si(chain_throughput(a, "encrypt", "serialize")), "", "-"),
        ("parse upload (server) params/s", _rate(a, "parse"), _rate(b, "parse"), "-"),
        ("aggregate params/s", _rate(a, "aggregate"), "", _rate(c, "aggregate")),
        ("  (b) FLARE default, pre-weighted", "-", _rate(b, "aggregate_flare_default"), "-"),
        ("decrypt params/s (a: 1 key holder)", _rate(a, e2e[0]), _rate(b, "decrypt"), "-"),
        ("combine s", f"{a['combine'].seconds:.4f}", "-", "-"),
        ("decrypt end-to-end params/s", _si(chain_throughput(a, *e2e)), "", "-"),
        ("max abs error", f"{r.secagg.max_abs_error['weighted_mean']:.2e}", "", "0 (reference)"),
    ]
    b_values = {
        "upload bytes/param": f"{r.ckks.bytes_per_parameter:.2f}",
        "encrypt+serialize params/s": _si(chain_throughput(b, "encrypt", "serialize")),
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
