"""cardlab: co-branded credit-card research lab on a synthetic world with a sealed oracle."""

__version__ = "0.1.0"
