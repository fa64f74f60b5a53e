"""Settings of the tile stage (``geotiler tile``, pipeline section ``tile``): one typed model."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from geotiler.config import StageSettings
from geotiler.tiles.balance import parse_balance
from geotiler.tiles.decisions import DecisionSettings
from geotiler.tiles.filters import parse_filter
from geotiler.tiles.plan import PlanSettings
from geotiler.tiles.splits import SPLIT_NAMES, parse_split


class TileSettings(StageSettings):
    """Settings of ``geotiler tile``; ``None`` means "let the planner choose" where it can."""

    size: int | None = Field(
        default=None, ge=8, description="tile side in pixels (default: chosen from the scenes)"
    )
    overlap: int = Field(default=0, ge=0, description="pixels shared by neighbouring tiles")
    filters: tuple[str, ...] = ()
    balance: str = "none"
    split: str = "auto"
    split_aoi: dict[str, str] = Field(default_factory=dict, description="split -> vector file")
    seed: int = 0
    block_tiles: int | None = Field(default=None, ge=1, description="split block side, tiles")
    aoi: str | None = Field(default=None, description="tile only where these polygons are")
    nodata: int | None = Field(default=None, ge=0, le=255)
    classes: str | None = Field(default=None, description="class table name or file")
    skip_bad: bool = Field(default=False, description="skip unreadable scenes, listing them")
    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1)
    shard_tiles: int | None = Field(default=None, ge=1, description="tiles per shard file")
    band_memory_mb: int = Field(default=256, ge=16, description="tile data read per band")
    gdal_cache_mb: int = Field(
        default=64, ge=8, description="GDAL block cache (blocks are read once: small is enough)"
    )
    cloud_brightness: float = 3000.0
    cloud_whiteness: float = 0.2

    @model_validator(mode="after")
    def _check(self) -> TileSettings:
        if self.size is not None and self.overlap >= self.size:
            raise ValueError(f"overlap {self.overlap} must be smaller than size {self.size}")
        for spec in self.filters:
            parse_filter(spec)
        parse_balance(self.balance)
        parse_split(self.split)
        return self

    @field_validator("split_aoi")
    @classmethod
    def _split_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in SPLIT_NAMES:
                raise ValueError(f"unknown split {name!r} (use {', '.join(SPLIT_NAMES)})")
        return value

    def plan_settings(self) -> PlanSettings:
        return PlanSettings(
            size_px=self.size,
            overlap_px=self.overlap,
            aoi=self.aoi,
            cloud_brightness=self.cloud_brightness,
            cloud_whiteness=self.cloud_whiteness,
        )

    def decisions(self) -> DecisionSettings:
        return DecisionSettings(
            filters=tuple(parse_filter(f) for f in self.filters),
            balance=parse_balance(self.balance),
            split=parse_split(self.split),
            seed=self.seed,
            block_tiles=self.block_tiles,
            split_areas=tuple(sorted(self.split_aoi.items())),
        )
