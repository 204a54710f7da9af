"""The store on a real SQLite file: migrations, pragmas, lifecycle, files, retention, versions, jobs, errors."""

from __future__ import annotations

import errno
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import inspect, select

from assistant.engine.encoder import EncoderOutput
from assistant.errors import DiskFullError, NotFoundError, RefusedError, StoreError
from assistant.store import (Utterance, add_bridge_version, add_prompt, add_utterance, apply_retention,
                             attach_recording, complete_turn, count_labels_since, create_job, current_revision,
                             delete_utterance, ensure_shipped_prompts, fail_utterance, get_active_bridge, get_job,
                             get_utterance, head_revision, labelled_utterances, list_prompts, list_utterances,
                             load_encoded, mark_processing, open_store, pending_utterances, record_utterance,
                             request_cancel, running_or_paused_job, set_active_bridge, set_label, skip_utterance,
                             update_job, utterance_to_dict, write_encoded)
from assistant.store import files as store_files

TIMINGS = {"encoder_s": 0.1, "bridge_s": 0.01, "transcript_s": 0.2, "response_s": 0.3}


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def store(data_dir):
    s = open_store(data_dir)
    yield s
    s.close()


def wave(seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


def record(store, text: str | None = None, *, label: str | None = None, when: datetime | None = None,
           seconds: float = 0.5) -> int:
    """One utterance; with ``text`` it is processed (done), with ``label`` corrected."""
    with store.session() as s:
        u = record_utterance(s, data_dir=store.data_dir, samples=wave(seconds), source="mic")
        if when is not None:
            u.created_at = when
        if text is not None:
            mark_processing(s, utterance_id=u.id)
            complete_turn(s, utterance_id=u.id, transcript=text, response="ok", timings=TIMINGS,
                          bridge_version="base", activation="responded")
        if label is not None:
            set_label(s, utterance_id=u.id, text=label, source="correction")
        return u.id


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- opening, schema, pragmas ------------------------------------------------------------------------------
def test_migrations_create_schema_at_head(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"utterances", "bridge_versions", "active_bridge", "alignment_jobs", "enrollment_prompts", "timers",
            "alembic_version"} <= tables
    assert current_revision(store) == head_revision() == "0003"
    idx = {i["name"] for i in inspect(store.engine).get_indexes("utterances")}
    assert {"ix_utterances_created_at", "ix_utterances_status", "ix_utterances_label_source"} <= idx


def test_models_match_the_migrations(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from assistant.store.models import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_pragmas_wal_foreign_keys(store):
    with store.session() as s:
        conn = s.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_reopen_is_idempotent_and_keeps_rows(data_dir):
    s1 = open_store(data_dir)
    uid = record(s1, "hello")
    s1.close()
    for _ in range(2):
        s2 = open_store(data_dir)
        assert current_revision(s2) == head_revision()
        with s2.session() as s:
            assert get_utterance(s, utterance_id=uid).transcript == "hello"
        s2.close()


def test_private_modes(store, data_dir):
    uid = record(store, "hi")
    with store.session() as s:
        u = get_utterance(s, utterance_id=uid)
        rel, _ = write_encoded(data_dir, uid, EncoderOutput(torch.zeros(3, 4), None, 50.0))
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "audio") == mode(data_dir / "encoded") == 0o700
    assert mode(data_dir / u.audio_path) == mode(data_dir / rel) == 0o600
    assert mode(data_dir / "assistant.db") == 0o600


def test_a_data_dir_open_to_its_group_is_fine_and_one_open_to_everyone_is_warned_about(tmp_path, caplog):
    for mode_, warned in ((0o750, False), (0o755, True)):  # 0750: the system service's (its group runs the CLI)
        d = tmp_path / f"d{mode_:o}"
        d.mkdir()
        d.chmod(mode_)
        caplog.clear()
        open_store(d).close()
        assert ("open to every user" in caplog.text) is warned, mode_
        assert mode(d / "audio") == 0o700  # the recordings stay the owner's alone


# --- utterances --------------------------------------------------------------------------------------------
def test_utterance_lifecycle(store, data_dir):
    with store.session() as s:
        u = record_utterance(s, data_dir=data_dir, samples=wave(0.5), source="ws:kitchen")
        uid = u.id
        assert u.status == "captured" and u.audio_path == f"audio/{uid}.wav" and u.duration_s == pytest.approx(0.5)
    assert store_files.sha256_file(data_dir / u.audio_path) == u.audio_sha256
    with store.session() as s:
        assert mark_processing(s, utterance_id=uid).status == "processing"
    with store.session() as s:
        u = complete_turn(s, utterance_id=uid, transcript="turn on the light", response="done",
                          timings=TIMINGS, bridge_version="v0001", activation="responded",
                          encoded_path=f"encoded/{uid}.safetensors", encoded_frames=25)
    d = utterance_to_dict(u)
    assert d["status"] == "done" and d["timings"] == TIMINGS and d["created_at"].endswith("+00:00")
    assert not any(isinstance(v, str) and v.startswith("/") for v in d.values())
    with store.session() as s, pytest.raises(RefusedError):
        complete_turn(s, utterance_id=uid, transcript="x", response=None, timings=TIMINGS, bridge_version="b",
                      activation="responded")
    other = record(store)
    with store.session() as s:
        assert fail_utterance(s, utterance_id=other, error="boom").status == "failed"
        third = record_utterance(s, data_dir=data_dir, samples=wave(), source="api").id
        assert skip_utterance(s, utterance_id=third, reason="queue full").status == "skipped"
    with store.session() as s, pytest.raises(RefusedError, match="source"):
        add_utterance(s, source="telepathy", audio_path="audio/x.wav", audio_sha256="", duration_s=1.0)
    with store.session() as s, pytest.raises(NotFoundError):
        get_utterance(s, utterance_id=999)


def test_rolled_back_recording_leaves_no_file(store, data_dir):
    with pytest.raises(RuntimeError), store.session() as s:
        uid = record_utterance(s, data_dir=data_dir, samples=wave(), source="mic").id
        assert (data_dir / f"audio/{uid}.wav").exists()
        raise RuntimeError("crash before commit")
    assert not (data_dir / f"audio/{uid}.wav").exists()
    with store.session() as s:
        assert s.get(Utterance, uid) is None


def test_pending_after_crash(data_dir):
    s1 = open_store(data_dir)
    captured = record(s1)
    with s1.session() as s:
        processing = record_utterance(s, data_dir=data_dir, samples=wave(), source="mic").id
        mark_processing(s, utterance_id=processing)
    record(s1, "finished")
    s1.close()  # "crash": never completed
    s2 = open_store(data_dir)
    with s2.session() as s:
        assert [u.id for u in pending_utterances(s)] == [captured, processing]
    s2.close()


def test_list_filters_and_paging(store):
    now = datetime.now(timezone.utc)
    ids = [record(store, f"Téléphone number {i}" if i % 2 else f"weather {i}", when=now - timedelta(hours=10 - i))
           for i in range(10)]
    with store.session() as s:
        set_label(s, utterance_id=ids[0], text="the WEATHER today", source="correction")
        rows, total = list_utterances(s, limit=3)
        assert total == 10 and [r.id for r in rows] == ids[::-1][:3]
        rows, total = list_utterances(s, limit=3, offset=9)
        assert total == 10 and [r.id for r in rows] == [ids[0]]
        rows, total = list_utterances(s, since=now - timedelta(hours=5), until=now - timedelta(hours=2))
        assert sorted(r.id for r in rows) == ids[5:8] and total == 3
        assert list_utterances(s, has_label=True)[1] == 1 and list_utterances(s, has_label=False)[1] == 9
        assert list_utterances(s, text="TÉLÉPHONE")[1] == 5  # case-insensitive beyond ASCII
        assert {r.id for r in list_utterances(s, text="weather today")[0]} == {ids[0]}  # label text
        assert list_utterances(s, text="50%")[1] == 0  # LIKE wildcards are escaped
        with pytest.raises(RefusedError):
            list_utterances(s, limit=0)


def test_labels(store):
    a, b = record(store, "hello there"), record(store)
    with store.session() as s:
        u = set_label(s, utterance_id=a, text="  hello, there ", source="correction")
        assert (u.label_text, u.label_source) == ("hello, there", "correction") and u.labelled_at is not None
        assert set_label(s, utterance_id=a, source="confirmed").label_text == "hello there"
        with pytest.raises(RefusedError, match="no transcript"):
            set_label(s, utterance_id=b, source="confirmed")
        with pytest.raises(RefusedError, match="non-empty"):
            set_label(s, utterance_id=b, text="  ", source="correction")
    with store.session() as s:
        assert [u.id for u in labelled_utterances(s)] == [a]
        assert labelled_utterances(s, since_id=a) == []
        assert count_labels_since(s) == 1
        assert count_labels_since(s, after=datetime.now(timezone.utc) + timedelta(seconds=1)) == 0


def test_delete_removes_row_and_files(store, data_dir):
    uid = record(store, "bye")
    rel, frames = write_encoded(data_dir, uid, EncoderOutput(torch.randn(5, 4), torch.randn(5, 3), 50.0))
    with store.session() as s:
        complete = get_utterance(s, utterance_id=uid)
        complete.encoded_path, complete.encoded_frames = rel, frames
        prompt = add_prompt(s, text="say bye")
        attach_recording(s, prompt_id=prompt.id, utterance_id=uid)
    audio = data_dir / complete.audio_path
    with pytest.raises(RuntimeError), store.session() as s:  # rolled back: files and row stay
        delete_utterance(s, utterance_id=uid, data_dir=data_dir)
        raise RuntimeError
    assert audio.exists() and (data_dir / rel).exists()
    with store.session() as s:
        delete_utterance(s, utterance_id=uid, data_dir=data_dir)
        assert audio.exists()  # files go only after the commit
    assert not audio.exists() and not (data_dir / rel).exists()
    with store.session() as s:
        assert s.get(Utterance, uid) is None
        assert list_prompts(s)[0].recorded_utterance_id is None  # ON DELETE SET NULL
    uid2 = record(store)
    (data_dir / f"audio/{uid2}.wav").unlink()  # a missing file is fine
    with store.session() as s:
        delete_utterance(s, utterance_id=uid2, data_dir=data_dir)
    assert record(store) > uid2  # AUTOINCREMENT: ids are never reused


def test_encoded_round_trip(data_dir):
    feats, logits = torch.randn(40, 16) * 3, torch.randn(40, 9) * 10
    rel, frames = write_encoded(data_dir, 7, EncoderOutput(feats, logits, 49.5))
    assert rel == "encoded/7.safetensors" and frames == 40
    out = load_encoded(data_dir / rel)
    assert out.features.dtype == torch.float32 and out.ctc_logits.dtype == torch.float32
    assert torch.allclose(out.features, feats, rtol=1e-3, atol=1e-2)
    assert torch.allclose(out.ctc_logits, logits, rtol=1e-3, atol=1e-2)
    assert out.frame_rate_hz == 49.5
    rel2, _ = write_encoded(data_dir, 8, EncoderOutput(torch.full((2, 3), 1e6), None, 50.0))
    out2 = load_encoded(data_dir / rel2)
    assert out2.ctc_logits is None and torch.isfinite(out2.features).all()  # clamped, not inf
    (data_dir / "encoded/9.safetensors").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="9.safetensors"):
        load_encoded(data_dir / "encoded/9.safetensors")


# --- retention -----------------------------------------------------------------------------------------------
def test_retention_by_age_keeps_labelled_and_unprocessed(store, data_dir):
    old = datetime.now(timezone.utc) - timedelta(days=40)
    old_done = record(store, "old", when=old)
    old_labelled = record(store, "old", label="old labelled", when=old)
    old_pending = record(store, when=old)
    new_done = record(store, "new")
    with store.session() as s:
        result = apply_retention(s, data_dir=data_dir, max_age_days=30, max_bytes=0)
        assert result["deleted"] == 1 and result["freed_bytes"] > 0
    with store.session() as s:
        left = {u.id for u in list_utterances(s)[0]}
    assert left == {old_labelled, old_pending, new_done}
    assert not (data_dir / f"audio/{old_done}.wav").exists()


def test_retention_by_bytes_oldest_first(store, data_dir):
    now = datetime.now(timezone.utc)
    ids = [record(store, f"t{i}", when=now - timedelta(minutes=10 - i)) for i in range(6)]
    labelled = record(store, "keep", label="keep", when=now - timedelta(hours=1))
    size = (data_dir / f"audio/{ids[0]}.wav").stat().st_size
    with store.session() as s:
        result = apply_retention(s, data_dir=data_dir, max_age_days=0, max_bytes=size * 4)
    assert result == {"deleted": 3, "freed_bytes": 3 * size, "remaining_bytes": 4 * size}
    with store.session() as s:
        assert {u.id for u in list_utterances(s)[0]} == set(ids[3:]) | {labelled}
        assert apply_retention(s, data_dir=data_dir, max_age_days=0, max_bytes=1)["deleted"] == 3
        assert [u.id for u in list_utterances(s)[0]] == [labelled]  # kept even over the cap


# --- bridge versions -----------------------------------------------------------------------------------------
def _version(s, name: str, status: str = "accepted", parent: str | None = "base"):
    return add_bridge_version(s, version=name, kind="conv", path=f"bridges/{name}", sha256="0" * 64,
                              status=status, parent_version=parent, metrics={"user_wer": 0.1})


def test_active_bridge_switch_records_previous_and_is_atomic(store):
    with store.session() as s:
        _version(s, "base", "base", None)
        _version(s, "v0001")
        assert get_active_bridge(s) is None
        set_active_bridge(s, version="base")
    with store.session() as s:
        row = set_active_bridge(s, version="v0001")
        assert (row.version, row.previous_version) == ("v0001", "base")
    with pytest.raises(RuntimeError), store.session() as s:
        _version(s, "v0002")
        set_active_bridge(s, version="v0002")
        raise RuntimeError("crash mid-switch")
    with store.session() as s:
        assert get_active_bridge(s) == "v0001"
        with pytest.raises(NotFoundError, match="v0002"):
            set_active_bridge(s, version="v0002")
        with pytest.raises(RefusedError, match="immutable"):
            _version(s, "v0001")


def test_rejected_version_cannot_be_activated(store):
    with store.session() as s:
        _version(s, "v0003", "rejected")
        with pytest.raises(RefusedError, match="rejected"):
            set_active_bridge(s, version="v0003")
        assert get_active_bridge(s) is None


# --- jobs --------------------------------------------------------------------------------------------------------
def test_job_state_machine(store):
    with store.session() as s:
        job = create_job(s, method="ctc_regression", trigger="idle")
        assert job.state == "queued" and job.progress == 0.0
        with pytest.raises(RefusedError, match="one job"):
            create_job(s, method="x", trigger="api")
        with pytest.raises(RefusedError, match="queued to succeeded"):
            update_job(s, job_id=job.id, state="succeeded")
        update_job(s, job_id=job.id, state="running", total_steps=10)
        assert job.started_at is not None
        update_job(s, job_id=job.id, step=5, progress=0.5, peak_rss_mb=123.0)
        update_job(s, job_id=job.id, state="paused")
        assert running_or_paused_job(s).id == job.id
        update_job(s, job_id=job.id, state="running")
        with pytest.raises(RefusedError):
            update_job(s, job_id=job.id, progress=1.5)
        with pytest.raises(TypeError):
            update_job(s, job_id=job.id, nonsense=1)
        update_job(s, job_id=job.id, state="succeeded", progress=1.0,
                   metrics={"user_wer_before": 0.3, "user_wer_after": 0.2}, candidate_version="v0001")
        assert job.finished_at is not None and running_or_paused_job(s) is None
        for change in ({"state": "running"}, {"progress": 0.9}):
            with pytest.raises(RefusedError, match="final"):
                update_job(s, job_id=job.id, **change)
    with store.session() as s:
        assert get_job(s, job_id=job.id).metrics["user_wer_after"] == 0.2


def test_job_cancel(store):
    with store.session() as s:
        queued = create_job(s, method="m", trigger="cli")
        assert request_cancel(s, job_id=queued.id).state == "cancelled"
        running = create_job(s, method="m", trigger="api")
        update_job(s, job_id=running.id, state="running")
        job = request_cancel(s, job_id=running.id)
        assert job.state == "running" and job.cancel_requested  # the runner stops at its next step
        update_job(s, job_id=running.id, state="cancelled")
        with pytest.raises(RefusedError, match="already finished"):
            request_cancel(s, job_id=running.id)
        with pytest.raises(NotFoundError):
            get_job(s, job_id=999)


def test_prompts(store):
    with store.session() as s:
        assert ensure_shipped_prompts(s, texts=["turn on the light", "what time is it", ""]) == 2
        assert ensure_shipped_prompts(s, texts=["turn on the light"]) == 0
        p = add_prompt(s, text="call mum")
        assert add_prompt(s, text=" call mum ").id == p.id
        uid = record_utterance(s, data_dir=store.data_dir, samples=wave(), source="enrollment").id
        attach_recording(s, prompt_id=p.id, utterance_id=uid)
        u = get_utterance(s, utterance_id=uid)
        assert (u.label_text, u.label_source, u.prompt_id) == ("call mum", "enrollment", p.id)
        assert [x.text for x in list_prompts(s, unrecorded_only=True)] == ["turn on the light", "what time is it"]


# --- failures ------------------------------------------------------------------------------------------------
def test_disk_full_while_writing_audio(store, data_dir, monkeypatch):
    real_write = os.write

    def full(fd, data):
        real_write(fd, bytes(data)[:10])  # a partial write first, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskFullError) as err, store.session() as s:  # the type the API answers 507 for
        record_utterance(s, data_dir=data_dir, samples=wave(), source="mic")
    monkeypatch.setattr(os, "write", real_write)
    assert str(data_dir) in str(err.value) and "free disk space" in str(err.value)
    assert list((data_dir / "audio").iterdir()) == []  # neither the temp file nor a final one
    with store.session() as s:
        assert list_utterances(s)[1] == 0  # the row was rolled back with it


def test_database_full_is_a_store_error(store):
    keep = record(store, "kept")
    with pytest.raises(DiskFullError, match="full") as err, store.session() as s:  # the same type as a full disk
        pages = s.connection().exec_driver_sql("PRAGMA page_count").scalar()
        s.connection().exec_driver_sql(f"PRAGMA max_page_count={pages + 1}")
        add_utterance(s, source="api", audio_path="audio/x.wav", audio_sha256="", duration_s=1.0)
        s.get(Utterance, keep).transcript = "x" * 200_000
        s.flush()
    assert "assistant.db" in str(err.value)
    store.engine.dispose()  # drop the connection with the lowered limit
    with store.session() as s:
        assert get_utterance(s, utterance_id=keep).transcript == "kept"


def test_corrupt_database_names_the_path_and_is_kept(data_dir):
    data_dir.mkdir(mode=0o700)
    db = data_dir / "assistant.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    with pytest.raises(StoreError) as err:
        open_store(data_dir)
    assert str(db) in str(err.value) and "corrupt" in str(err.value)
    assert db.read_bytes() == garbage  # never deleted or rewritten


def test_newer_schema_is_refused(data_dir):
    s1 = open_store(data_dir)
    with s1.session() as s:
        s.connection().exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    s1.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(data_dir)


def test_relative_paths_only(store):
    with store.session() as s, pytest.raises(RefusedError):
        add_utterance(s, source="mic", audio_path="/etc/passwd", audio_sha256="", duration_s=1.0)
    with store.session() as s:
        assert s.scalars(select(Utterance)).all() == []


def test_read_session_sees_a_snapshot_and_does_not_block_writers(store):
    import threading

    first = record(store, "one")
    with store.session(write=False) as reader:
        assert list_utterances(reader)[1] == 1  # the snapshot starts here
        done = threading.Event()

        def write() -> None:
            record(store, "two")
            done.set()

        t = threading.Thread(target=write)
        t.start()
        t.join(timeout=5)
        assert done.is_set()  # the writer did not wait for the reader
        assert [u.id for u in list_utterances(reader)[0]] == [first]  # still the same snapshot
    with store.session() as s:
        assert list_utterances(s)[1] == 2


def test_write_sessions_are_serialized(store):
    import threading

    order: list[str] = []
    with store.session() as s:
        create_job(s, method="m", trigger="api")  # holds the write lock until the block ends

        def second() -> None:
            try:
                with store.session() as s2:
                    create_job(s2, method="m", trigger="api")
            except RefusedError:
                order.append("refused")

        t = threading.Thread(target=second)
        t.start()
        t.join(timeout=0.5)
        assert t.is_alive()  # waiting on BEGIN IMMEDIATE, not reading a stale "no job" answer
        order.append("first commits")
    t.join(timeout=10)
    assert order == ["first commits", "refused"]


def test_read_only_database_is_a_store_error(store):
    keep = record(store, "kept")
    with pytest.raises(StoreError, match="read-only") as err, store.session() as s:
        s.connection().exec_driver_sql("PRAGMA query_only=ON")  # what a read-only file gives, even as root
        set_label(s, utterance_id=keep, text="new", source="correction")
    assert str(store.db_path) in str(err.value)
    store.engine.dispose()
    with store.session() as s:
        assert get_utterance(s, utterance_id=keep).label_text is None


def test_audio_fsynced_before_a_crash_without_its_row_is_adopted(tmp_path):
    """kill -9 between the audio fsync and the row's commit: the audio is not lost at the next start."""
    import numpy as np

    from assistant.store import files, open_store, repo

    data = tmp_path / "data"
    store = open_store(data)
    with store.session() as s:
        kept = repo.record_utterance(s, data_dir=data, samples=np.zeros(8000, dtype=np.float32), source="mic").id
    files.write_audio(data, kept + 1, np.full(16000, 0.1, dtype=np.float32))  # the row never committed
    with store.session() as s:
        assert repo.adopt_orphan_audio(s, data_dir=data) == [kept + 1]
    with store.session(write=False) as s:
        u = repo.get_utterance(s, utterance_id=kept + 1)
        assert u.source == "recovered" and u.status == "captured" and abs(u.duration_s - 1.0) < 1e-6
        assert [p.id for p in repo.pending_utterances(s)] == [kept, kept + 1]
    with store.session() as s:
        assert repo.adopt_orphan_audio(s, data_dir=data) == []  # idempotent
        new = repo.record_utterance(s, data_dir=data, samples=np.zeros(8000, dtype=np.float32), source="mic").id
    assert new == kept + 2  # the adopted id is never reused
    store.close()


def test_start_sweeps_temp_files_of_dead_writers_at_once_and_keeps_a_live_writers(tmp_path):
    """A kill leaves `.N.safetensors.<pid>.<hex>.tmp`; its writer is gone, so no need to wait an hour."""
    import subprocess
    import time

    from assistant.store import open_store

    data_dir = tmp_path / "data"
    open_store(data_dir).close()
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    left = data_dir / "encoded" / f".7.safetensors.{dead.pid}.0a1b2c3d.tmp"
    mine = data_dir / "encoded" / f".8.safetensors.{os.getpid()}.0a1b2c3d.tmp"  # a write in progress
    old_mine = data_dir / "audio" / f".9.wav.{os.getpid()}.0a1b2c3d.tmp"
    for p in (left, mine, old_mine):
        p.write_bytes(b"partial")
    os.utime(old_mine, (time.time() - 7200, time.time() - 7200))  # a reused pid's: old, so a leftover
    open_store(data_dir).close()
    assert not left.exists() and not old_mine.exists()
    assert mine.exists()
