"""Worker processes for the storage tests: ``python tests/storage_workers.py MODE URL STUDY TOTAL [options]``.

Modes:

* ``hammer``: plain ``study.optimize(n_trials=TOTAL)`` with several attribute writes per trial (lock contention);
* ``pop``: ``study.ask()`` until a trial without enqueued parameters comes back; prints the popped numbers;
* ``until``: :func:`nasprune.storage.optimize_until` up to TOTAL finished trials.

``--hang FILE``: the first trial (over all workers) that creates FILE writes its pid there and sleeps until
killed; ``--sleep S`` makes every trial take S seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def objective(args):
    def run(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("pid", os.getpid())
        if args.hang:
            try:
                fd = os.open(args.hang, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, f"{os.getpid()} {trial.number}\n".encode())
                os.close(fd)
                time.sleep(600)
        for k in range(args.writes):
            trial.set_user_attr(f"a{k}", k)
        time.sleep(args.sleep)
        return x

    return run


def main(argv=None) -> int:
    import optuna

    from nasprune.storage import open_storage, optimize_until

    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("hammer", "pop", "until"))
    p.add_argument("url")
    p.add_argument("study")
    p.add_argument("total", type=int)
    p.add_argument("--hang", default=None)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--writes", type=int, default=0)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.url, create=False))
    if args.mode == "hammer":
        study.optimize(objective(args), n_trials=args.total)
    elif args.mode == "pop":
        while True:
            trial = study.ask()
            enqueued = "fixed_params" in study._storage.get_trial(trial._trial_id).system_attrs
            study.tell(trial, 1.0 if enqueued else None, state=None if enqueued else optuna.trial.TrialState.FAIL)
            if not enqueued:
                break
            print(trial.number, flush=True)
    else:
        optimize_until(study, objective(args), total=args.total, url=args.url, poll=0.3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
