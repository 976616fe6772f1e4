"""Our tar member reader against Python's tarfile, on the formats real writers produce."""

import gzip
import io
import tarfile

import pytest
import webdataset as wds

from betavae_dist.data.tars import TarFormatError, regular_files

LONG = "a" * 60 + "/" + "b" * 70 + "/" + "c" * 50 + ".png"  # over ustar's 100-character name field


def archive(tar_format, names_and_sizes, mtime=0):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, size in names_and_sizes:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if size is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif size == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "x.png"
                tar.addfile(info)
            else:
                info.size = size
                tar.addfile(info, io.BytesIO(bytes((i * 7 + len(name)) % 251 for i in range(size))))
    return buffer.getvalue()


def tarfile_members(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]


CONTENTS = [("x.png", 100), ("x.json", 0), ("dir", None), ("dir/y.png", 512), ("dir/y.json", 513),
            ("link", "link"), (LONG, 3000)]


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_same_files_as_tarfile_in_every_format(tar_format):
    beyond_ustar = [("d" * 150 + ".png", 5), ("ünïcode/ž.png", 10)]  # GNU long names, PAX paths
    contents = CONTENTS + (beyond_ustar if tar_format != tarfile.USTAR_FORMAT else [])
    data = archive(tar_format, contents, mtime=1.5)  # a float mtime makes tarfile write PAX records
    got = list(regular_files(io.BytesIO(data)))
    assert got == tarfile_members(data)
    assert len(got) == len(contents) - 2 and got[-1][0] == contents[-1][0]


def test_same_files_as_tarfile_for_webdatasets_writer():
    buffer = io.BytesIO()
    with wds.TarWriter(buffer) as sink:  # PAX headers (float mtime), as webdataset writes them
        for i in range(3):
            sink.write({"__key__": f"sample{i}", "png": b"\x89PNG" * (i + 100), "json": b"{}"})
    data = buffer.getvalue()
    assert list(regular_files(io.BytesIO(data))) == tarfile_members(data)


class Trickle(io.RawIOBase):
    """A stream that returns at most 100 bytes a read, as raw pipes and sockets may."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, size=-1):
        return self.data.read(min(size, 100))


def test_short_reads_give_the_same_files():
    data = archive(tarfile.PAX_FORMAT, CONTENTS, mtime=1.5)
    assert list(regular_files(Trickle(data))) == tarfile_members(data)


def test_truncation_is_named_with_its_place():
    data = archive(tarfile.USTAR_FORMAT, [("x.png", 100), ("y.png", 2000)])
    with pytest.raises(TarFormatError, match="truncated: member y.png at byte 1024 has 464 of 2000 bytes"):
        list(regular_files(io.BytesIO(data[:2000])))
    with pytest.raises(TarFormatError, match="truncated: a header at byte 1024 has 300 of 512 bytes"):
        list(regular_files(io.BytesIO(data[:1324])))
    assert [n for n, _ in regular_files(io.BytesIO(data[:1024]))] == ["x.png"]  # cut at a member boundary


def test_corrupt_header_and_compressed_shard_are_refused():
    data = bytearray(archive(tarfile.USTAR_FORMAT, [("x.png", 100), ("y.png", 100)]))
    data[1024 + 10] ^= 0xFF  # a flipped byte in the second header's name
    with pytest.raises(TarFormatError, match="no valid tar header at byte 1024"):
        list(regular_files(io.BytesIO(bytes(data))))
    with pytest.raises(TarFormatError, match="gzip-compressed; shards must be uncompressed tar"):
        list(regular_files(io.BytesIO(gzip.compress(bytes(data)))))
