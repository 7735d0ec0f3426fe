"""Normalised metadata of TIFF files: pixel sizes, z step, frame interval, channels, times.

:func:`file_metadata` reads what a file's writer recorded (ImageJ's description, OME-XML,
Micro-Manager's and NDTiff's JSON, the resolution tags) into one dict of
:data:`PHYSICAL_METADATA_KEYS` in micrometres or the file's unit and seconds, plus per-plane
time stamps where the file has them. A value that is absent, malformed, or a known writer
default (72/96 dpi) is None: metadata never makes the pixels unreadable.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tifffile

__all__ = ["PHYSICAL_METADATA_KEYS", "file_metadata", "micromanager_summary_metadata",
           "ome_plane_times", "z_step_from_positions"]

#: The normalised metadata keys every reader has (None where the file does not say).
PHYSICAL_METADATA_KEYS = ("pixel_size_x", "pixel_size_y", "z_step", "unit", "frame_interval",
                          "channel_names", "software")



def _unescape(text: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


def _positive(value: Any) -> float | None:
    """``value`` as a positive finite float; None when absent, not a number, zero or negative.

    Metadata written by hand or by other software may hold anything: a bad value is unknown,
    it does not make the pixels unreadable.
    """
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _resolution(page) -> tuple[float | None, float | None]:
    """Pixels per unit of the page's XResolution and YResolution tags.

    None where a tag is absent or its value is not a positive finite number: tifffile's
    ``page.resolution`` reads an absent tag as 1 and a rational ``n/0`` as ``n``.
    """
    values = []
    for code in (282, 283):
        value = page.tags.valueof(code)
        if isinstance(value, tuple) and len(value) == 2:
            numerator, denominator = value
            value = numerator / denominator if denominator else None
        values.append(_positive(value))
    return values[0], values[1]


def file_metadata(tif: tifffile.TiffFile, key, series: int, axes: str,
                  shape: tuple[int, ...], ndtiff_index: list[tuple] | None = None,
                  resolution_page=None) -> tuple[dict[str, Any], np.ndarray | None]:
    """Normalised metadata dict and per-plane time stamps.

    ``key`` is the page that describes the planes read; the resolution tags are those of
    ``resolution_page`` (default ``key``): the full-resolution key page of the series, also
    for a pyramid level (whose pixel sizes are scaled after).

    ``ndtiff_index``: the entries of an NDTiff dataset's index
    (:func:`._planetimes.read_ndtiff_index`), which name its channels (rather than the
    summary's ``ChNames``, when the entries name them).

    Pixel sizes come from the resolution tags only in centimetres, or in the millimetres and
    micrometres that tifffile also writes (or ImageJ's own unit): resolutions in inches are the
    print defaults of most writers (72 dpi), not pixel sizes, and so are 72 and 96 dpi in any
    other unit (28.35 and 37.8 pixels/cm; 0.002835 pixels/µm in an ImageJ file calibrated in
    microns), and 1 pixel per centimetre, millimetre or micrometre.
    """
    meta: dict[str, Any] = dict.fromkeys(PHYSICAL_METADATA_KEYS)
    page0 = tif.pages.first
    meta["software"] = page0.software or None
    resolution_page = key if resolution_page is None else resolution_page
    xres, yres = _resolution(resolution_page)
    per_unit = _MICROMETRES_PER_RESOLUTION_UNIT.get(resolution_page.resolutionunit)
    if per_unit and xres and yres and not _print_default(xres, yres, per_unit * 1e-6):
        meta.update(pixel_size_x=per_unit / xres, pixel_size_y=per_unit / yres, unit="µm")
    if key.colormap is not None:
        meta["colormap"] = key.colormap
    timestamps = None
    if tif.is_imagej:
        _imagej_metadata(tif.imagej_metadata or {}, page0, meta)
    if tif.is_ome and tif.ome_metadata:
        timestamps = ome_metadata(tif.ome_metadata, series, axes, shape, meta)
        if page0.is_ome:  # the file's own, also where open_tiff gave tifffile a cleaned copy
            meta["ome_xml"] = page0.description
    if tif.is_micromanager:
        _micromanager_metadata(tif.micromanager_metadata, page0, meta)
    if ndtiff_index is not None:  # (in tifffile's c order, which a summary's ChNames may not be)
        meta["channel_names"] = _ndtiff_channel_names(ndtiff_index) or meta["channel_names"]
    return meta, timestamps


def z_step_from_positions(meta: dict[str, Any], z_positions: np.ndarray | None, axes: str,
                          shape: tuple[int, ...]) -> None:
    """Set ``meta['z_step']`` from the planes' intended z positions, if the file gave none.

    Micro-Manager's acquisition engine (NDTiff datasets) records each image's intended focus
    (``ZPosition_um_Intended``, µm) and may leave the z step out of its summary. The step is
    the spacing of the positions along ``z``, if it is the same (to one part in a million)
    throughout every stack whose positions are all known; else it stays unknown.

    Parameters
    ----------
    meta : dict
        Normalised metadata (its ``unit`` becomes ``µm`` if it had none).
    z_positions : numpy.ndarray or None
        Intended z position of each plane (NaN: unknown) in C order of ``axes``, or None.
    axes, shape : str, tuple of int
        pims names and sizes of the non-plane axes.
    """
    if meta["z_step"] is not None or z_positions is None or "z" not in axes:
        return
    z = axes.index("z")
    if shape[z] < 2:
        return
    stacks = np.moveaxis(z_positions.reshape(shape), z, -1).reshape(-1, shape[z])
    stacks = stacks[np.isfinite(stacks).all(axis=1)]
    steps = np.diff(stacks, axis=1)
    if not steps.size or steps[0, 0] == 0 or not np.allclose(steps, steps[0, 0], rtol=1e-6,
                                                              atol=0):
        return
    meta["unit"] = meta["unit"] or "µm"
    meta["z_step"] = _in_unit(abs(float(stacks[0, -1] - stacks[0, 0])) / (shape[z] - 1), "µm",
                              meta["unit"])


def _ndtiff_channel_names(entries: list[tuple]) -> list[str] | None:
    """Return the channel names of an NDTiff dataset from its index ``entries``, or None.

    Each image's entry names its channel; tifffile numbers the names of the ``c`` axis in the
    order they first appear there. None when the channels are numbers, or there are no
    entries (the index is unreadable).
    """
    names: list[str] = []
    for axes, *_ in entries:
        name = axes.get("channel")
        if not isinstance(name, str):
            return None
        if name not in names:
            names.append(name)
    return names or None


def _print_default(xres: float, yres: float, metres_per_unit: float) -> bool:
    """Tell whether resolution tags hold a writer's default rather than a pixel size.

    Such are 1 pixel per unit, and 72 or 96 dpi in whatever unit (``metres_per_unit`` long)
    the tags count pixels per.
    """
    return (xres, yres) == (1, 1) or (_at_print_resolution(xres, metres_per_unit)
                                      and _at_print_resolution(yres, metres_per_unit))


def _at_print_resolution(pixels_per_unit: float, metres_per_unit: float | None) -> bool:
    """Tell whether a resolution in pixels per a unit ``metres_per_unit`` long is 72 or 96 dpi.

    To 0.05 dpi, the rounding of the writers that convert such defaults to centimetres or
    micrometres (28.34 pixels/cm, 2834/1000000 pixels/µm). False for an unknown unit (None).
    """
    if metres_per_unit is None:
        return False
    dpi = pixels_per_unit * _METRES_PER_INCH / metres_per_unit
    return any(abs(dpi - print_dpi) < 0.05 for print_dpi in _PRINT_DPI)


def _length_unit(unit: str) -> str:
    """Return the unit as written, with the spellings of micrometre normalised to ``µm``."""
    return "µm" if unit in ("micron", "microns", "um", "\u03bcm") else unit


# powers of ten of a metre
_METRE_EXPONENTS = {"km": 3, "m": 0, "cm": -2, "mm": -3, "µm": -6, "nm": -9, "Å": -10, "pm": -12}


def _metres_per(unit: str) -> float | None:
    """Length of the length ``unit`` (as :func:`_length_unit` spells it) in metres, or None."""
    if unit in ("inch", "in"):
        return _METRES_PER_INCH
    exponent = _METRE_EXPONENTS.get(unit)
    return None if exponent is None else 10.0**exponent


def _in_unit(value: float | None, unit: str, target: str) -> float | None:
    """``value`` in length ``unit`` expressed in ``target`` (None when either is unknown)."""
    if value is None or unit == target:
        return value
    if unit not in _METRE_EXPONENTS or target not in _METRE_EXPONENTS:
        return None
    shift = _METRE_EXPONENTS[unit] - _METRE_EXPONENTS[target]
    return value * 10**shift if shift >= 0 else value / 10**-shift


def _imagej_metadata(ij: dict[str, Any], page0, meta: dict[str, Any]) -> None:
    """Update ``meta`` from ImageJ's description ``ij``.

    ImageJ writes the resolution tags in pixels per ``unit`` (their ResolutionUnit is inch for
    ``unit=inch``, centimetre for ``cm``, else none; 72 or 96 dpi expressed in that unit are a
    print default, no pixel size; tags per centimetre with ``unit=um``, as Micro-Manager
    writes them, are converted to µm, as ImageJ does), the y and z calibrations in ``yunit`` and
    ``zunit`` when they differ from ``unit`` (converted to it here), and the frame interval in
    ``tunit`` unless seconds.
    """
    meta["imagej_metadata"] = ij

    def unit_of(key: str) -> str | None:
        value = ij.get(key)
        return _length_unit(_unescape(str(value))) if value else None

    meta["software"] = meta["software"] or (f"ImageJ {ij['ImageJ']}" if "ImageJ" in ij else None)
    unit = unit_of("unit")
    if unit:
        meta["unit"] = unit
        xres, yres = _resolution(page0)
        if page0.resolutionunit == 3 and ij.get("unit") == "um" and xres and yres:
            xres, yres = xres / 1e4, yres / 1e4  # per cm, as ImageJ reads them: per µm
        y_unit = unit_of("yunit") or unit
        if xres and yres and not (_at_print_resolution(xres, _metres_per(unit))
                                  and _at_print_resolution(yres, _metres_per(y_unit))):
            meta.update(pixel_size_x=1 / xres, pixel_size_y=_in_unit(1 / yres, y_unit, unit))
    z_unit = unit_of("zunit") or meta["unit"]
    z_step = _positive(ij.get("spacing"))
    if z_step and meta["unit"] is None:
        meta["unit"] = z_unit
    meta["z_step"] = _in_unit(z_step, z_unit, meta["unit"])
    fps = _positive(ij.get("fps"))
    time_unit = _unescape(str(ij.get("tunit") or "s"))
    time_unit = _IMAGEJ_TIME_UNITS.get(time_unit, time_unit)
    interval = _seconds(_positive(ij.get("finterval")), time_unit)
    meta["frame_interval"] = interval if interval > 0 else (1.0 / fps if fps else None)


# TIFF ResolutionUnit 3 (centimetre), and tifffile's 4 (millimetre) and 5 (micrometre)
_MICROMETRES_PER_RESOLUTION_UNIT = {3: 1e4, 4: 1e3, 5: 1.0}
# screen and print defaults of image editors (dots per inch), also stored in other units
_PRINT_DPI = (72, 96)
_METRES_PER_INCH = 0.0254
_TIME_TO_S = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "ps": 1e-12,
              "min": 60.0, "h": 3600.0, "d": 86400.0}
# ImageJ's time units (its default "sec", and what users type in its Properties dialog)
_IMAGEJ_TIME_UNITS = {"sec": "s", "second": "s", "seconds": "s", "msec": "ms", "\u03bcs": "µs",
                      "usec": "us", "minute": "min", "minutes": "min", "hr": "h", "hour": "h",
                      "hours": "h", "day": "d", "days": "d"}


def _seconds(value: Any, unit: str) -> float:
    """Return an OME time in ``unit`` in seconds (NaN: not a finite number, or unknown unit)."""
    try:
        number = float(value) * _TIME_TO_S[unit]
    except (KeyError, TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def ome_metadata(xml: str, series: int, axes: str, shape: tuple[int, ...],
                 meta: dict[str, Any]) -> np.ndarray | None:
    """Fill ``meta`` from series ``series`` of an OME-XML document; return per-plane times.

    tifffile's series are the document's images with planes in TIFF pages (``TiffData``): it
    makes none of an image without them (``MetadataOnly``, ``BinData``). Sets ``ome_xml``, and
    where the XML has them ``pixel_size_x``, ``pixel_size_y``, ``unit``, ``z_step``,
    ``frame_interval`` (in seconds, whatever ``TimeIncrementUnit``) and ``channel_names``. The
    time stamps (seconds, NaN where unknown) are in C order of ``axes`` and ``shape``, and None
    when the planes have none or ``axes`` are not all of ``t``, ``z``, ``c``.
    """
    meta["ome_xml"] = xml
    all_pixels, ns = _ome_pixels(xml)
    if series >= len(all_pixels):
        return None
    pixels = all_pixels[series]
    get = pixels.attrib.get
    unit = None
    size_x = _positive(get("PhysicalSizeX"))
    if size_x:
        unit = _length_unit(get("PhysicalSizeXUnit", "µm"))
        size_y = _positive(get("PhysicalSizeY")) if get("PhysicalSizeY") else size_x
        unit_y = _length_unit(get("PhysicalSizeYUnit", "µm")) if get("PhysicalSizeY") else unit
        meta.update(pixel_size_x=size_x, pixel_size_y=_in_unit(size_y, unit_y, unit), unit=unit)
    size_z = _positive(get("PhysicalSizeZ"))
    if size_z:
        unit_z = _length_unit(get("PhysicalSizeZUnit", "µm"))
        meta["unit"] = unit = unit or unit_z
        meta["z_step"] = _in_unit(size_z, unit_z, unit)
    interval = _seconds(get("TimeIncrement"), get("TimeIncrementUnit", "s"))
    if interval > 0:
        meta["frame_interval"] = interval
    names = [c.attrib.get("Name") for c in pixels.findall(f"{ns}Channel")]
    if names and all(names):
        meta["channel_names"] = names
    return _ome_plane_times(pixels, ns, axes, shape)


def ome_plane_times(xml: str, series: list[int], axes: str,
                    shape: tuple[int, ...]) -> np.ndarray | None:
    """Return the per-plane times of OME images ``series``, one after another along ``axes[0]``.

    The planes of a multi-file dataset whose positions are the document's images (series):
    ``axes`` and ``shape`` are those of all of them, the first axis the positions when there
    are several (see :func:`ome_metadata` for the times of one series). None when no plane
    has a time.
    """
    all_pixels, ns = _ome_pixels(xml)
    inner_axes, inner_shape = (axes[1:], shape[1:]) if len(series) > 1 else (axes, shape)
    stamps = [_ome_plane_times(all_pixels[index], ns, inner_axes, inner_shape)
              if index < len(all_pixels) else None for index in series]
    if all(times is None for times in stamps):
        return None
    size = math.prod(inner_shape)
    return np.concatenate([np.full(size, np.nan) if times is None else times
                           for times in stamps])


def _ome_pixels(xml: str) -> tuple[list[ET.Element], str]:
    """Return the ``Pixels`` of an OME-XML document's images with ``TiffData``, and its namespace.

    The images tifffile makes series of, in order; none when the document cannot be parsed.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return [], ""
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return [pixels for pixels in root.findall(f"{ns}Image/{ns}Pixels")
            if pixels.find(f"{ns}TiffData") is not None], ns


def _ome_plane_times(pixels: ET.Element, ns: str, axes: str,
                     shape: tuple[int, ...]) -> np.ndarray | None:
    """Seconds of each plane of an OME ``Pixels`` element (its ``Plane`` ``DeltaT``).

    In C order of ``axes`` and ``shape``, NaN where unknown; None when no plane has a time or
    ``axes`` are not all of ``t``, ``z``, ``c``.
    """
    planes = pixels.findall(f"{ns}Plane")
    if not planes or not set(axes) <= set("tzc"):
        return None
    stamps = np.full(math.prod(shape), np.nan)
    for plane in planes:
        att = plane.attrib
        if "DeltaT" not in att:
            continue
        try:
            coords = [int(att.get(f"The{ax.upper()}", 0)) for ax in axes]
        except ValueError:
            continue
        if all(0 <= c < n for c, n in zip(coords, shape, strict=True)):
            index = int(np.ravel_multi_index(coords, shape)) if shape else 0
            stamps[index] = _seconds(att["DeltaT"], att.get("DeltaTUnit", "s"))
    return None if np.isnan(stamps).all() else stamps


def _micromanager_metadata(mm: dict[str, Any] | None, page0, meta: dict[str, Any]) -> None:
    """Update ``meta`` from Micro-Manager's file header ``mm`` and the first image's metadata.

    ``mm`` is None for Micro-Manager's image files, which have no file header.
    """
    if mm:
        meta["micromanager_metadata"] = mm
    image = page0.tags.valueof(51123)  # the first image's metadata: MM 2.0 keeps its pixel size
    pixel_size = _positive(image.get("PixelSizeUm")) if isinstance(image, dict) else None
    if pixel_size:
        meta.update(pixel_size_x=pixel_size, pixel_size_y=pixel_size, unit="µm")
    # a software tag wins; else "ImageJ" would come from ImageJ's header that MM writes
    summary = (mm or {}).get("Summary") or {}
    micromanager_summary_metadata(summary, meta, name_software=not page0.software)


def micromanager_summary_metadata(summary: dict[str, Any], meta: dict[str, Any],
                                  name_software: bool = True) -> None:
    """Update ``meta`` (``TiffStackND.metadata``) from a Micro-Manager summary's values.

    Pixel size, z step, frame interval and channel names where the summary has valid ones;
    the software too if ``name_software``.
    """
    pixel_size = _positive(summary.get("PixelSize_um"))
    if pixel_size:
        meta.update(pixel_size_x=pixel_size, pixel_size_y=pixel_size, unit="µm")
    if summary.get("MicroManagerVersion") and name_software:
        meta["software"] = f"Micro-Manager {summary['MicroManagerVersion']}"
    meta["z_step"] = _positive(summary.get("z-step_um")) or meta["z_step"]
    interval = _positive(summary.get("Interval_ms"))
    meta["frame_interval"] = interval / 1000.0 if interval else meta["frame_interval"]
    if isinstance(summary.get("ChNames"), list):
        meta["channel_names"] = [str(n) for n in summary["ChNames"]]
