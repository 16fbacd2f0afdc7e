"""Links to lossweep's Grafana board (``deploy/grafana/lossweep-dashboard.json``), filtered to one sweep.

The board's ``sweep`` template variable filters every panel, so ``?var-sweep=<id>`` opens it on that
sweep. Without ``LOSSWEEP_GRAFANA_URL`` there is no Grafana and no link: the service's
``/v1/sweeps/{id}/trials/{trial_id}/metrics`` endpoint serves the same curves.
"""

from __future__ import annotations

from urllib.parse import quote

from service.settings import Settings

#: ``uid`` of ``deploy/grafana/lossweep-dashboard.json`` (Grafana's ``/d/<uid>/<slug>`` URLs).
DASHBOARD_UID = "lossweep"
DASHBOARD_SLUG = "lossweep"


def grafana_link(sweep_id: str, settings: Settings) -> str | None:
    """The board filtered to ``sweep_id``, or None when no Grafana is configured."""
    if not settings.grafana_url:
        return None
    return f"{settings.grafana_url}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}?var-sweep={quote(sweep_id, safe='')}"
