"""Two ``flexdiff search`` processes started at the same instant on one new SQLite ``--out``, ``--repeats`` times over.

Each repeat builds nothing in advance: both processes find no folder and no database, race to create the storage,
the studies and the teacher reference, then share the trials. Recorded per repeat: both exit codes, the number of
searched trials in the study (expected: exactly ``--trials``), whether any schedule was evaluated twice (searched or
baseline), and the wall seconds. The test suite runs this once (``tests/search/test_search.py``); here it is the
acceptance's ten times, on a tiny random UNet saved with diffusers' own classes.

    python benchmarks/concurrent_starts.py --repeats 10 --out benchmarks/results/concurrent_starts.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
from common import write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_unet  # noqa: E402  (the test suite's tiny UNet: one definition of it)

from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, save_model  # noqa: E402
from flexdiff.search.study import evaluated  # noqa: E402

FLEXDIFF = str(Path(sys.executable).with_name("flexdiff"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/concurrent_starts.json"))
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="flexdiff-concurrent-"))
    model = root / "model"
    save_model(tiny_unet(), model, DEFAULT_SCHEDULER_CONFIG)
    runs = []
    for repeat in range(args.repeats):
        out = root / f"run{repeat}"
        command = [
            FLEXDIFF,
            "search",
            "--model",
            str(model),
            "--steps",
            "6",
            "--n",
            "8",
            "--trials",
            str(args.trials),
            "--validate-n",
            "8",
            "--segments",
            "2,3",
            "--baseline-branches",
            "0",
            "--speedup",
            "2",
            "--seed",
            str(repeat),
            "--no-report",
            "--out",
            str(out),
        ]
        began = time.perf_counter()
        procs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errors = [p.communicate(timeout=900)[1] for p in procs]
        wall = time.perf_counter() - began
        storage = f"sqlite:///{out / 'study.db'}"
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
        studies = {n: optuna.load_study(study_name=n, storage=storage) for n in names}
        twice = {n: sorted(k for k, c in Counter(t.user_attrs["key"] for t in evaluated(s)).items() if c > 1) for n, s in studies.items()}
        searched = next(s for n, s in studies.items() if not n.endswith(":baselines"))
        row = {
            "repeat": repeat,
            "exit_codes": [p.returncode for p in procs],
            "searched_trials": len(evaluated(searched)),
            "evaluated_twice": sum(len(v) for v in twice.values()),
            "wall_seconds": round(wall, 1),
            "errors": [e.strip().splitlines()[-1] for e in errors if e.strip() and any(p.returncode for p in procs)],
        }
        row["ok"] = row["exit_codes"] == [0, 0] and row["searched_trials"] == args.trials and row["evaluated_twice"] == 0
        runs.append(row)
        print(row, flush=True)
    shutil.rmtree(root, ignore_errors=True)
    write_result(args.out, {"trials": args.trials, "repeats": args.repeats, "all_ok": all(r["ok"] for r in runs), "runs": runs})


if __name__ == "__main__":
    main()
