"""Device drivers: one adapter per kind of device, each with a simulated twin.

Drivers import the hardware libraries and nothing of ours but `drivers.base`.
"""

from drivers.base import (
    SCANNERS,
    DeviceState,
    Read,
    Scanner,
    ScannerConfig,
    SimulatedScanner,
    SimulatedScannerConfig,
    StdinScanner,
    StdinScannerConfig,
    create_scanner,
    register,
)

__all__ = [
    "SCANNERS",
    "DeviceState",
    "Read",
    "Scanner",
    "ScannerConfig",
    "SimulatedScanner",
    "SimulatedScannerConfig",
    "StdinScanner",
    "StdinScannerConfig",
    "create_scanner",
    "register",
]
