"""Bytes held per call by place of allocation, from heaptrack's flame graph output.

Usage: heap_sites.py STACKS CALLS [FRAMES]

STACKS holds one line per stack, `frame;frame;...;frame BYTES`, outermost frame first, as
`heaptrack_print -F STACKS --flamegraph-cost-type leaked` writes it. Each stack is named by
its innermost FRAMES frames (3 unless given) that are not the standard library's, and the
bytes of the stacks of one name are summed and divided by CALLS.
"""

import collections
import re
import sys

# Source files of the standard library and of the collections, which name no owner.
STD_FILES = set(
    """alloc.rs raw_vec mod.rs vec boxed.rs function.rs sync.rs spec_from_elem.rs
    spec_from_iter_nested.rs spec_from_iter.rs spec_extend.rs clone.rs string.rs slice.rs
    convert.rs option.rs result.rs map.rs iterator.rs try_trait.rs unwind_safe.rs
    panicking.rs panic.rs harness.rs core.rs raw.rs unsafe_cell.rs borrow.rs str.rs fmt.rs
    hash.rs into_iter.rs cow.rs bytes.rs bytes_mut.rs rc.rs cell.rs spec_clone.rs ptr.rs
    mem.rs maybe_uninit.rs lazy.rs once_lock.rs local.rs table.rs node.rs append.rs set.rs
    entry.rs collect.rs format.rs macros.rs builders.rs traits.rs num.rs iter.rs cmp.rs
    filter.rs chain.rs take.rs copied.rs cloned.rs rt.rs methods.rs write.rs accum.rs
    pin.rs future.rs poll.rs instrument.rs unix.rs rustc_entry.rs""".split()
)


def main():
    path, calls = sys.argv[1], int(sys.argv[2])
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    total = 0
    by_place = collections.Counter()
    for line in open(path):
        stack, _, size = line.rstrip().rpartition(" ")
        total += int(size)
        names = []
        for frame in reversed(stack.split(";")):
            file = re.search(r"\(([^()]*)\)$", frame)
            if file and file.group(1) in STD_FILES:
                continue
            names.append(frame[-60:])
            if len(names) == depth:
                break
        by_place[" <- ".join(names)] += int(size)
    calls = max(calls, 1)
    print(f"{total / calls:.0f} bytes held per call in all")
    for place, size in by_place.most_common(30):
        print(f"{size / calls:8.0f}  {place}")


main()
