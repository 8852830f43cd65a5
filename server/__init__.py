"""The library server: catalogue, readers, circulation rules, the loan ledger, MQTT."""
