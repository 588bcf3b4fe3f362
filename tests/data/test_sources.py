"""Sources: folders, tar/zip archives read in place, and refusal of everything that escapes the tree."""

from __future__ import annotations

import gzip
import os
import zipfile

from texpress.data.sources import LINK, MISSING, SPECIAL_FILE, UNREADABLE, UNSAFE_PATH, iter_items, unsafe_member_reason


def _items(*sources, max_file_bytes=10_000_000):
    return list(iter_items([str(s) for s in sources], max_file_bytes))


def test_folder_is_walked_recursively_in_sorted_order(photo_dir):
    items = _items(photo_dir)
    names = [i.source.split("photos/", 1)[1] for i in items]
    assert names == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "sub/copy_of_img0.jpg", "sub/gray5.png", "sub/img4.png"]
    assert all(i.data == (photo_dir / n).read_bytes() for i, n in zip(items, names))


def test_tar_gz_and_zip_are_read_without_unpacking(tmp_path, good_tar, make_image):
    zpath = tmp_path / "photos.zip"
    payload = make_image(300, 300, seed=7)
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x/y.jpg", payload)
    before = set(os.listdir(tmp_path))
    items = _items(good_tar, zpath)
    assert [i.source for i in items] == [f"{good_tar}::dir/a.jpg", f"{good_tar}::dir/b.png", f"{zpath}::x/y.jpg"]
    assert items[2].data == payload and all(i.reason is None for i in items)
    assert set(os.listdir(tmp_path)) == before  # nothing extracted


def test_archives_inside_folders_are_expanded(tmp_path, good_tar):
    folder = tmp_path / "store"
    folder.mkdir()
    good_tar.rename(folder / "batch.tgz")
    items = _items(folder)
    assert [i.source for i in items] == [f"{folder}/batch.tgz::dir/a.jpg", f"{folder}/batch.tgz::dir/b.png"]


def test_malicious_tar_entries_are_refused_and_reported(malicious_tar, no_escape):
    items = _items(malicious_tar)
    by_name = {i.source.split("::", 1)[1]: i for i in items}
    assert by_name["ok/good.jpg"].data is not None and by_name["ok/good.jpg"].reason is None
    assert by_name["../escape.jpg"].reason == UNSAFE_PATH
    assert by_name["ok/../../escape2.jpg"].reason == UNSAFE_PATH
    assert by_name["/tmp/texpress-absolute.jpg"].reason == UNSAFE_PATH
    assert by_name["ok/link.jpg"].reason == LINK and "/etc/passwd" in by_name["ok/link.jpg"].detail
    assert by_name["ok/hard.jpg"].reason == LINK
    assert by_name["ok/fifo.jpg"].reason == SPECIAL_FILE
    refused = [i for i in items if i.reason]
    assert all(i.data is None and "\n" not in i.detail for i in refused)
    assert not (malicious_tar.parent.parent / "escape.jpg").exists()


def test_malicious_zip_entries_are_refused_and_reported(malicious_zip, no_escape):
    items = _items(malicious_zip)
    by_name = {i.source.split("::", 1)[1]: i for i in items}
    assert by_name["ok/good.jpg"].reason is None
    assert by_name["../escape.jpg"].reason == UNSAFE_PATH
    assert by_name["/tmp/texpress-absolute.jpg"].reason == UNSAFE_PATH
    assert by_name["ok/link.jpg"].reason == LINK and by_name["ok/link.jpg"].data is None


def test_symlinks_in_folders_are_not_followed(tmp_path, photo_dir):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((photo_dir / "img1.jpg").read_bytes())
    (photo_dir / "link.jpg").symlink_to(outside)
    (photo_dir / "linkdir").symlink_to(tmp_path)
    refused = {i.source.rsplit("/", 1)[1]: i for i in _items(photo_dir) if i.reason}
    assert set(refused) == {"link.jpg", "linkdir"}
    assert all(i.reason == LINK for i in refused.values())


def test_unsafe_member_names():
    assert unsafe_member_reason("a/b.jpg") is None
    assert unsafe_member_reason("a/..b.jpg") is None
    for bad in ("../a.jpg", "a/../../b.jpg", "/etc/x.jpg", "C:\\x.jpg", "a\\..\\..\\b.jpg"):
        assert unsafe_member_reason(bad), bad


def test_missing_source_and_corrupt_archives_are_fatal_items(tmp_path, good_tar):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good_tar.read_bytes()[: good_tar.stat().st_size // 2])
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip file at all")
    items = _items(tmp_path / "nope", truncated, garbage)
    assert items[0].reason == MISSING and items[0].fatal
    assert items[-1].reason == UNREADABLE and items[-1].fatal and items[-1].source == str(garbage)
    trunc_items = [i for i in items if str(truncated) in i.source]
    assert trunc_items[-1].reason == UNREADABLE and trunc_items[-1].fatal


def test_file_size_limit_is_checked_before_reading(tmp_path, good_tar, make_image):
    big = make_image(300, 300, seed=1)
    (tmp_path / "big.jpg").write_bytes(big)
    items = _items(tmp_path / "big.jpg", good_tar, max_file_bytes=1000)
    assert {i.reason for i in items} == {"file_too_large"}


def test_zip_bomb_entry_is_cut_at_the_limit(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", b"\0" * 5_000_000)
    # lie about the size in the central directory so that only the read limit protects us
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    lh = data.find(b"PK\x03\x04")
    data[lh + 22:lh + 26] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    [item] = _items(path, max_file_bytes=1_000_000)
    assert item.data is None and item.reason in ("file_too_large", UNREADABLE)


def test_plain_gzip_is_not_mistaken_for_an_image(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(gzip.compress(b"not a tar"))
    [item] = _items(path)
    assert item.reason == UNREADABLE and item.fatal
