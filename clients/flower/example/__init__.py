"""The example Flower app (a ``flwr run`` project; see README.md)."""
