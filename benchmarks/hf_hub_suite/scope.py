"""Which of huggingface_hub's own tests are out of scope for a local adapter Hub, and why.

A test is out of scope when it exercises a huggingface.co service that an adapter hub does not
offer (Spaces, inference, jobs, webhooks, Xet storage, buckets, ...), reads repos that exist only
on huggingface.co (production), or needs a tool this machine lacks. Everything else that reaches
the server counts. ``run.py`` reports both lists with these reasons.
"""

from __future__ import annotations

import inspect
from typing import Any

#: Whole test files. The reason is printed next to the file name.
FILES: dict[str, str] = {
    "test_inference_client.py": "inference (huggingface.co inference providers)",
    "test_inference_async_client.py": "inference (huggingface.co inference providers)",
    "test_inference_endpoints.py": "inference endpoints (a hosted service)",
    "test_inference_providers.py": "inference (huggingface.co inference providers)",
    "test_inference_text_generation.py": "inference (text-generation-inference servers)",
    "test_inference_types.py": "inference (types only)",
    "test_jobs_api.py": "jobs (hosted compute)",
    "test_webhooks_server.py": "webhooks (a Gradio server receiving Hub webhooks)",
    "test_xet_upload.py": "Xet storage (needs a Xet CAS server)",
    "test_xet_download.py": "Xet storage (needs a Xet CAS server)",
    "test_buckets.py": "buckets (Xet-backed storage buckets)",
    "test_buckets_cli.py": "buckets (Xet-backed storage buckets)",
    "test_buckets_hf_file_system.py": "buckets (Xet-backed storage buckets)",
    "test_bucket_live_follow.py": "buckets (Xet-backed storage buckets)",
    "test_kernels.py": "kernel repos (a repo type for compiled kernels)",
    "test_sandbox.py": "sandboxes (hosted Spaces)",
    "test_oauth.py": "OAuth sign-in (huggingface.co accounts, Spaces)",
    "test_shared_blobs.py": "Xet storage (the shared blob store holds Xet files)",
}

#: (file, class) pairs.
CLASSES: dict[tuple[str, str], str] = {
    ("test_hf_api.py", "TestHfApiPublicProduction"): "production: reads repos that exist only on huggingface.co",
    ("test_hf_api.py", "TestSpaceAPIProduction"): "Spaces (hosted apps)",
    ("test_hf_api.py", "TestSpaceAPIMocked"): "Spaces (hosted apps)",
    ("test_hf_api.py", "TestWebhookApi"): "webhooks",
    ("test_hf_api.py", "TestHfApiInferenceCatalog"): "inference catalog",
    ("test_hf_api.py", "TestCollectionAPI"): "collections (a huggingface.co website feature)",
    ("test_hf_api.py", "TestPaperApi"): "papers (huggingface.co/papers)",
    ("test_cli.py", "TestSpacesLsCommand"): "Spaces (hosted apps)",
    ("test_cli.py", "TestSpacesLogsCommand"): "Spaces (hosted apps)",
    ("test_cli.py", "TestSpacesHardwareCommand"): "Spaces (hosted apps)",
    ("test_cli.py", "TestSpacesCardCommand"): "Spaces (hosted apps)",
    ("test_cli.py", "TestInferenceEndpointsCommands"): "inference endpoints",
    ("test_cli.py", "TestInferenceEndpointsHardwareCommand"): "inference endpoints",
    ("test_cli.py", "TestJobsCommand"): "jobs (hosted compute)",
    ("test_cli.py", "TestJobsWaitCommand"): "jobs (hosted compute)",
    ("test_cli.py", "TestWebhooksCommand"): "webhooks",
    ("test_cli.py", "TestPapersCommand"): "papers (huggingface.co/papers)",
    ("test_cli.py", "TestDatasetsParquetCommand"): "the datasets-server service",
    ("test_cli.py", "TestDatasetsSqlCommand"): "the datasets-server service",
    ("test_cli.py", "TestBucketTransport"): "buckets (Xet-backed storage buckets)",
    ("test_hf_file_system.py", "_HfFileSystemBucketChecks"): "buckets (Xet-backed storage buckets)",
}

#: pytest markers of the suite.
MARKERS: dict[str, str] = {
    "production": "production: reads repos that exist only on huggingface.co",
    "xet": "Xet storage (needs a Xet CAS server)",
    "inference": "inference",
    "git_lfs": "needs the git-lfs command line tool",
}


#: Names whose use in a test's source puts it out of scope.
SOURCE_NEEDS: dict[str, str] = {
    "SAMPLE_CARDS_DIR": "needs tests/fixtures/cards/, which the sdist does not ship",
}


def out_of_scope_reason(item: Any) -> str | None:
    """Why the pytest ``item`` is out of scope, or None when it counts."""
    filename = item.path.name
    try:
        source = inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        source = ""
    for needle, reason in SOURCE_NEEDS.items():
        if needle in source:
            return reason
    if filename in FILES:
        return FILES[filename]
    cls = getattr(item, "cls", None)
    for klass in cls.__mro__ if cls is not None else ():
        reason = CLASSES.get((filename, klass.__name__))
        if reason:
            return reason
    for marker, reason in MARKERS.items():
        if item.get_closest_marker(marker) is not None:
            return reason
    return None
