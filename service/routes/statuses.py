"""``/v1/statuses``: the sweep and trial statuses and which of them are final, so that clients (the web
page among them) never keep a list of their own."""

from __future__ import annotations

from fastapi import APIRouter

from search_spaces.run.sweep_dir import FINAL_TRIAL_STATUSES, TRIAL_STATUSES
from service.models import FINAL_STATUSES, SweepStatus
from service.schemas import Statuses

router = APIRouter(prefix="/v1/statuses", tags=["sweeps"])


@router.get("", response_model=Statuses, summary="Sweep and trial statuses")
def statuses() -> Statuses:
    return Statuses(
        sweep=[s.value for s in SweepStatus],
        sweep_final=[s.value for s in SweepStatus if s in FINAL_STATUSES],
        trial=list(TRIAL_STATUSES),
        trial_final=[s for s in TRIAL_STATUSES if s in FINAL_TRIAL_STATUSES],
    )
