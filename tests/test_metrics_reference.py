"""Agreement with every published reference value in ../shared/data/metrics_reference/.

VIFB's values (5 significant digits) must agree within half a unit of the last digit; the tang and
cddfuse values (full precision) within 1e-4 relative. Every value in the reference set is checked.
"""

import collections

import pytest

from fusion.metrics.reference import compare_references


@pytest.mark.slow
def test_every_reference_value_is_reproduced(shared_data):
    checks = compare_references(shared_data)
    assert len(checks) == 1917
    missing = {(c.code, c.metric) for c in checks if c.ours is None}
    assert not missing, f"metrics without an implementation: {sorted(missing)}"
    bad = [c for c in checks if not c.ok]
    assert not bad, "\n".join(
        f"{c.code} {c.method} {c.image} {c.metric}: ref {c.reference} ours {c.ours}" for c in bad[:20]
    )
    per = collections.Counter(c.code for c in checks)
    assert per == {"vifb": 13 * 126, "tang": 159, "cddfuse": 12 * 10}
