"""Flash and RAM of the QEMU firmware per part, from the GNU ld map file (-Wl,-Map).

    python3 footprint.py kws_sim.map [--json footprint.json] [--flash-budget B] [--ram-budget B]

Every input section the linker placed is given to a part by the object or archive member it
came from (the tensor arena by its symbol); what an output section holds beyond its inputs is
alignment fill, or the reserved stack. Flash: code, constants and the .data image; RAM: .data,
.bss and the stack (the heap is dynamic: semihosting stdio only). The sketch's share leaves out
what exists only in the simulator (semihosting stdio, the QEMU board layer) and is checked on
the budget; the Arduino core and mbed OS of the real board are not in this ELF at all.
Python standard library only. Exit status 1 when the sketch's share is over budget.
"""

import argparse
import json
import re
import sys

FLASH_SECTIONS = {".text", ".ARM.extab", ".ARM.exidx", ".init_array", ".data"}  # .data: its image
RAM_SECTIONS = {".data", ".bss", ".stack"}
SIMULATOR_ONLY = {"semihosting + stdio (simulator only)", "QEMU board layer (simulator only)"}
ORDER = [
    "model (g_model)",
    "TFLM library (+ CMSIS-NN)",
    "front end (+ tables)",
    "application (features, pipeline, recognizer, inference)",
    "audio ring buffer (audio_provider)",
    "tensor arena",
    "stack",
    "libc / libm / libgcc / libstdc++",
    "alignment fill",
    "QEMU board layer (simulator only)",
    "semihosting + stdio (simulator only)",
]
APPLICATION = ("feature_provider", "pipeline", "recognize_commands", "inference")
# newlib members there only because the simulator reads and writes host files through
# semihosting: FILE streams, fprintf, the malloc behind their buffers, argument parsing. String
# formatting (snprintf: TFLM's MicroPrintf, the sketch's timing stats), maths, mem* / str* stay
# with the sketch.
SIM_STDIO = re.compile(
    r"librdimon\.a\(|lib_a-(v?f?i?printf|puts|putc|fputc|fputs|fputwc|wcrtomb|fopen|fclose|fread|fwrite|fseeko?|ftello?"
    r"|fflush|findfp|refill|makebuf|wsetup|wbuf|fvwrite|fwalk|stdio|flags|mallocr|freer|reallocr|callocr|mlock|sbrkr"
    r"|strtok(_r)?|strtol|atoi|(lseek|read|write|close|fstat|isatty|open)r)\.o"
)


def part_of(section: str, source: str) -> str:
    name = source.rsplit("/", 1)[-1]
    if "g_arena" in section:
        return "tensor arena"
    if name.startswith("model_data."):
        return "model (g_model)"
    if "libtflm.a(" in name:
        return "TFLM library (+ CMSIS-NN)"
    if re.match(r"(micro|mfcc)_frontend\.", name):
        return "front end (+ tables)"
    if name.startswith(APPLICATION) or "pipeline" in section:  # main.cpp's static Pipeline, as the .ino's
        return "application (features, pipeline, recognizer, inference)"
    if name.startswith("audio_provider."):
        return "audio ring buffer (audio_provider)"
    if "/qemu/" in source:
        return "QEMU board layer (simulator only)"
    if SIM_STDIO.search(name):
        return "semihosting + stdio (simulator only)"
    return "libc / libm / libgcc / libstdc++"


def parse(map_text: str) -> tuple[dict, dict]:
    """({part: {"flash": bytes, "ram": bytes}}, {output section: size})."""
    outputs: dict[str, tuple[int, int]] = {}  # output section -> (address, size)
    items: dict[str, list[tuple[int, int, str]]] = {}  # output section -> [(address, size, part)]
    output, pending = None, None
    for line in map_text.split("Linker script and memory map", 1)[-1].splitlines():
        head = re.match(r"^(\.\S+)(?:\s+0x([0-9a-f]+)\s+0x([0-9a-f]+))?", line)
        if head:  # an output section, its address and size on this line or the next
            output, pending = head.group(1), None
            if head.group(3):
                outputs[output] = (int(head.group(2), 16), int(head.group(3), 16))
            continue
        if output not in FLASH_SECTIONS | RAM_SECTIONS:
            continue
        if output not in outputs:
            cont = re.match(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)", line)
            if cont:
                outputs[output] = (int(cont.group(1), 16), int(cont.group(2), 16))
            continue
        # An input section: " name address size file", or the name alone and the rest on the next line.
        item = re.match(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$", line)
        if item:
            item = item.groups()
        elif pending:
            rest = re.match(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$", line)
            item = rest and (pending, *rest.groups())
        pending = None
        if item:
            section, address, size, source = item
            items.setdefault(output, []).append((int(address, 16), int(size, 16), part_of(section, source)))
        elif re.match(r"^ (\.\S+|COMMON)$", line):
            pending = line.strip()

    parts: dict[str, dict[str, int]] = {}
    for name, (start, size) in outputs.items():
        if name not in FLASH_SECTIONS | RAM_SECTIONS:
            continue
        shares: dict[str, int] = {}
        # Merged strings (.str1.4) are listed at their size before merging and overlap: each
        # byte goes to the first input that covers it.
        covered = start
        for address, length, part in sorted(items.get(name, [])):
            end = min(address + length, start + size)
            if end > max(address, covered):
                shares[part] = shares.get(part, 0) + end - max(address, covered)
                covered = end
        rest = size - sum(shares.values())  # alignment fill, or the reserved stack itself
        if rest:
            shares["stack" if name == ".stack" else "alignment fill"] = rest
        for part, length in shares.items():
            entry = parts.setdefault(part, {"flash": 0, "ram": 0})
            entry["flash"] += length if name in FLASH_SECTIONS else 0
            entry["ram"] += length if name in RAM_SECTIONS else 0
    return parts, {name: size for name, (_, size) in outputs.items() if name in FLASH_SECTIONS | RAM_SECTIONS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("map")
    parser.add_argument("--json")
    parser.add_argument("--flash-budget", type=int, default=256 * 1024)
    parser.add_argument("--ram-budget", type=int, default=64 * 1024)
    args = parser.parse_args()
    parts, outputs = parse(open(args.map).read())
    total = {k: sum(p[k] for p in parts.values()) for k in ("flash", "ram")}
    sketch = {k: sum(p[k] for n, p in parts.items() if n not in SIMULATOR_ONLY) for k in ("flash", "ram")}
    budget = {"flash": args.flash_budget, "ram": args.ram_budget}
    fits = all(sketch[k] <= budget[k] for k in budget)

    rows = [(n, parts[n]) for n in ORDER if n in parts] + [(n, p) for n, p in parts.items() if n not in ORDER]
    print(f"{'part':58} {'flash':>9} {'RAM':>9}")
    for name, p in rows:
        print(f"{name:58} {p['flash']:>9,} {p['ram']:>9,}")
    print(f"{'total (the ELF)':58} {total['flash']:>9,} {total['ram']:>9,}")
    print(f"{'sketch share (without the simulator-only parts)':58} {sketch['flash']:>9,} {sketch['ram']:>9,}")
    print(f"{'budget':58} {budget['flash']:>9,} {budget['ram']:>9,}   {'OK' if fits else 'OVER BUDGET'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "map": args.map,
                    "output_sections": outputs,
                    "parts": dict(rows),
                    "total": total,
                    "sketch": sketch,
                    "budget": budget,
                    "fits": fits,
                    "simulator_only": sorted(SIMULATOR_ONLY),
                },
                f,
                indent=2,
            )
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
