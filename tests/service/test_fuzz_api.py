"""The whole OpenAPI schema fuzzed by schemathesis against a real `restyle serve` (issue 12):
no 5xx, no schema violations.

Every operation the schema has (today's and any added later) gets its examples, boundary
values (coverage), random data (fuzzing) and chained calls (stateful), with an admin's token.
Checked: no server error, status codes, content types, headers and bodies as documented, 405s
with a true Allow header, auth that cannot be skipped, deleted or missing things staying so.
Not checked: whether every schema-valid request is accepted (a style that does not exist, a job
that is not there are refused with 422/404 on purpose) and whether every schema-invalid one is
refused (pydantic reads JSON ``false`` as 0.0 for a number, by design).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = "root-token-0123456789ab"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,unsupported_method,allow_header_conformance,missing_required_header,"
    "ignored_auth,use_after_free,ensure_resource_availability"
)


def test_the_whole_api_fuzzed_answers_as_documented_and_never_5xx(start_service, tmp_path):
    service = start_service(
        {
            "RESTYLE_TOKENS": f"root:admin:{ROOT},alice:submitter:alice-token-0123456789",
            "TEST_ADMIN_TOKEN": ROOT,
            "RESTYLE_SUBMIT_RATE_PER_MINUTE": "0",
            "RESTYLE_MAX_UPLOAD_BYTES": str(1024**2),
        },
        local_workers=0,
    )
    report = tmp_path / "fuzz.json"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
            "run",
            f"{service.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {ROOT}",
            "--checks",
            CHECKS,
            "--max-examples",
            "12",
            "--seed",
            "12",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
            "--generation-database",
            "none",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # its caches stay out of the checkout
    summary = json.loads(report.read_text())
    generated = summary["test_cases"]["generated"]
    operations = summary["operations"]
    print(f"schemathesis: {generated} cases over {operations['tested']} operations in {summary['running_time']:.0f} s")
    assert operations["tested"] == operations["total"] >= 10 and operations["errored"] == 0, summary["operations"]
    assert summary["failures"] == [] and summary["errors"] == [], result.stdout[-6000:]
    assert result.returncode == 0 and generated >= 200, result.stdout[-3000:]
    assert "Traceback" not in service.log.read_text()  # nothing the fuzzer sent broke a route
