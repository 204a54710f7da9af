"""The store: SQLite (``assistant.db``, WAL) for utterances, labels, bridge versions, alignment jobs and
enrollment prompts, plus private files for audio and cached encoder outputs, all under the data dir.

``open_store(data_dir)`` opens it (applying the Alembic migrations); ``with store.session() as s:`` is
one transaction; the functions of ``repo`` (re-exported here) take that session and keyword arguments.
Importing this package builds nothing and does not import torch or numpy.
"""

from assistant.store.db import DB_NAME, Store, current_revision, head_revision, open_store
from assistant.store.files import (audio_relpath, encoded_relpath, load_encoded, resolve, write_audio,
                                   write_encoded)
from assistant.store.jobs import (JOB_TRANSITIONS, add_bridge_version, bridge_version_to_dict, create_job,
                                  get_active_bridge, get_bridge_version, get_job, job_to_dict,
                                  list_bridge_versions, list_jobs, request_cancel, running_or_paused_job,
                                  set_active_bridge, update_job)
from assistant.store.models import ActiveBridge, AlignmentJob, BridgeVersion, EnrollmentPrompt, Utterance
from assistant.store.repo import (add_prompt, add_utterance, apply_retention, attach_recording, complete_turn,
                                  count_labels_since, delete_utterance, ensure_shipped_prompts, fail_utterance,
                                  get_utterance, labelled_utterances, list_prompts, list_utterances,
                                  mark_processing, pending_utterances, prompt_to_dict, record_utterance,
                                  set_label, skip_utterance, utterance_to_dict)

__all__ = [
    "DB_NAME", "JOB_TRANSITIONS", "ActiveBridge", "AlignmentJob", "BridgeVersion", "EnrollmentPrompt", "Store",
    "Utterance", "add_bridge_version", "add_prompt", "add_utterance", "apply_retention", "attach_recording",
    "audio_relpath", "bridge_version_to_dict", "complete_turn", "count_labels_since", "create_job",
    "current_revision", "delete_utterance", "encoded_relpath", "ensure_shipped_prompts", "fail_utterance",
    "get_active_bridge", "get_bridge_version", "get_job", "get_utterance", "head_revision", "job_to_dict",
    "labelled_utterances", "list_bridge_versions", "list_jobs", "list_prompts", "list_utterances",
    "load_encoded", "mark_processing", "open_store", "pending_utterances", "prompt_to_dict", "record_utterance",
    "request_cancel", "resolve", "running_or_paused_job", "set_active_bridge", "set_label", "skip_utterance",
    "update_job", "utterance_to_dict", "write_audio", "write_encoded",
]
