"""myoqa: answers questions about myoclonus with ranked, highlighted, cited source passages."""

__version__ = "0.1.0"
