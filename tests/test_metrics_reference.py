"""Agreement with every published reference value in ../shared/data/metrics_reference/.

VIFB's values (5 significant digits) must agree within half a unit of the last digit; the tang and
cddfuse values (full precision) within 1e-4 relative. Metrics not implemented yet are listed explicitly,
so the gap cannot grow or shrink unnoticed.
"""

import collections

import pytest

from fusion.metrics.reference import compare_references

NOT_YET = {
    ("tang", "FMI_dct"),
    ("tang", "FMI_pixel"),
    ("tang", "MS_SSIM"),
    ("tang", "Nabf"),
    ("tang", "Nabf_fixedorder"),
    ("vifb", "Qcb"),
    ("vifb", "Qcv"),
}


@pytest.mark.slow
def test_every_reference_value_is_reproduced(shared_data):
    checks = compare_references(shared_data)
    missing = {(c.code, c.metric) for c in checks if c.ours is None}
    assert missing == NOT_YET
    bad = [c for c in checks if c.ours is not None and not c.ok]
    assert not bad, "\n".join(
        f"{c.code} {c.method} {c.image} {c.metric}: ref {c.reference} ours {c.ours}" for c in bad[:20]
    )
    per = collections.Counter(c.code for c in checks if c.ours is not None)
    assert per["vifb"] == 11 * 126 and per["tang"] == 12 * 10 and per["cddfuse"] == 12 * 10
