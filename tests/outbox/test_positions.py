"""Where a consumer continues in a partition (pure): the log's name decides, not its end."""

from __future__ import annotations

from choreo.outbox.positions import Position, log_id_of


def test_a_position_in_the_same_log_is_resumed_even_past_the_reported_high_watermark():
    """Measured on the embedded broker after a 50,000-saga soak: it served offsets up to
    11,676 on a partition whose high watermark it reported as 11,669. Reading from the
    start there re-reads a whole topic after every restart of a consumer. (The stored
    position is all the runtime passes: the watermark is no longer an argument.)"""
    assert Position(11_677, "log-a").resume_offset("log-a") == 11_677


def test_a_position_of_another_log_means_reading_from_the_start():
    assert Position(10, "log-a").resume_offset("log-b") is None


def test_a_topic_created_again_under_the_same_cluster_is_read_from_the_start():
    """Finding 7 of issue 21: a recreated topic has a new topic id, not a new cluster id."""
    stored = Position(10, log_id_of("cluster-a", "topic-1"))
    assert stored.resume_offset(log_id_of("cluster-a", "topic-1")) == 10
    assert stored.resume_offset(log_id_of("cluster-a", "topic-2")) is None
    assert stored.resume_offset(log_id_of("cluster-b", "topic-1")) is None


def test_a_position_stored_before_topic_ids_resumes_in_the_same_cluster():
    assert Position(10, "cluster-a").resume_offset(log_id_of("cluster-a", "topic-1")) == 10
    assert Position(10, "cluster-a").resume_offset(log_id_of("cluster-b", "topic-1")) is None
