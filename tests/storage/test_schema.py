"""The Lance tables carry exactly the contract columns of docs/architecture.md#lance-tables, with the stated
types, in order."""

import lance
import pyarrow as pa

from storage import schema as S

F32, I32, STR = pa.float32(), pa.int32(), pa.string()
XYZ, UV = pa.list_(F32, 3), pa.list_(F32, 2)
BLOB = lance.blob_field("x").type


def columns(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.type) for f in schema]


def test_episodes_contract():
    assert columns(S.EPISODES) == [
        ("episode_id", STR), ("source_uri", STR), ("corpus", STR), ("preset", STR), ("fps", F32),
        ("n_frames", I32), ("frame_index", pa.list_(I32)), ("width", I32), ("height", I32),
        ("K", pa.list_(F32, 9)), ("w2c", pa.list_(pa.list_(F32, 16))), ("depth_source", STR),
        ("pose_source", STR), ("scale_spread", F32), ("depth_scale_ratio", F32), ("metric_scale_ok", pa.bool_()),
        ("status", STR), ("errors", STR), ("track_coverage", F32), ("n_tracks", I32),
        ("n_moving", I32), ("n_samples", I32), ("instruction", STR), ("task", STR), ("embodiment", STR),
        ("pipeline_version", STR), ("ingested_at", pa.timestamp("us", tz="UTC")), ("config", STR),
    ]
    assert not S.EPISODES.field("episode_id").nullable


def test_tracks_contract():
    assert columns(S.TRACKS) == [
        ("episode_id", STR), ("track_id", I32), ("query_frame", I32), ("query_uv", UV),
        ("xyz", pa.list_(XYZ)), ("visible", pa.list_(pa.bool_())), ("cluster_id", I32), ("is_moving", pa.bool_()),
    ]


def test_samples_contract_with_lengths_in_metadata():
    sch = S.samples_schema(16, 4)
    assert columns(sch) == [
        ("episode_id", STR), ("frame", I32), ("keypoints_uv", pa.list_(UV)), ("track_id", pa.list_(I32)),
        ("future", pa.list_(pa.list_(XYZ, 16))), ("future_valid", pa.list_(pa.list_(pa.bool_(), 16))),
        ("history", pa.list_(pa.list_(XYZ, 4))), ("history_valid", pa.list_(pa.list_(pa.bool_(), 4))),
        ("cluster_id", pa.list_(I32)), ("caption_ids", pa.list_(I32)),
    ]
    assert sch.metadata == {b"future_len": b"16", b"history_len": b"4"}
    assert S.SAMPLES.field("future").type == pa.list_(pa.list_(XYZ, 128))  # the defaults: L=128, Lh=32
    assert S.SAMPLES.field("history").type == pa.list_(pa.list_(XYZ, 32))


def test_frames_contract():
    assert columns(S.FRAMES) == [("episode_id", STR), ("frame", I32), ("jpeg", BLOB), ("depth_png16", BLOB)]
    assert S.FRAMES.field("depth_png16").nullable


def test_captions_contract():
    assert columns(S.CAPTIONS) == [
        ("episode_id", STR), ("caption_id", I32), ("level", STR), ("start_frame", I32), ("end_frame", I32),
        ("instruction_1", STR), ("instruction_2", STR), ("instruction_3", STR),
        ("skill_labels", pa.list_(STR)), ("embodiment", STR), ("embedding", pa.list_(F32, 384)),
    ]


def test_demonstrations_contract():
    assert columns(S.DEMONSTRATIONS) == [
        ("episode_id", STR), ("frame_index", I32), ("frame", I32), ("timestamp", F32),
        ("state", pa.list_(F32)), ("action", pa.list_(F32)), ("fps", F32), ("source_episode_index", pa.int64()),
    ]


def test_every_table_has_a_schema():
    assert S.TABLES == ("episodes", "tracks", "samples", "frames", "captions", "demonstrations")
    assert set(S.table_schemas()) == set(S.TABLES)
