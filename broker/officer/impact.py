"""The officer's impact report: a draft pack replayed over the journaled requests, with
the diff against the live pack beside it (docs/policy.md, "Impact of a draft").

The officer uploads the draft's files (as a pack folder holds them) and names a period;
the broker replays the period's requests under the live pack and the draft and shows the
counts per recipient, purpose and rule, never a value or an identifier. The replay is a
`policy_impact` entry, recorded before the page is built.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from broker.api.deps import RuntimeDep, get_request_id
from broker.auth.actors import actor_of
from broker.core.policy.diff import diff_packs
from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.load import load_pack_from_text
from broker.errors import FieldProblem, ValidationFailed
from broker.officer.names import Names
from broker.officer.web import PREFIX, OfficerDep, OfficerRoute, check_csrf, check_origin, render
from broker.schemas.policy_impact import MAX_FILE_BYTES
from broker.services import impact

router = APIRouter(route_class=OfficerRoute, prefix=PREFIX, include_in_schema=False)
MAX_FILES: Final = 20


@router.get("/policy/impact", response_class=HTMLResponse)
def impact_form(request: Request, runtime: RuntimeDep, officer: OfficerDep) -> HTMLResponse:
    """The form: the draft's files and the period to replay."""
    return render(request, "impact.html", officer=officer, runtime=runtime, nav="policy",
                  report=None, diff=None, since="14d", names=Names(runtime.policy.pack))


async def _files(uploads: list[UploadFile]) -> dict[str, str]:
    if not uploads or len(uploads) > MAX_FILES:
        raise ValidationFailed(errors=[FieldProblem(
            ("body", "files"), f"Upload the draft pack's files (1 to {MAX_FILES}).")])
    files: dict[str, str] = {}
    for upload in uploads:
        name = (upload.filename or "").rsplit("/", 1)[-1]
        raw = await upload.read(MAX_FILE_BYTES + 1)
        if not name or len(raw) > MAX_FILE_BYTES:
            raise ValidationFailed(errors=[FieldProblem(
                ("body", "files"), f"Each file needs a name and at most {MAX_FILE_BYTES} bytes.")])
        try:
            files[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed(errors=[FieldProblem(
                ("body", "files"), "The pack's files are UTF-8 text.")]) from None
    return files


@router.post("/policy/impact", response_class=HTMLResponse)
async def impact_report(
    request: Request, runtime: RuntimeDep, officer: OfficerDep,
    files: Annotated[list[UploadFile], File()],
    since: Annotated[str, Form(max_length=10)] = "14d",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    """Replay the period under the live pack and the uploaded draft; the report and the
    diff. 422 for files that do not make a pack or a period that is not one."""
    check_origin(request)
    check_csrf(runtime, officer, csrf)
    draft = CompiledPolicy(load_pack_from_text(await _files(files)))
    back = impact.period(since, ("body", "since"))
    report = impact.replay(runtime, actor_of(runtime.keys, officer), draft, back=back,
                           request_id=get_request_id(request))
    live = runtime.policy
    return render(request, "impact.html", officer=officer, runtime=runtime, nav="policy",
                  report=report.as_dict(), diff=diff_packs(live.compiled, draft),
                  since=since, names=Names(live.pack))
