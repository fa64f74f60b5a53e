"""GDAL creation options (``--co NAME=VALUE``) for every GeoTIFF geotiler writes.

As ``rio`` and ``gdal_translate`` take them: :func:`parse_creation_options` reads the
``NAME=VALUE`` strings, :func:`with_creation_options` lays them over geotiler's defaults (the user's
win, names compared case aside), and :func:`check_creation_options` has GDAL itself judge them on
a tiny in-memory raster before any work starts, so a misspelt name or a value GDAL would silently
ignore is one clear line instead of a surprise in the output. With ``--cog`` the options go to
GDAL's COG driver (``COMPRESS``, ``LEVEL``, ``PREDICTOR``, ``BLOCKSIZE``, ``OVERVIEWS``...), since
that is what writes the final file.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from geotiler.errors import InputError

Driver = Literal["GTiff", "COG"]
DOCS = {
    "GTiff": "https://gdal.org/en/stable/drivers/raster/gtiff.html#creation-options",
    "COG": "https://gdal.org/en/stable/drivers/raster/cog.html#creation-options",
}
_NO = ("NO", "FALSE", "OFF", "0")
TRIAL = "geotiler-creation-options-"
_PREDICTOR_CODECS = ("DEFLATE", "LZW", "ZSTD", "LZMA", "LERC_DEFLATE", "LERC_ZSTD")
# rasterio.open arguments that are not creation options: a --co with these names is a mistake.
_NOT_OPTIONS = ("DRIVER", "WIDTH", "HEIGHT", "COUNT", "DTYPE", "CRS", "TRANSFORM", "NODATA")


def parse_creation_options(values: Iterable[str] | None) -> dict[str, str]:
    """``["COMPRESS=LZW", "zstd_level=9"]`` -> ``{"COMPRESS": "LZW", "ZSTD_LEVEL": "9"}``.

    Raises:
        InputError: an entry without ``=`` or a name, or a name given twice.
    """
    options: dict[str, str] = {}
    for value in values or ():
        name, sep, setting = value.partition("=")
        name = name.strip().upper()
        if not sep or not name or not setting.strip():
            raise InputError(
                f"--co {value}: a creation option is NAME=VALUE (e.g. --co COMPRESS=LZW)"
            )
        if name in options:
            raise InputError(f"--co {name}: given twice ({options[name]} and {setting}); keep one")
        if name in _NOT_OPTIONS:
            raise InputError(
                f"--co {value}: {name} is not a GDAL creation option; geotiler sets it from the "
                "data (see --src-nodata / --dst-nodata for nodata)"
            )
        options[name] = setting.strip()
    return options


def normalise_creation_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Options from a settings file (``{compress: zstd, zstd_level: 9}``) as GDAL takes them."""
    return parse_creation_options(f"{name}={value}" for name, value in (options or {}).items())


def with_creation_options(
    profile: Mapping[str, Any], options: Mapping[str, str] | None
) -> dict[str, Any]:
    """``profile`` with ``options`` laid over it (names compared case aside; options win).

    A user's ``COMPRESS`` without a ``PREDICTOR`` drops geotiler's predictor when the new codec
    takes none (JPEG, WEBP, NONE...), so GDAL does not refuse the pair.
    """
    if not options:
        return dict(profile)
    given = {name.upper() for name in options}
    merged = {key: value for key, value in profile.items() if key.upper() not in given}
    if "COMPRESS" in given and "PREDICTOR" not in given:
        codec = str(options.get("COMPRESS", "")).upper()
        if codec not in _PREDICTOR_CODECS:
            merged = {key: value for key, value in merged.items() if key.upper() != "PREDICTOR"}
    merged.update({name.upper(): value for name, value in options.items()})
    return merged


def check_creation_options(
    options: Mapping[str, str] | None,
    profile: Mapping[str, Any],
    *,
    cog: bool = False,
    output: object = None,
) -> None:
    """Have GDAL write a tiny raster of ``profile``'s dtype and bands with ``options``; refuse
    what it rejects. The options are laid over ``profile``'s, or with ``cog`` go alone to the
    COG driver.

    Raises:
        InputError: naming the output, the option, GDAL's complaint and where the names are listed.
    """
    if not options:
        return
    driver: Driver = "COG" if cog else "GTiff"
    dtype, count = str(profile.get("dtype", "uint8")), int(profile.get("count", 1))
    defaults = {} if cog else {k: v for k, v in profile.items() if k.upper() not in _NOT_OPTIONS}
    profile = with_creation_options(defaults, options)
    where = f"{output}: " if output is not None else ""
    tiled = str(profile.get("TILED", profile.get("tiled", True))).upper() not in _NO
    for name in ("BLOCKXSIZE", "BLOCKYSIZE", "BLOCKSIZE") if tiled or driver == "COG" else ():
        value = options.get(name)
        if value is not None and (not value.isdigit() or int(value) % 16):
            raise InputError(
                f"{where}--co {name}={value}: tiles are a whole number of 16 px (e.g. 256, 512)"
            )
    with _gdal_complaints() as complaints:
        try:
            _trial(profile, driver=driver, dtype=dtype, count=count)
        except (RasterioError, CPLE_BaseError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            complaints.append(reason.split(".tif: ", 1)[-1] if TRIAL in reason else reason)
    for complaint in complaints:
        culprit = _culprit(complaint, options)
        shown = f"--co {culprit}={options[culprit]}" if culprit else "--co"
        raise InputError(
            f"{where}{shown}: {complaint.rstrip('.')} (GDAL {driver} driver); its creation "
            f"options are listed at {DOCS[driver]}"
        )


def _trial(profile: Mapping[str, Any], *, driver: Driver, dtype: str, count: int) -> None:
    size = 32
    shape = {"width": size, "height": size, "count": count, "dtype": dtype}
    name = f"/vsimem/{TRIAL}{uuid.uuid4().hex}"
    data = np.zeros((count, size, size), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        _write_trial(name, data, shape, profile, driver)


def _write_trial(
    name: str, data: np.ndarray, shape: dict[str, Any], profile: Mapping[str, Any], driver: Driver
) -> None:
    if driver == "GTiff":
        try:
            with rasterio.open(f"{name}.tif", "w", driver="GTiff", **shape, **profile) as dst:
                dst.write(data)
        finally:
            _unlink(f"{name}.tif")
        return
    from rasterio.shutil import copy as rio_copy

    try:
        with rasterio.open(f"{name}.src.tif", "w", driver="GTiff", **shape) as src:
            src.write(data)
        rio_copy(f"{name}.src.tif", f"{name}.tif", driver="COG", **profile)
    finally:
        _unlink(f"{name}.src.tif")
        _unlink(f"{name}.tif")


def _unlink(name: str) -> None:
    from rasterio.shutil import delete

    with suppress(RasterioError):
        delete(name)


def _culprit(complaint: str, options: Mapping[str, str]) -> str | None:
    upper = complaint.upper()
    for name in sorted(options, key=len, reverse=True):
        if name in upper:
            return name
    return None


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for code in ("CPLE_NotSupported in ", "CPLE_IllegalArg in ", "CPLE_AppDefined in "):
            if message.startswith(code):
                self.sink.append(message[len(code) :].strip())


@contextmanager
def _gdal_complaints() -> Iterator[list[str]]:
    """GDAL's warnings while the block runs (rasterio logs them on ``rasterio._env``)."""
    complaints: list[str] = []
    logger = logging.getLogger("rasterio._env")
    handler = _Collect(complaints)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # reported once, as the error below
    try:
        yield complaints
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
