# SPDX-License-Identifier: Apache-2.0
"""bench/plot.py, from a sample of what build/gpu/bench prints (the table of
docs/benchmarks.md, H100): every case drawn with its four bars at the right
heights against the limit lines, the per-case bound where there is one,
and input that is not bench output refused.
Prints "benchplot: N passed, M failed".
usage: python3 test/bench/test_plot.py
"""
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "..", "bench", "plot.py")
SAMPLE = os.path.join(HERE, "sample.txt")
NS = "{http://www.w3.org/2000/svg}"
passed, failed = 0, 0


def plot(text):
    d = tempfile.mkdtemp(prefix="memctl-plot-")
    src, out = os.path.join(d, "in.txt"), os.path.join(d, "out.svg")
    with open(src, "w") as f:
        f.write(text)
    r = subprocess.run([sys.executable, PLOT, src, out], capture_output=True, text=True)
    svg = open(out).read() if os.path.exists(out) else None
    return r.returncode, r.stderr, svg


def elements(svg, tag, cls=None):
    root = ET.fromstring(svg)
    return [e for e in root.iter(NS + tag) if cls is None or cls in e.get("class", "").split()]


def test_every_case_and_bar_is_drawn_to_scale():
    rc, err, svg = plot(open(SAMPLE).read())
    assert rc == 0, err
    bars = elements(svg, "rect", "bar")
    cases = sorted({b.get("data-case") for b in bars})
    assert len(cases) == 12 and "16G/64" in cases, cases
    assert len(bars) == 12 * 4, len(bars)
    limits = {l.get("data-name"): l for l in elements(svg, "line", "limit")}
    assert float(limits["D2H"].get("data-value")) == 51.3
    assert float(limits["H2D"].get("data-value")) == 51.3
    zero = max(float(b.get("y")) + float(b.get("height")) for b in bars)
    per_gib = (zero - float(limits["D2H"].get("y1"))) / 51.3
    for b in bars:
        want = float(b.get("data-value")) * per_gib
        assert abs(float(b.get("height")) - want) < 0.2, (b.attrib, want)
    held = [b for b in bars if "pause-held" in b.get("class") and b.get("data-case") == "16G/64"]
    assert float(held[0].get("data-value")) == 50.71, held[0].attrib


def test_a_case_below_the_copy_limit_shows_its_bound():
    rc, err, svg = plot(open(SAMPLE).read())
    bounds = {(b.get("data-case"), b.get("data-value")) for b in elements(svg, "line", "bound")}
    assert ("1G/4096", "6") in bounds and ("1G/4096", "4.8") in bounds, bounds
    assert not any(c == "16G/64" for c, _ in bounds), bounds


def test_what_is_not_bench_output_is_refused():
    rc, err, svg = plot("hello\n")
    assert rc == 1 and "not the output of bench" in err and svg is None, (rc, err)
    rc, err, _ = plot("## memctl bench: X, driver 1\nlimits: pinned D2H 1.0 GiB/s, H2D 1.0 GiB/s\n")
    assert rc == 1 and "no staged" in err, err


for name, fn in list(globals().items()):
    if not name.startswith("test_"):
        continue
    try:
        fn()
        passed += 1
        print("  ok   " + name)
    except Exception as e:  # noqa: BLE001 -- every failure is reported
        failed += 1
        print("  FAIL %s: %r" % (name, e))
print("benchplot: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
