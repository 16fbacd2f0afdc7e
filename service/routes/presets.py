"""``/v1/presets``: the named sweeps a submission can start from."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ReaderDep
from service.errors import ApiError
from service.routes.openapi import ERRORS
from service.schemas import PresetPublic, PresetSummary

router = APIRouter(prefix="/v1/presets", tags=["presets"])


def _trials(spec: object) -> int | None:
    try:
        return spec.num_trials()  # type: ignore[attr-defined,no-any-return]
    except Exception:
        return None


@router.get("", response_model=list[PresetSummary], summary="List presets", responses=ERRORS)
def list_presets(_: ReaderDep) -> list[PresetSummary]:
    from search_spaces.spec.presets import get_preset
    from search_spaces.spec.presets import list_presets as _list

    return [
        PresetSummary(name=name, description=description, num_trials=_trials(get_preset(name)))
        for name, description in sorted(_list().items())
    ]


@router.get("/{name}", response_model=PresetPublic, summary="A preset's full SweepSpec", responses=ERRORS)
def get_preset(name: str, _: ReaderDep) -> PresetPublic:
    from search_spaces.spec.presets import get_preset as _get
    from search_spaces.spec.presets import list_presets as _list

    presets = _list()
    if name not in presets:
        raise ApiError(404, f"no preset {name!r}; known presets: {', '.join(sorted(presets))}", loc=("path", "name"))
    spec = _get(name)
    return PresetPublic(
        name=name, description=presets[name], num_trials=_trials(spec), spec=spec.model_dump(mode="json")
    )
