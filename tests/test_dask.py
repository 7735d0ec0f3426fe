"""``reader.to_dask()``: every plane as one lazy dask array, against tifffile's decoding."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pims_videoutils import ReaderClosedError, TiffSequenceND, TiffStackND

pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def hyperstack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """An ImageJ TZCYX uint16 hyperstack and the data written into it."""
    data = np.random.default_rng(7).integers(0, 4096, (4, 3, 2, 12, 10), dtype=np.uint16)
    path = tmp_path_factory.mktemp("dask") / "tzcyx.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    return path, data


@pytest.mark.parametrize("scheduler", ["threads", "processes", "synchronous"])
def test_every_plane_of_a_hyperstack(hyperstack, scheduler: str) -> None:
    path, data = hyperstack
    with TiffStackND(path) as reader:
        assert len(reader) == 4  # the pims view stays one frame per time point
        array = reader.to_dask()
        assert "".join(reader.sizes) == "tzcyx"
        assert (array.shape, array.dtype) == (data.shape, data.dtype)
        assert array.chunksize == data.shape  # 24 planes of 240 bytes: one chunk
        np.testing.assert_array_equal(array.compute(scheduler=scheduler), tifffile.imread(path))
        planes = reader.to_dask({"t": 1, "z": 1, "c": 1})
        assert planes.chunksize == (1, 1, 1, 12, 10)
        np.testing.assert_array_equal(planes.compute(scheduler=scheduler), tifffile.imread(path))


@pytest.mark.parametrize(
    ("planes_per_chunk", "expected"),
    [
        (5, ((1, 1, 1, 1), (2, 1), (2,))),  # every c, then 2 of the 3 z
        (7, ((1, 1, 1, 1), (3,), (2,))),  # every c and z of a time point
        (13, ((2, 2), (3,), (2,))),  # 2 time points
        (0.5, ((1, 1, 1, 1), (1, 1, 1), (1, 1))),  # planes bigger than the target
    ],
)
def test_default_chunks_take_whole_inner_axes_up_to_the_target(
    hyperstack, monkeypatch: pytest.MonkeyPatch, planes_per_chunk, expected
) -> None:
    from pims_videoutils import _dask

    path, data = hyperstack
    monkeypatch.setattr(_dask, "AUTO_CHUNK_BYTES", int(planes_per_chunk * 12 * 10 * 2))
    with TiffStackND(path) as reader:
        array = reader.to_dask()
        assert array.chunks == (*expected, (12,), (10,))
        np.testing.assert_array_equal(array.compute(), data)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ({"z": -1}, ((1, 1, 1, 1), (3,), (1, 1))),
        ({"t": 3, "c": 2}, ((3, 1), (1, 1, 1), (2,))),
        ({"t": 10}, ((4,), (1, 1, 1), (1, 1))),
    ],
)
def test_chunks_of_several_planes(hyperstack, chunks, expected) -> None:
    path, data = hyperstack
    with TiffStackND(path) as reader:
        array = reader.to_dask(chunks)
        assert array.chunks == (*expected, (12,), (10,))
        np.testing.assert_array_equal(array.compute(), data)
        # a slice across chunk borders reads only what it needs and is still right
        np.testing.assert_array_equal(array[1:4, ::2, 1].compute(), data[1:4, ::2, 1])


def test_big_endian_rgb_planes(tmp_path: Path) -> None:
    data = np.random.default_rng(8).integers(0, 60000, (5, 6, 7, 3), dtype=np.uint16)
    path = tmp_path / "rgb_be.tif"
    tifffile.imwrite(path, data.astype(">u2"), photometric="rgb")
    with TiffStackND(path) as reader:
        array = reader.to_dask()
        assert "".join(reader.sizes) == "tyxs"
        assert array.dtype == np.dtype("=u2")
        np.testing.assert_array_equal(array.compute(), tifffile.imread(path))


def test_zero_copy_reader(hyperstack) -> None:
    path, data = hyperstack
    with TiffStackND(path, copy=False) as reader:
        np.testing.assert_array_equal(reader.to_dask({"c": -1}).compute(), data)


def test_folder_of_named_files(tmp_path: Path) -> None:
    data = np.random.default_rng(9).integers(0, 4096, (3, 2, 8, 9), dtype=np.uint16)
    for t in range(3):
        for c in range(2):
            tifffile.imwrite(tmp_path / f"img_t{t + 1:03d}_c{c}.tif", data[t, c])
    with TiffSequenceND(tmp_path) as reader:
        assert "".join(reader.sizes) == "tcyx"
        files = sorted(tmp_path.glob("*.tif"))  # t, then c: zero-padded, so sorted is right
        expected = np.stack([tifffile.imread(f) for f in files]).reshape(data.shape)
        np.testing.assert_array_equal(reader.to_dask().compute(scheduler="threads"), expected)
        np.testing.assert_array_equal(reader.to_dask({"t": 2}).compute(), expected)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ({"y": 4}, "not axes outside the planes"),
        ({"q": 1}, "not axes outside the planes"),
        ({"t": 0}, "positive integer or -1"),
        ({"t": 1.5}, "positive integer or -1"),
        ({"t": True}, "positive integer or -1"),
    ],
)
def test_bad_chunks(hyperstack, chunks, message: str) -> None:
    with TiffStackND(hyperstack[0]) as reader, pytest.raises(ValueError, match=message):
        reader.to_dask(chunks)


@pytest.mark.parametrize("chunks", ["t", "auto", (1, -1), 5])
def test_chunks_not_a_mapping(hyperstack, chunks) -> None:
    with TiffStackND(hyperstack[0]) as reader, pytest.raises(TypeError, match="mapping of axis"):
        reader.to_dask(chunks)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_closed_reader(hyperstack, scheduler: str) -> None:
    reader = TiffStackND(hyperstack[0])
    array = reader.to_dask()
    reader.close()
    with pytest.raises(ReaderClosedError, match=re.escape(f"{hyperstack[0]}")):  # which reader
        reader.to_dask()
    with pytest.raises(ReaderClosedError):
        array.compute(scheduler=scheduler)


def test_worker_processes_reopen_each_reader_once(hyperstack) -> None:
    """Each task of a graph is pickled: unpickled in one process, they share one reader."""
    import pickle

    from pims_videoutils import _dask

    path, data = hyperstack
    with TiffStackND(path) as reader:
        handles = [pickle.loads(pickle.dumps(_dask.GraphReader(reader))) for _ in range(3)]
    try:
        assert handles[0].reader is not reader
        assert all(handle.reader is handles[0].reader for handle in handles)
        np.testing.assert_array_equal(handles[0].reader.get_plane(t=2, z=1, c=0), data[2, 1, 0])
    finally:
        for handle in handles:
            handle.reader.close()
        _dask._REOPENED.clear()


def test_arrays_with_other_chunks_combine(hyperstack) -> None:
    """Two arrays of one file with different chunks are different dask arrays (own names)."""
    import dask.array as da

    path = hyperstack[0]
    with TiffStackND(path) as reader:
        planes, blocks = reader.to_dask(), reader.to_dask({"t": 2, "z": -1})
        assert planes.name != blocks.name
        both = da.concatenate([planes, blocks]).compute(scheduler="threads")
        np.testing.assert_array_equal(both, np.concatenate([tifffile.imread(path)] * 2))


def test_arrays_of_two_readers_of_a_replaced_file_combine(tmp_path: Path) -> None:
    """The file saved anew between two readers: their arrays hold different pixels."""
    path, new = tmp_path / "stack.tif", tmp_path / "new.tif"
    tifffile.imwrite(path, np.zeros((3, 6, 7), np.uint16), photometric="minisblack")
    with TiffStackND(path) as before:
        tifffile.imwrite(new, np.full((3, 6, 7), 7, np.uint16), photometric="minisblack")
        new.replace(path)
        with TiffStackND(path) as after:
            difference = after.to_dask().astype(int) - before.to_dask()
            expected = tifffile.imread(path).astype(int)  # minus the zeros of before
            np.testing.assert_array_equal(difference.compute(scheduler="threads"), expected)


@pytest.fixture
def reopened_readers():
    """Close what :class:`GraphReader` unpickling re-opened in this process, after the test."""
    from pims_videoutils import _dask

    yield _dask._REOPENED
    for reader in _dask._REOPENED.values():
        reader.close()
    _dask._REOPENED.clear()


@pytest.mark.parametrize(
    "replacement",
    [np.ones((5, 9, 9), np.uint16), np.ones((2, 6, 7), np.uint16), np.ones((5, 6, 7), np.uint8),
     np.ones((6, 7), np.uint16)],  # (one plane: no t axis)
)
def test_worker_refuses_a_file_changed_since_the_graph(
    tmp_path: Path, reopened_readers, replacement: np.ndarray
) -> None:
    """A worker re-opens the file by name: one that changed shape or type is an error."""
    import pickle

    from pims_videoutils import StackReadError, _dask

    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 6, 7), np.uint16))
    with TiffStackND(path) as reader:
        task_reader = pickle.dumps(_dask.GraphReader(reader))  # as each task is sent
        tifffile.imwrite(tmp_path / "new.tif", replacement)
        (tmp_path / "new.tif").replace(path)
        changed = r"changed since the (dask array was built|reader was pickled)"
        with pytest.raises(StackReadError, match=changed):
            pickle.loads(task_reader)
        # this process keeps the file it opened (as the threads scheduler does)
        np.testing.assert_array_equal(reader.to_dask().compute(), np.zeros((5, 6, 7), np.uint16))


def test_long_lived_worker_reads_a_replaced_file_anew(tmp_path: Path, reopened_readers) -> None:
    """A worker that outlives a computation (a reused pool, dask.distributed) must not serve a
    reader opened after the file was replaced from the reader it re-opened for an older one."""
    import pickle

    from pims_videoutils import _dask

    path, new = tmp_path / "stack.tif", tmp_path / "new.tif"
    tifffile.imwrite(path, np.zeros((3, 6, 7), np.uint16), photometric="minisblack")
    with TiffStackND(path) as reader:  # first computation: the worker re-opens the file
        worker = pickle.loads(pickle.dumps(_dask.GraphReader(reader)))
        assert worker.reader.get_plane(t=1).max() == 0
    tifffile.imwrite(new, np.full((3, 6, 7), 7, np.uint16), photometric="minisblack")
    new.replace(path)  # saved anew, as editors do: same name, same shape
    with TiffStackND(path) as reader:
        expected = tifffile.imread(path)
        np.testing.assert_array_equal(reader.to_dask().compute(scheduler="threads"), expected)
        worker = pickle.loads(pickle.dumps(_dask.GraphReader(reader)))  # the same worker
        np.testing.assert_array_equal(worker.reader.get_plane(t=1), expected[1])


def test_worker_refuses_a_file_whose_axes_changed_order(tmp_path: Path, reopened_readers) -> None:
    import pickle

    from pims_videoutils import StackReadError, _dask

    path, new = tmp_path / "tzcyx.tif", tmp_path / "new.tif"
    tifffile.imwrite(path, np.zeros((3, 2, 2, 4, 5), np.uint8), imagej=True,
                     metadata={"axes": "TZCYX"})
    with TiffStackND(path) as reader:
        task_reader = pickle.dumps(_dask.GraphReader(reader))
        tifffile.imwrite(new, np.zeros((3, 2, 2, 4, 5), np.uint8), metadata={"axes": "TCZYX"})
        new.replace(path)
        with TiffStackND(path) as replaced:  # same sizes, other order
            assert "".join(replaced.sizes) == "tczyx"
        with pytest.raises(StackReadError, match="changed since the dask array was built"):
            pickle.loads(task_reader)


@pytest.mark.parametrize("kind", ["file", "glob", "files"])
def test_reader_opened_by_relative_path_reopens_after_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopened_readers, kind: str
) -> None:
    """Workers re-open what a reader names: a relative name must not depend on the cwd."""
    import pickle

    from pims_videoutils import _dask

    data = np.random.default_rng(12).integers(0, 4096, (3, 6, 7), dtype=np.uint16)
    (tmp_path / "data").mkdir()
    for t in range(3):
        tifffile.imwrite(tmp_path / "data" / f"img_{t}.tif", data[t])
    tifffile.imwrite(tmp_path / "data" / "stack.tif", data, photometric="minisblack")
    monkeypatch.chdir(tmp_path)
    if kind == "file":
        reader = TiffStackND("data/stack.tif")
    elif kind == "glob":
        reader = TiffSequenceND("data/img_*.tif")
    else:
        reader = TiffSequenceND([f"data/img_{t}.tif" for t in range(3)])
    with reader:
        monkeypatch.chdir(tmp_path / "data")  # e.g. %cd in Jupyter, then a processes scheduler
        blob = pickle.dumps(_dask.GraphReader(reader))  # as each task is sent to a worker
        np.testing.assert_array_equal(pickle.loads(blob).reader.get_plane(t=2), data[2])
        with pickle.loads(pickle.dumps(reader)) as clone:
            np.testing.assert_array_equal(clone[2], data[2])


def test_chunks_of_decoded_planes(tmp_path: Path) -> None:
    """Compressed planes are decoded, not read into the chunk: copied in."""
    data = np.random.default_rng(10).integers(0, 4096, (6, 9, 8), dtype=np.uint16)
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, data, compression="zlib")
    with TiffStackND(path) as reader:
        array = reader.to_dask({"t": 4})
        assert array.chunks[0] == (4, 2)
        np.testing.assert_array_equal(array.compute(), tifffile.imread(path))


def test_chunks_of_a_folder_with_a_filled_gap(tmp_path: Path) -> None:
    data = np.random.default_rng(11).integers(1, 4096, (5, 6, 7), dtype=np.uint16)
    for t in (0, 1, 3, 4):  # t = 2 missing
        tifffile.imwrite(tmp_path / f"img_t{t}.tif", data[t])
    expected = data.copy()
    expected[2] = 0
    with TiffSequenceND(tmp_path, fill_missing=0) as reader:
        np.testing.assert_array_equal(reader.to_dask({"t": 3}).compute(), expected)


def test_worker_closes_the_readers_it_drops_from_its_cache(hyperstack, reopened_readers) -> None:
    """A worker keeps 16 re-opened readers; the ones it dropped were left open until the
    garbage collector found them (a ResourceWarning each, in long-lived workers). A dropped
    reader that a task still holds is closed when that task lets it go, not under it."""
    import pickle

    from pims_videoutils import _dask

    path, data = hyperstack
    readers = [TiffStackND(path) for _ in range(_dask._MAX_REOPENED + 2)]
    try:
        blobs = [pickle.dumps(_dask.GraphReader(reader)) for reader in readers]
        held = pickle.loads(blobs[0])  # a task still reading the first reader
        first = held.reader
        second = pickle.loads(blobs[1]).reader  # a task that has ended
        for blob in blobs[2:]:
            pickle.loads(blob)
        assert first not in reopened_readers.values()
        assert second not in reopened_readers.values()
        assert second.closed
        np.testing.assert_array_equal(held.reader.get_plane(t=3, z=2, c=1), data[3, 2, 1])
        del held
        assert first.closed
        assert not any(reader.closed for reader in reopened_readers.values())
    finally:
        for reader in readers:
            reader.close()


def test_task_of_a_list_of_files_pickles_small_and_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopened_readers
) -> None:
    """Each task of the processes scheduler is pickled: with a list of files as the source,
    every task carried the whole list (49 KB at 1000 files) and pickled it again in this
    process and, for the worker's cache key, in the worker."""
    import pickle

    from pims_videoutils import _dask

    names = [tmp_path / f"a_rather_long_name_of_an_acquisition_t{t:03d}.tif" for t in range(200)]
    for t, name in enumerate(names):
        tifffile.imwrite(name, np.full((2, 3), t, np.uint16))
    with TiffSequenceND([str(name) for name in names]) as reader:
        graph_reader = _dask.GraphReader(reader)
        listed = len(pickle.dumps(reader))
        reductions = []
        original = type(reader).__reduce__
        monkeypatch.setattr(type(reader), "__reduce__",
                            lambda self: reductions.append(1) or original(self))
        tasks = [pickle.dumps(graph_reader) for _ in range(3)]
        assert len(reductions) == 1
        assert all(len(task) < listed / 4 for task in tasks)
        monkeypatch.setattr(_dask.pickle, "dumps", None)  # the worker pickles nothing
        worker = pickle.loads(tasks[1])
        assert worker.reader is pickle.loads(tasks[2]).reader
        np.testing.assert_array_equal(worker.reader.get_plane(t=150), np.full((2, 3), 150))
