"""The ServerApp: FedAvg whose aggregate is secagg's endorsed release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Result

from clients.flower import ModelLayout, SecAggFedAvg

from .task import initial_arrays

app = ServerApp()


def run(grid: Grid, config: dict[str, object], *, secagg: bool = True) -> Result:
    """The federated run: ``num-server-rounds`` rounds of FedAvg on every node.

    ``secagg=False`` runs Flower's plain FedAvg (the plaintext baseline).
    """
    nodes = len(list(grid.get_node_ids()))
    strategy = (
        SecAggFedAvg(
            secagg_dir=str(config["server-secagg-dir"]),
            fraction_evaluate=0.0,
            min_train_nodes=nodes,
            min_available_nodes=nodes,
        )
        if secagg
        else FedAvg(fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes)
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=initial_arrays(int(str(config["seed"]))),
        num_rounds=int(str(config["num-server-rounds"])),
        train_config=ConfigRecord({"lr": float(str(config["lr"]))}),
    )
    if config.get("result-file"):
        vector = ModelLayout.of(result.arrays).flatten(result.arrays)
        np.save(Path(str(config["result-file"])), vector)
    return result


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation; server-secagg-dir comes from the run config (the server's own choice)."""
    run(grid, dict(context.run_config))
