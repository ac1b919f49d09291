"""Apple's Core Audio Format (CAF) cut short: noticed, and read up to the cut.

A CAF file's ``data`` chunk states its size in bytes. libsndfile refuses a file
whose data chunk runs past the end of the file ("supported file format but file
is malformed"), so a CAF cut short by an interrupted copy or recording could not
be opened at all, and the user was not told why. Other containers' readers open
such a file with what it holds (see ``io.declared_frames``).

Here the chunks are walked (a 12-byte header per chunk: a four-character type
and a signed big-endian 64-bit size), and when the data runs past the end of the
file, libsndfile is given a view of the file whose data size is what is there:
the whole packets present, so a compressed packet cut in two (ALAC's are 4096
frames) is not decoded into noise. libsndfile's ALAC reader goes by the packet
table, up to its end or a packet of size 0, whatever the count before it says:
so the size after the last whole packet is made 0 (and the counts made to
match). The view patches a few bytes of the header as they are read; nothing is
copied. A file cut inside its header, before its data chunk, is an error that
says it is cut short.

CAF (Apple, "Core Audio Format Specification"): ``desc`` holds the sample rate,
the format, bytes and frames per packet (0 when they vary); ``pakt`` holds the
number of packets and of valid frames, then each packet's size in bytes (when
they vary) as a variable-length integer (7 bits a byte, most significant first,
the top bit set on all bytes but the last); ``data`` holds a 4-byte edit count
and then the packets.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import Optional

# Chunks read before giving up on finding the data (real files have a handful).
MAX_CHUNKS = 64
# The edit count that opens the data chunk.
EDIT_COUNT_BYTES = 4
# The packet table's counts before its packet sizes.
PAKT_HEADER_BYTES = 24
# A larger packet table is taken for damage (ALAC's for ten hours is about 1 MB).
MAX_PAKT_BYTES = 1 << 26


@dataclass(frozen=True)
class CafLayout:
    """Where a CAF file's data is, and how it is packed.

    header_cut : the file ends before its data chunk (the other fields are then 0)
    size_field : byte offset of the data chunk's 64-bit size
    data_start : byte offset of the first packet (after the edit count)
    data_bytes : the packets' bytes the header announces (-1: up to the end of the file)
    file_bytes : the file's length
    packet_bytes, packet_frames : from ``desc`` (0 when they vary)
    packet_sizes : each packet's bytes, from ``pakt`` (empty when they are constant)
    packet_ends : where each packet's size ends in the packet table (bytes after its
        counts), as the file encodes it
    valid_frames : the frames ``pakt`` announces (None without one)
    pakt_start : byte offset of the packet table's body (-1 without one)
    priming_frames : the encoder's delay, from ``pakt``
    """

    header_cut: bool
    size_field: int
    data_start: int
    data_bytes: int
    file_bytes: int
    packet_bytes: int
    packet_frames: int
    packet_sizes: tuple
    valid_frames: Optional[int]
    packet_ends: tuple = ()
    pakt_start: int = -1
    priming_frames: int = 0

    @property
    def cut_short(self) -> bool:
        return self.header_cut or (
            self.data_bytes >= 0 and self.data_start + self.data_bytes > self.file_bytes)

    def declared_frames(self) -> Optional[int]:
        """The frames the header announces, or None when it announces none."""
        if self.valid_frames is not None:
            return self.valid_frames
        if self.data_bytes >= 0 and self.packet_bytes > 0:
            return self.data_bytes // self.packet_bytes * self.packet_frames
        return None

    def readable_packets(self) -> tuple[int, int]:
        """(packets, bytes) of the whole packets the file holds."""
        present = max(0, self.file_bytes - self.data_start)
        if self.packet_bytes > 0:
            packets = present // self.packet_bytes
            return packets, packets * self.packet_bytes
        packets = total = 0
        for size in self.packet_sizes:
            if total + size > present:
                break
            packets, total = packets + 1, total + size
        return packets, total

    def patches(self) -> list[tuple[int, bytes]]:
        """(offset, bytes) to put in place of the header's, so that it announces the
        whole packets there are: the data's size, and the packet table's counts."""
        packets, size = self.readable_packets()
        out = [(self.size_field, struct.pack(">q", size + EDIT_COUNT_BYTES))]
        if self.pakt_start >= 0:
            valid = max(0, packets * self.packet_frames - self.priming_frames)
            out.append((self.pakt_start, struct.pack(">qqii", packets, valid,
                                                     self.priming_frames, 0)))
            if packets < len(self.packet_sizes):
                table = self.packet_ends[packets - 1] if packets else 0
                out.append((self.pakt_start + PAKT_HEADER_BYTES + table, b"\x00"))
        return out


def _varint_list(body: bytes, count: int) -> tuple[tuple, tuple]:
    """``count`` variable-length integers from ``body`` (fewer when it ends first),
    and the offset in ``body`` where each ends."""
    values, ends, value = [], [], 0
    for i, byte in enumerate(body):
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(value)
            ends.append(i + 1)
            value = 0
            if len(values) == count:
                break
    return tuple(values), tuple(ends)


def _header_cut(file_bytes: int) -> CafLayout:
    return CafLayout(True, 0, 0, 0, file_bytes, 0, 0, (), None)


def caf_layout(path: os.PathLike | str) -> Optional[CafLayout]:
    """The layout of the CAF file ``path`` (see :func:`read_layout`)."""
    try:
        with open(path, "rb") as f:
            return read_layout(f)
    except OSError:
        return None


def read_layout(f) -> Optional[CafLayout]:
    """The layout of the CAF file open for reading as ``f`` (binary, seekable; read
    from its start), with ``header_cut`` when the file ends before its data chunk;
    None when it is not a CAF file or its chunks cannot be walked up to the data."""
    try:
        f.seek(0)
        if f.read(8)[:4] != b"caff":
            return None
        file_bytes = f.seek(0, os.SEEK_END)
        f.seek(8)
        packet_bytes = packet_frames = None
        sizes, ends, valid, pakt_start, priming = (), (), None, -1, 0
        for _ in range(MAX_CHUNKS):
            head = f.read(12)
            if len(head) < 12:
                return _header_cut(file_bytes)
            kind, size = head[:4], struct.unpack(">q", head[4:])[0]
            body = f.tell()
            if kind == b"data":
                if packet_bytes is None:
                    return None
                data_bytes = size - EDIT_COUNT_BYTES if size >= 0 else -1
                return CafLayout(False, body - 8, body + EDIT_COUNT_BYTES, data_bytes,
                                 file_bytes, packet_bytes, packet_frames, sizes, valid, ends,
                                 pakt_start, priming)
            if size < 0:
                return None
            if body + size > file_bytes:
                return _header_cut(file_bytes)
            if kind == b"desc":
                desc = f.read(32)
                if len(desc) < 32:
                    return None
                packet_bytes, packet_frames = struct.unpack(">II", desc[16:24])
            elif kind == b"pakt":
                if size > MAX_PAKT_BYTES:
                    return None
                pakt = f.read(size)
                if len(pakt) < PAKT_HEADER_BYTES:
                    return None
                packets, valid, priming = struct.unpack(">qqi", pakt[:20])
                pakt_start = body
                if packet_bytes == 0:
                    sizes, ends = _varint_list(pakt[PAKT_HEADER_BYTES:], packets)
            f.seek(body + size)
    except (OSError, struct.error):
        return None
    return None


class _PatchedFile(io.RawIOBase):
    """A read-only view of a file with each (offset, bytes) of ``patches`` in place
    of the file's bytes there."""

    def __init__(self, path: os.PathLike | str, patches: list[tuple[int, bytes]]):
        super().__init__()
        self._file = open(path, "rb")
        self._patches = patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(pos, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buf) -> int:
        start = self._file.tell()
        n = self._file.readinto(buf)
        for offset, patch in self._patches:
            lo, hi = max(start, offset), min(start + n, offset + len(patch))
            if lo < hi:
                memoryview(buf)[lo - start:hi - start] = patch[lo - offset:hi - offset]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def readable_view(path: os.PathLike | str) -> Optional[io.RawIOBase]:
    """A view of the CAF file ``path`` that libsndfile opens, when its data chunk
    runs past the end of the file: the data's size says the whole packets that are
    there. None when ``path`` is not a CAF file cut short. The caller closes it."""
    layout = caf_layout(path)
    if layout is None or layout.header_cut or not layout.cut_short:
        return None
    return _PatchedFile(path, layout.patches())
