"""What ``secagg bench`` measured: timed phases, per-system and per-size results."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


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
            "encrypt_and_serialize_throughput": chain_throughput(a, "encrypt", "serialize")
            / chain_throughput(b, "encrypt", "serialize"),
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


def chain_throughput(phases: dict[str, Phase], *names: str) -> float:
    """Throughput of phases run one after the other."""
    return phases[names[0]].parameters / sum(phases[n].seconds for n in names)
