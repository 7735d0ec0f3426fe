"""Decoding compressed, tiled, planar or bit-packed TIFF pages one at a time, through tifffile.

Parsing a page's whole IFD into a ``tifffile.TiffPage`` costs about a tenth of decoding a
deflate-compressed 512 x 512 plane. Each page's layout-defining tags and data segments are
instead read with a few ``pread`` (:func:`._ifd.page_tags`); a page whose layout equals that
of the first page decoded becomes a ``tifffile.TiffFrame`` of it, given where its data lie
(tifffile reads nothing more): verified per page, never assumed. Any other page is parsed in
full, and so are uncompressed pages (whose frames tifffile assumes to be laid out as the first
page's, strip for strip).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import tifffile

from ._errors import MALFORMED_TIFF_ERRORS, StackReadError
from ._ifd import PageTags, page_tags
from ._pread import PlaneReads

__all__ = ["PageDecoder"]

# errors on pages that cannot be decoded: a malformed page, and ImportError (a codec not
# installed) or OSError (a seek to an impossible offset)
_DECODE_ERRORS = (*MALFORMED_TIFF_ERRORS, ImportError, OSError)
_GAP_BYTES = 1 << 16  # bytes between a page's data segments still read as one range
# pages with less data are not announced: the kernel's read-ahead of a few pages too many
# costs less than the advice (about 4 us per page)
_SMALL_READ_BYTES = 1 << 16


class PageDecoder:
    """Decodes the pages of one open TIFF file; thread-safe.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.
    reads : PlaneReads
        Reads of the same file (for the IFDs' layout tags); its path names the file in errors.
    lock : threading.RLock
        Guards ``tif``'s file handle; shared with the file's other users (who set the
        ``lock`` attribute to their new lock in a forked child).
    """

    def __init__(self, tif: tifffile.TiffFile, reads: PlaneReads, lock: threading.RLock) -> None:
        self._tif = tif
        self._reads = reads
        self.lock = lock
        self._keyframe: tifffile.TiffPage | None = None
        self._key_signature: dict | None = None

    def decode(self, ifd_offset: int, index: int | None = None) -> np.ndarray:
        """Decode the page whose IFD lies at ``ifd_offset``, as tifffile does.

        ``index`` numbers the page in error messages (None: its offset does).

        Raises
        ------
        StackReadError
            The page cannot be decoded (corrupt, or a codec that needs ``imagecodecs``).
        """
        tif = self._tif
        try:
            tags = page_tags(self._reads.read_bytes, tif.byteorder, tif.is_bigtiff, ifd_offset)
            with self.lock:
                if self._is_frame_of_key(tags):
                    page = tifffile.TiffFrame(tif, index or 0, offset=ifd_offset,
                                              keyframe=self._keyframe,
                                              dataoffsets=tags.dataoffsets,
                                              databytecounts=tags.databytecounts)
                else:
                    tif.filehandle.seek(ifd_offset)
                    page = tifffile.TiffPage(tif, index or 0)
                    # the key of later frames; not an uncompressed page (tifffile assumes
                    # that the strips of its frames lie as its own do)
                    if self._keyframe is None and tags is not None and not page.is_contiguous:
                        self._keyframe, self._key_signature = page, tags.signature
            _check_segments(page)
            self._announce_data_read(page)
            return page.asarray(lock=self.lock)
        except _DECODE_ERRORS as exc:
            what = f"the page at byte {ifd_offset}" if index is None else f"page {index}"
            if isinstance(exc, ImportError) or "imagecodecs" in str(exc):
                reason = (f"no codec to decode {what} ({exc}); install the optional codecs "
                          "with `pip install imagecodecs`")
            else:
                reason = f"cannot decode {what} ({type(exc).__name__}: {exc})"
        # raised here, not in the except clause: the error keeps no context whose traceback
        # would hold the page's buffers (e.g. a huge output array tifffile had allocated)
        raise StackReadError(self._reads.path, reason)

    def _is_frame_of_key(self, tags: PageTags | None) -> bool:
        """Whether the page of ``tags`` has the key page's layout (and as many segments)."""
        return (tags is not None and tags.signature == self._key_signature
                and len(tags.dataoffsets) == len(self._keyframe.dataoffsets))

    def _announce_data_read(self, page: tifffile.TiffPage | tifffile.TiffFrame) -> None:
        """Announce the read of the page's data to the reads (see ``_pread``).

        Only when the data lie together and are not small: other reads are left to the
        kernel.
        """
        segments = [(offset, count) for offset, count in zip(page.dataoffsets,
                                                             page.databytecounts, strict=True)
                    if count > 0]
        if not segments:
            return
        start = min(offset for offset, _ in segments)
        end = max(offset + count for offset, count in segments)
        if _SMALL_READ_BYTES <= end - start <= sum(count for _, count in segments) + _GAP_BYTES:
            self._reads.will_read(start, end - start)


def _check_segments(page: tifffile.TiffPage | tifffile.TiffFrame) -> None:
    """Raise ValueError if the page has fewer strips or tiles than its size needs.

    tifffile reads the missing ones as zeros (with a log message), allocating the whole
    declared image: a corrupt size tag of a tiny file (``ImageLength`` 10**7 or 10**5 x 10**5
    tiles) took seconds to hours and gigabytes to give zeros. Also if its offsets and byte
    counts differ in number (tifffile makes them agree for strips only).
    """
    if len(page.dataoffsets) != len(page.databytecounts):
        raise ValueError(
            f"it has {len(page.dataoffsets)} strip or tile offsets but "
            f"{len(page.databytecounts)} byte counts (corrupt offsets or byte counts tag)")
    needed = math.prod(page.chunked)
    if len(page.dataoffsets) < needed or len(page.databytecounts) < needed:
        raise ValueError(
            f"it has {min(len(page.dataoffsets), len(page.databytecounts))} strips or tiles, "
            f"its size {'x'.join(map(str, page.shape))} needs {needed} (corrupt size or "
            "offsets tags)")
