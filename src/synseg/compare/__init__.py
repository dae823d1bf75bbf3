"""`make compare`: every method on the same data, backbone, budget and seeds, and its report."""
