"""OME-TIFF datasets whose OME-XML is in a companion file (``BinaryOnly``), and refusals.

The TIFF files are written by tifffile; the OME-XML by the tests. The independent reference is
tifffile: each file's own pages as tifffile decodes them, and tifffile's reading of the whole
dataset when given the companion's XML (``TiffFile(omexml=...)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pims
import pytest
import tifffile

import pims_videoutils
from pims_videoutils import ReaderFallbackWarning, StackNotFoundError, StackReadError
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
COMPANION = "data.companion.ome"


def _uuid(number: int) -> str:
    return f"urn:uuid:00000000-0000-0000-0000-{number:012d}"


def _ome(images: str, uuid: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}" UUID="{uuid}">{images}</OME>'


def _write_dataset(
    folder: Path, data: np.ndarray, metadata: str = "companion", parts: int = 2, **kwargs
) -> str:
    """Write data (P, T, Y, X) as ``parts`` files per position, each with T / parts planes.

    ``metadata``: ``'companion'`` (the OME-XML in data.companion.ome, every TIFF BinaryOnly),
    ``'master'`` (the OME-XML in pos0_part0.ome.tif, the other TIFFs BinaryOnly pointing to
    it) or ``'embedded'`` (every TIFF holds the whole OME-XML). ``kwargs`` go to
    ``tifffile.imwrite``. Return the OME-XML.
    """
    positions, times, height, width = data.shape
    names = {(p, k): f"pos{p}_part{k}.ome.tif" for p in range(positions) for k in range(parts)}
    uuids = {key: _uuid(i) for i, key in enumerate(names)}
    half = times // parts
    images = "".join(
        f'<Image ID="Image:{p}" Name="pos{p}"><Pixels ID="Pixels:{p}" DimensionOrder="XYZCT" '
        f'Type="uint16" SizeX="{width}" SizeY="{height}" SizeZ="1" SizeC="1" SizeT="{times}" '
        'PhysicalSizeX="0.25" PhysicalSizeY="0.25" TimeIncrement="2" TimeIncrementUnit="s">'
        f'<Channel ID="Channel:{p}:0" Name="mCherry" SamplesPerPixel="1"/>'
        + "".join(
            f'<TiffData FirstT="{half * k}" IFD="0" PlaneCount="{half}">'
            f'<UUID FileName="{names[p, k]}">{uuids[p, k]}</UUID></TiffData>'
            for k in range(parts)
        )
        + "</Pixels></Image>"
        for p in range(positions)
    )
    master_uuid = _uuid(999) if metadata == "companion" else uuids[0, 0]
    xml = _ome(images, master_uuid)
    if metadata == "companion":
        (folder / COMPANION).write_text(xml, encoding="utf-8")
    target = COMPANION if metadata == "companion" else names[0, 0]
    for key, name in names.items():
        description = _ome(
            f'<BinaryOnly MetadataFile="{target}" UUID="{master_uuid}"/>', uuids[key]
        )
        if metadata == "embedded" or (metadata == "master" and key == (0, 0)):
            description = _ome(images, uuids[key])
        p, k = key
        tifffile.imwrite(folder / name, data[p, half * k : half * (k + 1)],
                         description=description, metadata=None, photometric="minisblack",
                         **kwargs)
    return xml


def _file_pages(folder: Path, positions: int, half: int, parts: int = 2) -> np.ndarray:
    """Each file's pages as tifffile decodes them, assembled as (P, T, Y, X)."""
    per_position = []
    for p in range(positions):
        planes = []
        for k in range(parts):
            with tifffile.TiffFile(folder / f"pos{p}_part{k}.ome.tif") as tif:
                assert len(tif.pages) == half
                planes += [page.asarray() for page in tif.pages]
        per_position.append(np.stack(planes))
    return np.stack(per_position)


@pytest.fixture
def companion_dataset(tmp_path):
    data = np.random.default_rng(30).integers(0, 60000, (2, 4, 6, 8), np.uint16)
    xml = _write_dataset(tmp_path, data)
    return tmp_path, data, xml


def test_tifffile_reads_the_dataset_with_the_companion_xml(companion_dataset):
    folder, data, xml = companion_dataset
    expected = _file_pages(folder, 2, 2)
    np.testing.assert_array_equal(expected, data)
    with tifffile.TiffFile(folder / "pos1_part1.ome.tif") as tif:
        assert tif.is_ome
        assert [s.kind for s in tif.series] != ["ome"]  # alone, tifffile sees one file's pages
    with tifffile.TiffFile(folder / "pos1_part1.ome.tif", omexml=xml) as tif:
        assert [(s.kind, s.axes, s.shape) for s in tif.series] == [("ome", "TYX", (4, 6, 8))] * 2
        np.testing.assert_array_equal(np.stack([s.asarray() for s in tif.series]), expected)


def _check_whole_dataset(reader, folder: Path, companion: Path) -> None:
    expected = _file_pages(folder, 2, 2)
    assert isinstance(reader, TiffSequenceND)
    assert reader.sizes == {"p": 2, "t": 4, "y": 6, "x": 8}
    assert len(reader.files) == 4
    meta = reader.metadata
    assert (meta["kind"], meta["ome_companion"]) == ("ome", str(companion))
    assert (meta["pixel_size_x"], meta["unit"], meta["frame_interval"]) == (0.25, "µm", 2.0)
    assert meta["channel_names"] == ["mCherry"]
    assert reader.frame_rate == 0.5
    reader.iter_axes = "pt"
    for i, plane in enumerate(expected.reshape(-1, 6, 8)):
        np.testing.assert_array_equal(reader[i], plane)


@pytest.mark.parametrize(
    "entry", ["pos0_part0.ome.tif", "pos1_part1.ome.tif", "pos0_part1.ome.tif", "folder"]
)
def test_any_tiff_or_the_folder_opens_the_whole_dataset(companion_dataset, entry):
    folder, _, _ = companion_dataset
    source = folder if entry == "folder" else folder / entry
    with TiffSequenceND(source) as reader:
        # a file of position 1 shows position 1 by default (files are split by position)
        assert reader.default_coords["p"] == (1 if entry.startswith("pos1") else 0)
        _check_whole_dataset(reader, folder, folder / COMPANION)


@pytest.mark.parametrize("opener", [TiffSequenceND, pims.open, pims_videoutils.open])
def test_the_companion_file_opens_the_whole_dataset(companion_dataset, opener):
    folder, _, _ = companion_dataset  # (as Bio-Formats users open such a dataset)
    tifffile.imwrite(folder / "unrelated.tif", np.zeros((6, 8), np.uint16))
    with opener(str(folder / COMPANION)) as reader:
        _check_whole_dataset(reader, folder, folder / COMPANION)


def test_companion_file_naming_no_existing_file(companion_dataset):
    folder, _, _ = companion_dataset
    for path in folder.glob("*.ome.tif"):
        path.unlink()
    with pytest.raises(StackNotFoundError, match=r"companion\.ome: none of the TIFF files"):
        TiffSequenceND(folder / COMPANION)


@pytest.mark.parametrize(
    "options", [{"compression": "zlib"}, {"tile": (16, 16)}], ids=["zlib", "tiled"]
)
def test_compressed_or_tiled_pages_are_decoded(tmp_path, options):
    data = np.random.default_rng(34).integers(0, 60000, (2, 4, 6, 8), np.uint16)
    _write_dataset(tmp_path, data, **options)
    with TiffSequenceND(tmp_path / "pos1_part0.ome.tif", max_open_files=1) as reader:
        assert reader.storage == "decoded"
        _check_whole_dataset(reader, tmp_path, tmp_path / COMPANION)
        assert reader.open_file_count() <= 1


@pytest.mark.parametrize("opener", [pims.open, pims_videoutils.open])
def test_open_functions_read_the_companion(companion_dataset, opener):
    folder, _, _ = companion_dataset
    with opener(str(folder / "pos1_part0.ome.tif")) as reader:
        _check_whole_dataset(reader, folder, folder / COMPANION)


def test_master_ome_tiff_as_metadata_file(tmp_path):
    data = np.random.default_rng(31).integers(0, 60000, (2, 4, 6, 8), np.uint16)
    _write_dataset(tmp_path, data, metadata="master")
    with TiffSequenceND(tmp_path / "pos1_part1.ome.tif") as reader:  # BinaryOnly -> master
        _check_whole_dataset(reader, tmp_path, tmp_path / "pos0_part0.ome.tif")
    with TiffSequenceND(tmp_path / "pos0_part0.ome.tif") as reader:  # the master itself
        assert reader.sizes == {"p": 2, "t": 4, "y": 6, "x": 8}
        assert reader.metadata["ome_companion"] is None
        reader.iter_axes = "pt"
        np.testing.assert_array_equal(reader[7], data[1, 3])


def test_single_tiff_with_companion_gets_its_axes(tmp_path):
    """One file, one image: its Z and C axes are only in the companion."""
    data = np.random.default_rng(32).integers(0, 255, (3, 2, 5, 6), np.uint8)  # Z, C, Y, X
    images = (
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" '
        'SizeX="6" SizeY="5" SizeZ="3" SizeC="2" SizeT="1" PhysicalSizeZ="0.8">'
        '<Channel ID="Channel:0:0" Name="a"/><Channel ID="Channel:0:1" Name="b"/>'
        f'<TiffData IFD="0" PlaneCount="6"><UUID FileName="cells.ome.tif">{_uuid(1)}</UUID>'
        "</TiffData></Pixels></Image>"
    )
    (tmp_path / "cells.companion.ome").write_text(_ome(images, _uuid(9)), encoding="utf-8")
    description = _ome(
        f'<BinaryOnly MetadataFile="cells.companion.ome" UUID="{_uuid(9)}"/>', _uuid(1)
    )
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, data.reshape(6, 5, 6), description=description, metadata=None)
    with tifffile.TiffFile(path) as tif:
        pages = np.stack([page.asarray() for page in tif.pages])  # XYCZT: C varies fastest
    for reader in (TiffSequenceND(path), pims.open(str(path))):
        with reader:
            assert isinstance(reader, TiffSequenceND)
            assert reader.sizes == {"z": 3, "c": 2, "y": 5, "x": 6}
            assert reader.metadata["z_step"] == 0.8
            assert reader.metadata["channel_names"] == ["a", "b"]
            for z in range(3):
                for c in range(2):
                    np.testing.assert_array_equal(reader.get_plane(z=z, c=c), pages[2 * z + c])
    with pytest.raises(StackReadError, match=r"BinaryOnly.*cells\.companion\.ome.*TiffSequenceND"):
        TiffStackND(path)


# --- missing or broken companion ----------------------------------------------------------------


def test_missing_companion_is_a_clear_error(companion_dataset):
    folder, _, _ = companion_dataset
    (folder / COMPANION).unlink()
    for source in (folder / "pos0_part1.ome.tif", folder):
        with pytest.raises(StackNotFoundError, match=r"data\.companion\.ome: the OME metadata "
                           r"file of pos\d_part\d\.ome\.tif \(BinaryOnly OME-TIFF\) does not "
                           r"exist"):
            TiffSequenceND(source)
    with pytest.raises(StackReadError, match="BinaryOnly"):
        TiffStackND(folder / "pos0_part1.ome.tif")
    # pims.open then tries the next reader: pims's own TiffStack reads that file's pages only
    with pytest.warns(ReaderFallbackWarning, match="BinaryOnly"):
        reader = pims.open(str(folder / "pos0_part1.ome.tif"))
    with reader:
        assert not isinstance(reader, (TiffSequenceND, TiffStackND))
        assert len(reader) == 2


@pytest.mark.parametrize("opener", [pims.open, pims_videoutils.open])
def test_fallback_warning_says_why_the_dataset_could_not_be_read(tmp_path, opener):
    """A file of a dataset whose other file is gone: the reason is the missing planes, not
    only TiffStackND's "open it with TiffSequenceND" (which fails just the same)."""
    data = np.random.default_rng(34).integers(0, 60000, (2, 4, 6, 8), np.uint16)
    _write_dataset(tmp_path, data, metadata="embedded")
    (tmp_path / "pos1_part1.ome.tif").unlink()
    if opener is pims.open and not hasattr(pims.open, "__wrapped__"):
        pytest.skip("pims.open is not wrapped in this process")
    with pytest.warns(ReaderFallbackWarning) as record:
        reader = opener(str(tmp_path / "pos0_part0.ome.tif"))
    reader.close()
    (message,) = [str(w.message) for w in record if w.category is ReaderFallbackWarning]
    assert "nor could TiffSequenceND (StackReadError: " in message
    assert "2 planes of the dataset are in no file" in message


@pytest.mark.parametrize(
    "content", ["not xml at all", f'<OME xmlns="{NS}"></OME>'], ids=["not-xml", "no-image"]
)
def test_broken_companion_is_a_clear_error(companion_dataset, content):
    folder, _, _ = companion_dataset
    (folder / COMPANION).write_text(content, encoding="utf-8")
    with pytest.raises(StackReadError, match=r"data\.companion\.ome: .*pos1_part0\.ome\.tif"):
        TiffSequenceND(folder / "pos1_part0.ome.tif")


# --- TiffStackND on one file of a multi-file OME dataset -----------------------------------------


@pytest.mark.parametrize("parts", [2, 1], ids=["two-files-per-position", "one-per-position"])
@pytest.mark.parametrize("name", ["pos0_part0.ome.tif", "pos1_part0.ome.tif"])
def test_tiffstacknd_refuses_one_file_of_a_multifile_ome_dataset(tmp_path, name, parts):
    data = np.random.default_rng(33).integers(0, 60000, (2, 4, 6, 8), np.uint16)
    _write_dataset(tmp_path, data, metadata="embedded", parts=parts)
    with tifffile.TiffFile(tmp_path / name) as tif:  # tifffile: the series span the files
        assert {page.parent.filehandle.name for s in tif.series for page in s.pages} == {
            f"pos{p}_part{k}.ome.tif" for p in range(2) for k in range(parts)}
    # (not series.asarray(): tifffile 2026.3.3 reads a series lying wholly in another file
    # from the opened file's bytes when the series is contiguous)
    expected = _file_pages(tmp_path, 2, 4 // parts, parts)
    np.testing.assert_array_equal(expected, data)
    # even a file holding all of series 0 (one file per position) is refused: it is one file
    # of a dataset, and pims.open must give the whole dataset
    with pytest.raises(StackReadError, match=r"one file of a multi-file OME-TIFF dataset.*"
                       r"open it with TiffSequenceND"):
        TiffStackND(tmp_path / name)
    for reader in (TiffSequenceND(tmp_path / name), pims.open(str(tmp_path / name))):
        with reader:
            assert isinstance(reader, TiffSequenceND)
            assert reader.metadata["ome_companion"] is None
            reader.iter_axes = "pt"
            for i, plane in enumerate(expected.reshape(-1, 6, 8)):
                np.testing.assert_array_equal(reader[i], plane)


@pytest.mark.parametrize("name", ["pos0_part0.ome.tif", "pos1_part1.ome.tif"])
def test_tiffstacknd_refuses_one_file_of_a_multifile_ome_dataset_whose_others_are_gone(
        tmp_path, name):
    """tifffile gives the planes of the missing files as None pages: TiffStackND read them as
    zeros (the planes of the file itself correct), as if the file were a dataset of its own."""
    data = np.random.default_rng(34).integers(0, 60000, (2, 4, 6, 8), np.uint16)
    _write_dataset(tmp_path, data, metadata="embedded")
    for other in tmp_path.glob("pos*.ome.tif"):
        if other.name != name:
            other.unlink()
    with pytest.raises(StackReadError, match=r"one file of a multi-file OME-TIFF dataset.*"
                       r"open it with TiffSequenceND"):
        TiffStackND(tmp_path / name)
