"""The quick benchmarks, with default settings: `python -m benchmarks` (about 29 minutes on 2 cores).

Writes `benchmarks/results/{simulated,overhead,framework_cost,distributed,speed_spread}.{json,md}` and the simulated
benchmark's plots; benchmarks/BENCHMARKS.md quotes them. Two take longer and run on their own:
`python -m benchmarks.search_efficiency` (real studies, 2 arms x 3 seeds x 15 minutes) and
`python -m benchmarks.learning_curves` (records the MNIST table the simulation replays).
"""

import time

from benchmarks import distributed
from benchmarks import framework_cost
from benchmarks import overhead
from benchmarks import simulate
from benchmarks import speed_spread

if __name__ == "__main__":
    start = time.perf_counter()
    simulate.main([])
    overhead.main([])
    framework_cost.main([])
    distributed.main([])
    speed_spread.main([])
    print(f"All benchmarks took {(time.perf_counter() - start) / 60:.1f} min.")
