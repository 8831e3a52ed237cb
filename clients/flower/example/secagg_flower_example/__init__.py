"""A Flower app whose aggregation is secagg's: an MLP on the scikit-learn digits."""
