"""Train ensemble members into the store: `python train.py -m method=random_lt seed='range(20)'`."""
import sys

import hydra
from omegaconf import DictConfig

from ticket_ensembles.cli import EXIT_STOPPED, Stopped, run_cli, stop_on_sigterm, user_errors_exit
from ticket_ensembles.jobs import requeue_only_with_progress
from ticket_ensembles.config import register_configs
from ticket_ensembles.known_keys import check_known_keys

register_configs()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors_exit():
        check_known_keys(cfg)  # a swept +key=a,b reaches only the jobs (the known_keys callback checks the rest)
    from ticket_ensembles.run import check_environment, train  # torch: after the config composed, so typos fail fast

    check_environment()
    try:
        # a UserError: one line, exit 2; SLURM preemption: unwind cleanly, a relaunch continues;
        # a SLURM time limit that ends before anything was saved: fail instead of requeueing
        with user_errors_exit(), stop_on_sigterm(), requeue_only_with_progress(cfg.paths.store_dir, int(cfg.seed)):
            train(cfg)
    except Stopped as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    run_cli(main)  # config errors: one line, exit 2
