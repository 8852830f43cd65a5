"""Device drivers: one adapter per kind of device, each with a simulated twin.

Drivers import the hardware libraries and nothing of ours but `drivers.base`.
"""

from typing import Any

from drivers.base import (
    SCANNERS,
    DeviceState,
    DeviceUnavailable,
    DriverConfig,
    MultiScanner,
    Read,
    ReconnectingScanner,
    Registry,
    Scanner,
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
    "DeviceUnavailable",
    "DriverConfig",
    "MultiScanner",
    "Read",
    "ReconnectingScanner",
    "Registry",
    "Scanner",
    "ScannerConfig",
    "SimulatedScanner",
    "SimulatedScannerConfig",
    "StdinScanner",
    "StdinScannerConfig",
    "create_scanner",
    "register",
]


def __getattr__(name: str) -> Any:
    # Built on first use: it imports every scanner driver module (see `drivers.base`).
    if name == "ScannerConfig":
        return SCANNERS.config_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
