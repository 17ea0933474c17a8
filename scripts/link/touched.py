"""The functions on the code pages a process has touched so far (scripts/code-order.sh).

    python3 scripts/link/touched.py PID BINARY   # "ADDRESS NAME" a line, in address order

A code page is resident in PID when its present bit is set in /proc/PID/pagemap (needs root).
With BINARY evicted from the page cache, readahead off and every function on its own page
(code-order.sh arranges all three), a resident page is one the process touched, and names one
function. Names are demangled without their hash (`nm -C`).
"""

import struct
import subprocess
import sys

pid, binary = sys.argv[1], sys.argv[2]
segments, base = [], None
for line in open(f"/proc/{pid}/maps"):
    fields = line.split()
    if len(fields) < 6 or fields[5] != binary:
        continue
    start, end = (int(x, 16) for x in fields[0].split("-"))
    if int(fields[2], 16) == 0:
        base = start
    if "x" in fields[1]:
        segments.append((start, end))
if base is None or not segments:
    sys.exit(f"{binary} is not mapped in process {pid}")
pages = set()
with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
    for start, end in segments:
        for page in range(start, end, 4096):
            pagemap.seek(page // 4096 * 8)
            if struct.unpack("<Q", pagemap.read(8))[0] >> 63:
                pages.add(page - base)
listing = subprocess.run(["nm", "-n", "-C", "-S", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
count = 0
for line in listing.splitlines():
    parts = line.split(" ", 3)
    if len(parts) < 4 or parts[2] not in "tTwW":
        continue
    address, size = int(parts[0], 16), int(parts[1], 16)
    first, last = address // 4096 * 4096, (address + max(size, 1) - 1) // 4096 * 4096
    if any(page in pages for page in range(first, last + 4096, 4096)):
        print(f"{address:x} {parts[3]}")
        count += 1
print(f"{count} functions on {len(pages)} touched code pages", file=sys.stderr)
