# SPDX-License-Identifier: Apache-2.0
"""The picture of `make bench`: staged pause and resume bandwidth per case
beside the copy limits measured in the same run, as an SVG written directly
(no plotting package needed on the GPU machine).

It reads what build/gpu/bench prints: the "## memctl bench: DEVICE, driver N"
line, the "limits: pinned D2H X GiB/s, H2D Y GiB/s, ..." line and the
markdown table after them. Per case ([G/N]: G GiB in N allocations) it
draws four bars: staged pause and staged resume with host buffers held, the
first staged pause after `prepare`, and the first with nothing prepared;
dashed lines mark the D2H and H2D limits, and a black tick over a bar marks
the case's own bound where the driver's per-allocation cost keeps it below
the copy limit.

usage: python3 bench/plot.py BENCH_OUTPUT OUT.svg
"""
import re
import sys
from xml.sax.saxutils import escape

SERIES = [  # (figure in the table, class, colour, legend)
    ("staged pause, buffers held", "pause-held", "#1f5fa8", "staged pause, host buffers held"),
    ("staged resume, buffers held", "resume-held", "#d9731a", "staged resume, host buffers held"),
    ("staged pause, first after prepare", "pause-prepared", "#7fb0e6", "first staged pause after prepare"),
    ("staged pause, first (nothing prepared)", "pause-first", "#b0b0b0", "first staged pause, nothing prepared"),
]
ROW = re.compile(r"^\| \[([0-9.]+G/[0-9]+)\] (.+?) \| ([0-9.]+) GiB/s \| ([^|]*) \|")


def parse(text):
    """(title, {"D2H": x, "H2D": y}, cases in order, {(case, figure): (value, bound)})."""
    title = re.search(r"^## memctl bench: (.+)$", text, re.M)
    limits = re.search(r"^limits: pinned D2H ([0-9.]+) GiB/s, H2D ([0-9.]+) GiB/s", text, re.M)
    if not title or not limits:
        raise ValueError("no '## memctl bench:' and 'limits:' lines: not the output of bench")
    cases, values = [], {}
    for line in text[title.end():].splitlines():
        m = ROW.match(line)
        if not m:
            continue
        case, figure, value, limit = m.group(1), m.group(2), float(m.group(3)), m.group(4)
        bound = re.search(r"bound ([0-9.]+) GiB/s", limit)
        if case not in cases:
            cases.append(case)
        values[(case, figure)] = (value, float(bound.group(1)) if bound else None)
    if not any((c, s[0]) in values for c in cases for s in SERIES):
        raise ValueError("no staged pause or resume rows in the table")
    return (title.group(1), {"D2H": float(limits.group(1)), "H2D": float(limits.group(2))},
            cases, values)


def svg(title, limits, cases, values):
    bar, gap, left, top, height = 11, 16, 64, 56, 300
    group = bar * len(SERIES) + gap
    width = left + group * len(cases) + 250
    top_value = max([limits["D2H"], limits["H2D"]] + [v[0] for v in values.values()]) * 1.1
    step = 10 if top_value > 30 else 5 if top_value > 10 else 1
    y = lambda v: top + height - v / top_value * height  # noqa: E731
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="11">' % (width, top + height + 30),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="20" font-size="14">memctl: staged pause and resume bandwidth per case</text>' % left,
           '<text x="%d" y="38" fill="#444">%s; G GiB in N allocations; dashed: pinned copy limits '
           'of the same run</text>' % (left, escape(title))]
    v = 0
    while v <= top_value:
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/>'
                   '<text x="%d" y="%.1f" text-anchor="end">%g</text>'
                   % (left, left + group * len(cases), y(v), y(v), left - 6, y(v) + 4, v))
        v += step
    out.append('<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">GiB/s</text>'
               % (top + height / 2))
    for i, case in enumerate(cases):
        x0 = left + gap / 2 + i * group
        for k, (figure, cls, colour, _) in enumerate(SERIES):
            if (case, figure) not in values:
                continue
            value, bound = values[(case, figure)]
            x = x0 + k * bar
            out.append('<rect class="bar %s" data-case="%s" data-value="%g" x="%.1f" y="%.1f" '
                       'width="%d" height="%.1f" fill="%s"><title>[%s] %s: %g GiB/s</title></rect>'
                       % (cls, case, value, x, y(value), bar - 1, y(0) - y(value), colour, case,
                          figure, value))
            if bound is not None and bound < min(limits.values()) * 0.98:
                out.append('<line class="bound" data-case="%s" data-value="%g" x1="%.1f" x2="%.1f" '
                           'y1="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>'
                           % (case, bound, x - 1, x + bar, y(bound), y(bound)))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                   % (x0 + bar * len(SERIES) / 2, top + height + 16, case))
    for name, dash in (("D2H", "6,3"), ("H2D", "2,3")):
        out.append('<line class="limit" data-name="%s" data-value="%g" x1="%d" x2="%d" y1="%.1f" '
                   'y2="%.1f" stroke="#c00" stroke-dasharray="%s"/><text x="%d" y="%.1f" fill="#c00">'
                   'pinned %s %g GiB/s</text>' % (name, limits[name], left, left + group * len(cases),
                                                  y(limits[name]), y(limits[name]), dash,
                                                  left + group * len(cases) + 6,
                                                  y(limits[name]) + (4 if name == "D2H" else 16),
                                                  name, limits[name]))
    lx = left + group * len(cases) + 6
    for k, (_, _, colour, legend) in enumerate(SERIES):
        ly = top + 60 + k * 18
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
                   % (lx, ly, colour, lx + 14, ly + 9, legend))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black" stroke-width="2"/>'
               '<text x="%d" y="%d">bound of the case (driver calls)</text>'
               % (lx, lx + 10, top + 60 + len(SERIES) * 18 + 5, top + 60 + len(SERIES) * 18 + 5,
                  lx + 14, top + 60 + len(SERIES) * 18 + 9))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: python3 bench/plot.py BENCH_OUTPUT OUT.svg\n")
        return 2
    try:
        with open(argv[1]) as f:
            parsed = parse(f.read())
    except (OSError, ValueError) as e:
        sys.stderr.write("plot: %s: %s\n" % (argv[1], e))
        return 1
    with open(argv[2], "w") as f:
        f.write(svg(*parsed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
