"""data_pipelines.paths: the same calls on a local folder and on a bucket of the local GCS emulator."""
from data_pipelines import paths
def test_local_and_gs_paths_write_whole_and_read_back(gcs_bucket, tmp_path):
    for root in (gcs_bucket + "/a", str(tmp_path / "a")):
        paths.write_json(root + "/x.json", {"a": 1})
        assert paths.read_json(root + "/x.json") == {"a": 1}
        with paths.staged_file(root + "/b/y.bin") as f:
            f.write_bytes(b"abc")
        with paths.local_copy(root + "/b/y.bin") as f:
            assert f.read_bytes() == b"abc"
        assert sorted(p.name for p in paths.as_path(root).iterdir()) == ["b", "x.json"]
