"""Reads an ESC/POS job back, as a printer would: the commands our receipts use, and
the pictures and text they print. Anything else in a job is an error, so a stray byte
cannot hide.

Written from the ESC/POS command reference, not from python-escpos: tests check the
driver's bytes against this, not against the library that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

ESC, GS, LF = 0x1B, 0x1D, 0x0A


@dataclass
class Job:
    commands: list[tuple[str, bytes | int]] = field(default_factory=list)  # (name, argument)
    bands: list[Image.Image] = field(default_factory=list)                 # GS v 0 pictures
    text: list[tuple[int | None, bytes]] = field(default_factory=list)     # (code page, bytes)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.commands]

    def bitmap(self) -> Image.Image:
        """The raster bands stacked as printed; black (0) where the head burns a dot."""
        widths = {band.width for band in self.bands}
        assert len(widths) == 1, f"bands of different widths: {widths}"
        image = Image.new("1", (widths.pop(), sum(b.height for b in self.bands)), 1)
        y = 0
        for band in self.bands:
            image.paste(band, (0, y))
            y += band.height
        return image


def read_job(data: bytes) -> Job:
    job, i, page = Job(), 0, None
    text = bytearray()

    def flush_text() -> None:
        if text:
            job.text.append((page, bytes(text)))
            text.clear()

    while i < len(data):
        b = data[i]
        if b == ESC and data[i + 1:i + 2] == b"@":
            flush_text()
            job.commands.append(("init", b"")); i += 2
        elif b == ESC and data[i + 1:i + 2] == b"d":
            flush_text()
            job.commands.append(("feed", data[i + 2])); i += 3
        elif b == ESC and data[i + 1:i + 2] == b"t":
            flush_text()
            page = data[i + 2]
            job.commands.append(("codepage", page)); i += 3
        elif b == GS and data[i + 1:i + 2] == b"V":
            flush_text()
            job.commands.append(("cut", data[i + 2])); i += 3
        elif b == GS and data[i + 1:i + 3] == b"v0":
            flush_text()
            mode = data[i + 3]
            width_bytes = data[i + 4] | data[i + 5] << 8
            rows = data[i + 6] | data[i + 7] << 8
            payload = data[i + 8:i + 8 + width_bytes * rows]
            assert len(payload) == width_bytes * rows, "raster data cut short"
            # In GS v 0 a set bit is a black dot; in a PIL "1" image a set bit is white.
            band = Image.frombytes("1", (width_bytes * 8, rows), bytes(255 - v for v in payload))
            job.bands.append(band)
            job.commands.append(("raster", mode)); i += 8 + width_bytes * rows
        elif b == LF or b >= 0x20:
            if b == LF:
                text.append(b); flush_text()
            else:
                text.append(b)
            i += 1
        else:
            raise AssertionError(f"unexpected byte 0x{b:02x} at {i}: {data[i:i + 8]!r}")
    flush_text()
    return job
