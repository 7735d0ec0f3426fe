"""Write synthetic Micro-Manager 2.0 "MMStack" datasets (multipage TIFF "image file stacks").

Test support only. The byte layout follows Micro-Manager's ``MultipageTiffWriter`` (2.0) as
documented at https://micro-manager.org/Micro-Manager_File_Formats and as read by
``tifffile.read_micromanager_metadata`` and ``TiffFile._series_mmstack``:

* bytes 0..7: TIFF header (``II``/``MM``, 42, offset of the first IFD);
* bytes 8..39: four (header, value) pairs of uint32: index-map offset header ``54773648`` and
  the index map's offset; display-settings offset header ``483765892`` and offset; comments
  offset header ``99384722`` and offset; summary header ``2355492`` and the summary's length;
* byte 40: the summary metadata (JSON, UTF-8), then the index map: header ``3453623``, the
  entry count, and per image five uint32 ``(channel, slice, frame, position, IFD offset)``;
* per image: the IFD (13 entries, 17 in the first IFD; next-IFD offset), the pixels, the X
  and Y resolutions (pixels per cm) and the image's metadata JSON (tag 51123, null-terminated).
  Every IFD but the first is therefore 162 bytes long and its pixels follow it immediately,
  which tifffile relies on (``dataoffsets = ifd_offset + 162``);
* at the end: display settings (header ``347834724``, reserved length, JSON) and comments
  (header ``84720485``, length, JSON).

One file per position, named ``{prefix}_MMStack_Pos{p}.ome.tif`` (or, with
``split_positions=False``, every position in ``{prefix}_MMStack.ome.tif``); a file with more
images than ``max_images_per_file`` continues in ``..._1.ome.tif``, ``_2``... as Micro-Manager
does when a file reaches 4 GB. Images are written in acquisition order (time, then channel,
then slice).

The first IFD's two ImageDescription tags hold the OME-XML and Micro-Manager's ImageJ
description, which counts the images of ONE position (``images = frames * slices *
channels``) and is the same in every file. As in Micro-Manager 2.0, the full OME-XML
(``ome_xml``; empty by default) is in the dataset's first file only; every other file gets a
``<BinaryOnly MetadataFile=.../>`` pointer to it. The ImageJ metadata tags (50838/50839) hold
the summary as ImageJ's "info" string. Simplifications: these values follow the first image's
metadata (Micro-Manager writes them at the end of the file, at close); no display ranges or
LUTs in the ImageJ metadata; the index map reserves exactly as many entries as the file holds
(Micro-Manager reserves room for a 4 GB file and zeroes the rest).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

INDEX_MAP_OFFSET_HEADER = 54773648
INDEX_MAP_HEADER = 3453623
DISPLAY_SETTINGS_OFFSET_HEADER = 483765892
DISPLAY_SETTINGS_HEADER = 347834724
COMMENTS_OFFSET_HEADER = 99384722
COMMENTS_HEADER = 84720485
SUMMARY_MD_HEADER = 2355492
MM_METADATA_TAG = 51123
_PIXEL_TYPES = {np.dtype("u1"): "GRAY8", np.dtype("u2"): "GRAY16"}


def mmstack_name(prefix: str, position: int | None, part: int = 0) -> str:
    """File name Micro-Manager gives part ``part`` of position ``position`` (None: all)."""
    label = "" if position is None else f"_Pos{position}"
    suffix = f"_{part}" if part else ""
    return f"{prefix}_MMStack{label}{suffix}.ome.tif"


def write_mmstack(
    folder: str | Path,
    data: np.ndarray,
    *,
    prefix: str = "acq",
    pixel_size_um: float = 0.5,
    interval_ms: float = 250.0,
    z_step_um: float = 1.5,
    channel_names: list[str] | None = None,
    max_images_per_file: int | None = None,
    byteorder: str = "<",
    ome_xml: str = "",
    split_positions: bool = True,
) -> list[Path]:
    """Write ``data`` (position, time, slice, channel, y, x) as a Micro-Manager 2.0 dataset.

    Parameters
    ----------
    folder : str or Path
        Existing folder for the files.
    data : numpy.ndarray
        uint8 or uint16 array of shape ``(P, T, Z, C, Y, X)``.
    prefix : str
        The acquisition name (``Summary['Prefix']``, start of every file name).
    pixel_size_um, interval_ms, z_step_um : float
        Written where Micro-Manager 2.0 writes them: ``PixelSizeUm`` in each image's metadata
        and the resolution tags (integer pixels per cm), ``Interval_ms`` and ``z-step_um`` in
        the summary.
    channel_names : list of str, optional
        ``Summary['ChNames']``; default ``Ch0, Ch1...``.
    max_images_per_file : int, optional
        Start a continuation file for a position after this many images.
    byteorder : str
        ``'<'`` or ``'>'`` (Micro-Manager writes the machine's native order).
    ome_xml : str
        OME-XML for the first ImageDescription of the first file; when given, the other files
        get a BinaryOnly OME-XML pointing to the first file.
    split_positions : bool
        True: one file per position (Micro-Manager's default); False: all positions in
        ``{prefix}_MMStack.ome.tif`` (time, then position, channel, slice).

    Returns
    -------
    list of Path
        The files written, position by position, parts in order.
    """
    positions, frames, slices, channels, height, width = data.shape
    dtype = np.dtype(data.dtype)
    if dtype not in _PIXEL_TYPES:
        raise ValueError(f"Micro-Manager writes uint8 or uint16 images, not {dtype}")
    names = channel_names or [f"Ch{c}" for c in range(channels)]
    summary = {
        "Prefix": prefix,
        "MicroManagerVersion": "2.0.1 20220523",
        "MetadataVersion": 10,
        "ChNames": names,
        "Channels": channels,
        "Slices": slices,
        "Frames": frames,
        "Positions": positions,
        "Interval_ms": interval_ms,
        "z-step_um": z_step_um,
        "Width": width,
        "Height": height,
        "PixelType": _PIXEL_TYPES[dtype],
        "AxisOrder": ["position", "time", "z", "channel"],
        "IntendedDimensions": {
            "position": positions, "time": frames, "z": slices, "channel": channels
        },
        "StagePositions": [{"Label": f"Pos{p}"} for p in range(positions)],
    }
    # as MM's getIJDescriptionString: the same in every file, counting one position's images
    ij_description = f"ImageJ=1.53t\nimages={frames * slices * channels}\n"
    for key, size in (("channels", channels), ("slices", slices), ("frames", frames)):
        ij_description += f"{key}={size}\n" if size > 1 else ""
    if frames * slices * channels > 1:
        ij_description += "hyperstack=true\n" + ("mode=composite\n" if channels > 1 else "")
    ij_description += "unit=um\n" + ("loop=false\n" if frames * slices * channels > 1 else "")
    if split_positions:
        groups = [
            (p, [(c, z, t, p) for t in range(frames) for c in range(channels)
                 for z in range(slices)])
            for p in range(positions)
        ]
    else:
        groups = [(None, [(c, z, t, p) for t in range(frames) for p in range(positions)
                          for c in range(channels) for z in range(slices)])]
    master = mmstack_name(prefix, groups[0][0])
    pointer = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f'<BinaryOnly MetadataFile="{master}" UUID="urn:uuid:{prefix}"/></OME>'
    )
    written = []
    for position, coords in groups:
        chunk = max_images_per_file or len(coords)
        for part, start in enumerate(range(0, len(coords), chunk)):
            images = [
                ((c, z, t, p), data[p, t, z, c]) for c, z, t, p in coords[start : start + chunk]
            ]
            path = Path(folder) / mmstack_name(prefix, position, part)
            ome = ome_xml if path.name == master or not ome_xml else pointer
            path.write_bytes(
                _file_bytes(images, summary, ij_description, ome, pixel_size_um,
                            interval_ms, byteorder)
            )
            written.append(path)
    return written


def _ifd(entries: list[tuple[int, int, int, int | bytes]], next_ifd: int, bo: str) -> bytes:
    """An IFD of (tag, type, count, value) entries.

    ``value`` is an offset or a number (one SHORT is left-justified, like MM does), or the
    bytes of a value that fits in the entry itself (at most 4).
    """
    out = [struct.pack(bo + "H", len(entries))]
    for tag, kind, count, value in entries:
        if isinstance(value, bytes):
            field = value.ljust(4, b"\0")
        elif kind == 3 and count == 1:
            field = struct.pack(bo + "HH", value, 0)
        else:
            field = struct.pack(bo + "I", value)
        out.append(struct.pack(bo + "HHI", tag, kind, count) + field)
    out.append(struct.pack(bo + "I", next_ifd))
    return b"".join(out)


def _file_bytes(images, summary, ij_description, ome_xml, pixel_size_um, interval_ms,
                bo: str) -> bytes:
    """The bytes of one MMStack file holding ``images``: ((c, z, t, p), plane) pairs."""
    summary_bytes = json.dumps(summary).encode()
    index_offset = 40 + len(summary_bytes)
    first_ifd = index_offset + 8 + 20 * len(images)
    resolution = int(1 / (1e-4 * pixel_size_um))  # pixels per cm, truncated like MM
    body = bytearray()
    index_map = []
    position = first_ifd
    for number, ((c, z, t, p), plane) in enumerate(images):
        first = number == 0
        metadata = {
            "ChannelIndex": c, "SliceIndex": z, "FrameIndex": t, "PositionIndex": p,
            "Channel": summary["ChNames"][c], "PixelSizeUm": pixel_size_um,
            "ElapsedTime-ms": t * interval_ms, "Width": plane.shape[1],
            "Height": plane.shape[0], "PixelType": summary["PixelType"],
        }
        md = json.dumps(metadata).encode() + b"\0"
        pixels = np.ascontiguousarray(plane, plane.dtype.newbyteorder(bo)).tobytes()
        n_entries = 17 if first else 13
        ifd_size = 2 + 12 * n_entries + 4
        data_at = position + ifd_size
        res_at = data_at + len(pixels)
        md_at = res_at + 16
        end = md_at + len(md)
        extras = []  # values of the first IFD's extra tags, after the metadata (as MM does)
        if first:
            info = json.dumps(summary).encode("utf-16-be" if bo == ">" else "utf-16-le")
            extras = [
                ome_xml.encode() + b"\0",
                ij_description.encode() + b"\0",
                struct.pack(bo + "II", 12, len(info)),
                b"IJIJ" + b"info" + struct.pack(bo + "I", 1) + info,
            ]
            end += sum(len(d) for d in extras if len(d) > 4)
        at = md_at + len(md)
        fields = []  # (bytes inline) or offset, per extra value
        for value in extras:
            fields.append(value if len(value) <= 4 else at)
            at += len(value) if len(value) > 4 else 0
        next_ifd = 0 if number == len(images) - 1 else end
        entries = [
            (256, 4, 1, plane.shape[1]),
            (257, 4, 1, plane.shape[0]),
            (258, 3, 1, plane.dtype.itemsize * 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
        ]
        if first:
            entries += [(270, 2, len(extras[0]), fields[0]), (270, 2, len(extras[1]), fields[1])]
        entries += [
            (273, 4, 1, data_at),
            (277, 3, 1, 1),
            (278, 3, 1, plane.shape[0]),
            (279, 4, 1, len(pixels)),
            (282, 5, 1, res_at),
            (283, 5, 1, res_at + 8),
            (296, 3, 1, 3),
        ]
        if first:
            entries += [(50838, 4, 2, fields[2]), (50839, 1, len(extras[3]), fields[3])]
        entries.append((MM_METADATA_TAG, 2, len(md), md_at))
        body += _ifd(entries, next_ifd, bo) + pixels
        body += struct.pack(bo + "IIII", resolution, 1, resolution, 1) + md
        body += b"".join(value for value in extras if len(value) > 4)
        index_map.append(struct.pack(bo + "5I", c, z, t, p, position))
        position = end
    display = json.dumps({"channels": [{"Name": n} for n in summary["ChNames"]]}).encode()
    display_reserved = max(len(display), 256 * len(summary["ChNames"]))
    display_at = position
    comments = json.dumps({"Summary": ""}).encode()
    comments_at = display_at + 8 + display_reserved
    header = b"II" if bo == "<" else b"MM"
    header += struct.pack(
        bo + "HI8I", 42, first_ifd, INDEX_MAP_OFFSET_HEADER, index_offset,
        DISPLAY_SETTINGS_OFFSET_HEADER, display_at, COMMENTS_OFFSET_HEADER, comments_at,
        SUMMARY_MD_HEADER, len(summary_bytes),
    )
    out = bytearray(header + summary_bytes)
    out += struct.pack(bo + "II", INDEX_MAP_HEADER, len(images)) + b"".join(index_map)
    out += body
    out += struct.pack(bo + "II", DISPLAY_SETTINGS_HEADER, display_reserved)
    out += display.ljust(display_reserved, b" ")
    out += struct.pack(bo + "II", COMMENTS_HEADER, len(comments)) + comments
    assert len(header) == 40 and len(out) == comments_at + 8 + len(comments)
    return bytes(out)
