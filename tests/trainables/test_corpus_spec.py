"""A corpus name is parsed once, into its kind and path; bad names say what to write instead."""

from __future__ import annotations

import pytest

from trainables.data.corpus_spec import CORPUS_KINDS, CorpusError, CorpusSpec


@pytest.mark.parametrize(
    ("spec", "kind", "path"),
    [("stdlib", "stdlib", ""), ("text:/a b", "text", "/a b"), ("parquet:x.parquet", "parquet", "x.parquet"),
     ("shards:s3://bucket/set", "shards", "s3://bucket/set")],
)  # fmt: skip
def test_parse_round_trips(spec: str, kind: str, path: str) -> None:
    parsed = CorpusSpec.parse(spec)
    assert (parsed.kind, parsed.path, str(parsed)) == (kind, path, spec)


@pytest.mark.parametrize("spec", ["", "stdlib:x", "s3:bucket", "/plain/path", "text:"])
def test_bad_names_are_refused(spec: str) -> None:
    with pytest.raises(CorpusError) as err:
        CorpusSpec.parse(spec)
    assert CORPUS_KINDS in str(err.value) or "names no path" in str(err.value)
