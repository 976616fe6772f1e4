"""The regular files of an uncompressed tar stream, in order, read without Python's `tarfile`.

`tarfile` builds a TarInfo object per member in Python, ~20 µs a member: with two members a sample,
~42 of the ~150 µs the stream spent per sample once PNGs decoded with libspng; this takes ~4
(docs/benchmarks.md). A shard reader needs only each file's name and bytes, one 512-byte header
before it. This reads the headers that tarfile, GNU tar and webdataset's TarWriter write (v7, ustar,
GNU; PAX `path` and `size` records; GNU long names; tests/test_tars.py compares it with tarfile)
and, like webdataset, skips directories, links and other entries.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

BLOCK = 512
COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz"}
REGULAR = (b"0", b"\0", b"7")


class TarFormatError(ValueError):
    """Not a readable tar stream; the message says where it broke off."""


def _number(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256, for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    return int(field.strip(b"\0 ") or b"0", 8)


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    summed = header[:148] + b" " * 8 + header[156:]  # the checksum field counts as spaces
    unsigned = sum(summed)
    return stored == unsigned or stored == unsigned - 256 * sum(b > 127 for b in summed)  # old signed sums


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """The records of a PAX extended header: b"<length> <key>=<value>\\n" each."""
    records, position = {}, 0
    while position < len(data) and data[position:position + 1] != b"\0":
        space = data.index(b" ", position)
        end = position + int(data[position:space])
        key, _, value = data[space + 1:end - 1].partition(b"=")
        records[key] = value
        position = end
    return records


def _name(header: bytes) -> bytes:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0" and header[345] != 0:  # POSIX ustar: a prefix for long paths
        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
    return name


def _read(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at EOF (raw pipes and sockets may return less per call)."""
    data = stream.read(size)
    while len(data) < size and (more := stream.read(size - len(data))):
        data += more
    return data


def _read_exactly(stream: BinaryIO, size: int, what: str, offset: int) -> bytes:
    data = _read(stream, size)
    if len(data) < size:
        raise TarFormatError(f"truncated: {what} at byte {offset} has {len(data)} of {size} bytes")
    return data


def regular_files(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file, in archive order; ends at the end-of-archive block or EOF."""
    offset, next_name, next_size = 0, None, None
    while True:
        header = _read(stream, BLOCK)
        if not header or header == bytes(BLOCK):
            return
        if len(header) < BLOCK or not _checksum_ok(header):
            compression = next((kind for magic, kind in COMPRESSION_MAGIC.items() if header.startswith(magic)), None)
            if offset == 0 and compression:
                raise TarFormatError(f"{compression}-compressed; shards must be uncompressed tar (their images "
                                     "are compressed already)")
            if len(header) < BLOCK:
                raise TarFormatError(f"truncated: a header at byte {offset} has {len(header)} of {BLOCK} bytes")
            raise TarFormatError(f"no valid tar header at byte {offset}")
        kind = header[156:157]
        size = next_size if next_size is not None and kind in REGULAR else _number(header[124:136])
        name = _name(header) if next_name is None else next_name
        data = _read_exactly(stream, size, f"member {name.decode(errors='replace')}", offset)
        _read_exactly(stream, -size % BLOCK, "padding", offset)
        offset += BLOCK + size + (-size % BLOCK)
        if kind == b"x":  # PAX: overrides for the next member
            records = _pax_records(data)
            next_name = records.get(b"path", next_name)
            next_size = int(records[b"size"]) if b"size" in records else next_size
        elif kind == b"L":  # GNU: a long name for the next member
            next_name = data.split(b"\0", 1)[0]
        elif kind in (b"g", b"K"):  # PAX global header, GNU long link name: nothing a reader of files needs
            pass
        else:
            if kind in REGULAR:
                yield name.decode("utf-8", "surrogateescape"), data
            next_name = next_size = None
