"""The label sheets' layouts and the `[labels]` section of the server's config.

Pure pydantic, apart from `server.reports.labels` (which draws the sheets with reportlab):
the server's config validates this section at every start and every CLI command, and
must not pay for importing a PDF library to do it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PAGE_MM", "PRESETS", "LabelLayout", "LabelsConfig"]

# Width and height of each page, millimetres.
PAGE_MM: dict[str, tuple[float, float]] = {"A4": (210.0, 297.0), "A5": (148.0, 210.0),
                                           "letter": (215.9, 279.4)}


class LabelLayout(BaseModel):
    """One kind of label stock: where each label sits on the sheet, in millimetres."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")
    page: Literal["A4", "A5", "letter"] = "A4"
    columns: int = Field(ge=1, le=20)
    rows: int = Field(ge=1, le=40)
    label_width_mm: float = Field(gt=15)
    label_height_mm: float = Field(gt=10)
    top_margin_mm: float = Field(ge=0)
    left_margin_mm: float = Field(ge=0)
    horizontal_pitch_mm: float = Field(gt=0)   # left edge to left edge of the next column
    vertical_pitch_mm: float = Field(gt=0)     # top edge to top edge of the next row
    # Kept blank inside each label: printers do not print to the very edge of a sheet.
    padding_mm: float = Field(default=2.0, ge=0, le=8)

    @model_validator(mode="after")
    def _fits(self) -> LabelLayout:
        width, height = PAGE_MM[self.page]
        if self.columns > 1 and self.horizontal_pitch_mm < self.label_width_mm:
            raise ValueError("horizontal_pitch_mm is less than label_width_mm: labels overlap")
        if self.rows > 1 and self.vertical_pitch_mm < self.label_height_mm:
            raise ValueError("vertical_pitch_mm is less than label_height_mm: labels overlap")
        right = self.left_margin_mm + (self.columns - 1) * self.horizontal_pitch_mm + self.label_width_mm
        bottom = self.top_margin_mm + (self.rows - 1) * self.vertical_pitch_mm + self.label_height_mm
        if right > width + 0.05 or bottom > height + 0.05:
            raise ValueError(f"the labels run off the {self.page} page "
                             f"({right:.1f} x {bottom:.1f} mm of {width:.0f} x {height:.0f} mm)")
        return self

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows


PRESETS: dict[str, LabelLayout] = {layout.name: layout for layout in (
    # 24 per sheet, edge to edge (Avery 3474, Tanex 24 nhãn, Label Planet LP24/70).
    LabelLayout(name="3x8", columns=3, rows=8, label_width_mm=70, label_height_mm=37,
                top_margin_mm=0.5, left_margin_mm=0, horizontal_pitch_mm=70,
                vertical_pitch_mm=37, padding_mm=3),
    # 40 per sheet, no gaps: (210 - 4 x 48.5) / 2 = 8 and (297 - 10 x 25.4) / 2 = 21.5.
    LabelLayout(name="4x10", columns=4, rows=10, label_width_mm=48.5, label_height_mm=25.4,
                top_margin_mm=21.5, left_margin_mm=8, horizontal_pitch_mm=48.5,
                vertical_pitch_mm=25.4, padding_mm=1.5),
    # 21 per sheet (Avery L7160, Label Planet LP21/63): 2.54 mm between columns.
    LabelLayout(name="3x7", columns=3, rows=7, label_width_mm=63.5, label_height_mm=38.1,
                top_margin_mm=15.15, left_margin_mm=7.21, horizontal_pitch_mm=66.04,
                vertical_pitch_mm=38.1),
    # 14 per sheet (Avery L7163, Label Planet LP14/99): 2.5 mm between columns.
    LabelLayout(name="2x7", columns=2, rows=7, label_width_mm=99.1, label_height_mm=38.1,
                top_margin_mm=15.15, left_margin_mm=4.65, horizontal_pitch_mm=101.6,
                vertical_pitch_mm=38.1),
)}


class LabelsConfig(BaseModel):
    """The `[labels]` section of the server's config."""

    model_config = ConfigDict(extra="forbid")

    # A preset (3x8, 4x10, 3x7, 2x7) or the name of one of `layouts`.
    layout: str = "3x8"
    # The school's own label stock, when no preset matches it.
    layouts: list[LabelLayout] = Field(default_factory=list)
    # Print the school's name on top of each label.
    school_line: bool = True
    # What that line says (THCS Nhựt Tảo); default: school_name without "Trường ".
    school_short: str | None = Field(default=None, max_length=80)

    @model_validator(mode="after")
    def _known_layout(self) -> LabelsConfig:
        names = [layout.name for layout in self.layouts]
        if len(set(names)) != len(names):
            raise ValueError(f"a layout name is listed twice in labels.layouts: {names}")
        if self.layout not in PRESETS and self.layout not in names:
            raise ValueError(f"unknown label layout {self.layout!r}: use one of "
                             f"{', '.join([*PRESETS, *names])}")
        return self
