"""aggregator: seed documents in, one Atom feed per topic out."""

__version__ = "0.1.0"
