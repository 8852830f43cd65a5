"""The station runtime: the session state machine, the MQTT link, the runners."""
