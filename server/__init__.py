"""The library server: catalogue, readers, circulation rules, the loan ledger, MQTT."""

__version__ = "0.1.0"
