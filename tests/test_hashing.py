"""sha256_of: the hash that ingest provenance (stored in `sources.sha256`) and emit manifests record."""

from __future__ import annotations

import hashlib

import pytest

from curate.hashing import sha256_of


def test_a_file_hashes_to_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "data.jsonl"
    data = bytes(range(256)) * 9_000           # more than one read buffer
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()
    assert sha256_of(str(path), salt=b"v1\0") == hashlib.sha256(b"v1\0" + data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_of(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_a_folder_hashes_its_files_in_sorted_path_order(tmp_path):
    # "a-c" sorts before "a/b" as a string, after it as path parts: the string order is the stored one
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").write_bytes(b"second")
    (tmp_path / "a-c").write_bytes(b"first")
    (tmp_path / "z").mkdir()                   # folders add nothing
    assert sha256_of(tmp_path) == hashlib.sha256(b"first" + b"second").hexdigest()
    assert sha256_of(tmp_path) != sha256_of(tmp_path / "a")


def test_a_missing_path_is_an_error_not_the_hash_of_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        sha256_of(tmp_path / "no-such")
