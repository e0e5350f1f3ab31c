"""Every benchmark, with default settings: `python -m benchmarks` (about 22 minutes on 2 cores).

Writes `benchmarks/results/{search_efficiency,overhead,distributed}.{json,md}`; benchmarks/BENCHMARKS.md quotes them.
"""

import time

from benchmarks import distributed
from benchmarks import overhead
from benchmarks import search_efficiency

if __name__ == "__main__":
    start = time.perf_counter()
    search_efficiency.main([])
    overhead.main([])
    distributed.main([])
    print(f"All benchmarks took {(time.perf_counter() - start) / 60:.1f} min.")
