"""Train ensemble members into the store: `python train.py -m method=random_lt seed='range(20)'`."""
import sys

import hydra
from omegaconf import DictConfig

from ticket_ensembles.cli import EXIT_STOPPED, EXIT_USER_ERROR, Stopped, run_cli, stop_on_sigterm
from ticket_ensembles.config import register_configs
from ticket_ensembles.errors import UserError

register_configs()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from ticket_ensembles.run import check_environment, train  # torch: after the config composed, so typos fail fast

    check_environment()
    try:
        with stop_on_sigterm():  # SLURM preemption: unwind cleanly; a relaunch continues
            train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Stopped as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    run_cli(main)  # config errors: one line, exit 2
