"""Composition root: the CLI and the demo, the only code that joins server and kiosk."""
