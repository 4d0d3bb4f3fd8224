"""Safe zips: what escapes its folder, symlinks, bombs and too many files are refused with
one line naming the part; a good zip unpacks with its folders and executable bits."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import pytest

from lakeport.errors import Invalid
from lakeport.tasks.bundle import check_zip, extract_zip

WHAT = "the dependencies zip"


def make_zip(path: Path, members: dict[str, bytes], *,
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def refused(path: Path, **limits: int) -> str:
    with pytest.raises(Invalid) as caught:
        check_zip(path, what=WHAT, **limits)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(WHAT), message
    return message


def test_a_good_zip_extracts_with_folders_and_executable_bits(tmp_path: Path) -> None:
    path = tmp_path / "deps.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("lib/util.py", "X = 1\n")
        archive.writestr("data/", "")
        script = zipfile.ZipInfo("bin/run.sh")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(script, "#!/bin/sh\necho hi\n")
    assert sorted(check_zip(path, what=WHAT)) == ["bin/run.sh", "data/", "lib/util.py"]
    extract_zip(path, tmp_path / "out", what=WHAT)
    assert (tmp_path / "out" / "lib" / "util.py").read_text() == "X = 1\n"
    assert (tmp_path / "out" / "data").is_dir()
    assert (tmp_path / "out" / "bin" / "run.sh").stat().st_mode & 0o100


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "deps.zip"
    path.write_bytes(b"this is not a zip at all")
    assert refused(path) == f"{WHAT} is not a zip file"


@pytest.mark.parametrize("name", ["../evil.py", "lib/../../evil.py", "/etc/evil",
                                  "C:/evil.py", "..\\evil.py"])
def test_a_member_escaping_its_folder(tmp_path: Path, name: str) -> None:
    path = make_zip(tmp_path / "deps.zip", {"ok.py": b"", name: b"boom"})
    assert "escapes its folder" in refused(path)
    with pytest.raises(Invalid):
        extract_zip(path, tmp_path / "out", what=WHAT)
    assert not (tmp_path / "evil.py").exists()
    assert not (tmp_path / "out" / "ok.py").exists(), "nothing is unpacked from a bad zip"


def test_a_symlink_member(tmp_path: Path) -> None:
    path = tmp_path / "deps.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    assert "'passwd' is a symlink" in refused(path)


def test_too_many_files(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "deps.zip", {f"f{i}.txt": b"x" for i in range(11)})
    assert "11 members, more than the limit of 10" in refused(path, max_files=10)
    assert len(check_zip(path, what=WHAT, max_files=11)) == 11


def test_declared_size_over_the_limit(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "deps.zip", {"a.bin": b"a" * 600, "b.bin": b"b" * 600},
                    compression=zipfile.ZIP_STORED)
    assert "unpacks to 1200 bytes, more than the limit of 1000" in refused(path,
                                                                            max_bytes=1000)


def test_a_zip_bomb_by_its_ratio(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "deps.zip", {"zeros.bin": bytes(20 << 20)})
    assert "looks like a zip bomb" in refused(path)


def test_a_member_lying_about_its_size_is_caught_while_extracting(tmp_path: Path) -> None:
    """The headers say 10 bytes, the data inflates to 5000: the check passes on the headers,
    extracting stops at the lie and unpacks no more than declared."""
    path = make_zip(tmp_path / "deps.zip", {"lie.bin": b"z" * 5000})
    raw = bytearray(path.read_bytes())
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, 10)  # uncompressed size in the local header
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 10)  # ... and in the central directory
    path.write_bytes(bytes(raw))
    assert check_zip(path, what=WHAT, max_bytes=100) == ["lie.bin"]
    with pytest.raises(Invalid, match=r"member 'lie.bin' is damaged") as caught:
        extract_zip(path, tmp_path / "out", what=WHAT, max_bytes=100)
    assert "\n" not in str(caught.value)
    written = tmp_path / "out" / "lie.bin"
    assert not written.exists() or written.stat().st_size <= 10


def test_the_limit_is_enforced_while_extracting(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the header check is fooled, the bytes written are counted."""
    import lakeport.tasks.bundle as bundle

    path = make_zip(tmp_path / "deps.zip", {"a.bin": b"a" * 3000})
    monkeypatch.setattr(bundle, "check_zip", lambda *args, **kwargs: ["a.bin"])
    monkeypatch.setattr(bundle, "CHUNK", 1000)
    with pytest.raises(Invalid, match=r"unpacks to more than 2000 bytes \(at member 'a.bin'\)"):
        bundle.extract_zip(path, tmp_path / "out", what=WHAT, max_bytes=2000)
