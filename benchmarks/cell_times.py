"""Print each code cell's run time and the start of its printed output (an
executed notebook)."""

import datetime as dt
import sys

import nbformat

nb = nbformat.read(sys.argv[1], 4)
total = 0.0
for i, c in enumerate(nb.cells):
    if c.cell_type != "code":
        continue
    m = c.metadata.get("execution", {})
    a, b = m.get("iopub.execute_input"), m.get("shell.execute_reply")
    t = (
        (
            dt.datetime.fromisoformat(b.replace("Z", ""))
            - dt.datetime.fromisoformat(a.replace("Z", ""))
        ).total_seconds()
        if a and b
        else 0.0
    )
    total += t
    outs = " ".join(
        o.get("text", "") for o in c.outputs if o.output_type == "stream"
    )
    errs = [o.get("ename") for o in c.outputs if o.output_type == "error"]
    print(
        f"{i:3d} {t:6.1f}s {c.source.splitlines()[0][:40]:<40s} | "
        f"{outs[:int(sys.argv[2]) if len(sys.argv) > 2 else 200]!r} "
        f"{errs or ''}"
    )
print(f"total {total:.1f}s")
