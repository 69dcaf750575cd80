"""The Lance tables carry the DESIGN.md contract columns with the stated types."""

import pyarrow as pa

from storage import schema as S

F32 = pa.float32()


def fields(schema: pa.Schema) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in schema}


def test_episodes_contract():
    f = fields(S.EPISODES)
    expected = {
        "episode_id": pa.string(), "source_uri": pa.string(), "corpus": pa.string(), "preset": pa.string(),
        "fps": F32, "n_frames": pa.int32(), "frame_index": pa.list_(pa.int32()), "width": pa.int32(),
        "height": pa.int32(), "K": pa.list_(F32, 9), "w2c": pa.list_(pa.list_(F32, 16)),
        "depth_source": pa.string(), "pose_source": pa.string(), "status": pa.string(), "errors": pa.string(),
        "track_coverage": F32, "pipeline_version": pa.string(), "ingested_at": pa.timestamp("us", tz="UTC"),
    }
    for name, typ in expected.items():
        assert f[name] == typ, name


def test_tracks_contract():
    f = fields(S.TRACKS)
    assert f["xyz"] == pa.list_(pa.list_(F32, 3))
    assert f["visible"] == pa.list_(pa.bool_())
    assert f["query_uv"] == pa.list_(F32, 2)
    assert {"episode_id", "track_id", "query_frame", "cluster_id", "is_moving"} <= f.keys()


def test_samples_contract_with_lengths_in_metadata():
    sch = S.samples_schema(16, 4)
    f = fields(sch)
    assert f["future"] == pa.list_(pa.list_(pa.list_(F32, 3), 16))
    assert f["history"] == pa.list_(pa.list_(pa.list_(F32, 3), 4))
    assert f["future_valid"] == pa.list_(pa.list_(pa.bool_(), 16))
    assert f["keypoints_uv"] == pa.list_(pa.list_(F32, 2))
    assert {"episode_id", "frame", "cluster_id", "caption_ids", "history_valid"} <= f.keys()
    assert sch.metadata[b"future_len"] == b"16" and sch.metadata[b"history_len"] == b"4"


def test_frames_and_captions_contract():
    f = fields(S.FRAMES)
    assert {"episode_id", "frame", "jpeg", "depth_png16"} <= f.keys()
    assert "blob" in str(S.FRAMES.field("jpeg").type) and "blob" in str(S.FRAMES.field("depth_png16").type)
    c = fields(S.CAPTIONS)
    assert c["embedding"] == pa.list_(F32, 384)
    assert c["skill_labels"] == pa.list_(pa.string())
    assert {"level", "start_frame", "end_frame", "instruction_1", "instruction_2", "instruction_3", "embodiment"} <= c.keys()
